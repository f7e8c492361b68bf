//! The peak-memory estimate checked before the first denoising step.
//!
//! `peak = weights + clip-length data + the largest stage's activations`, where
//! - **weights**: every loaded parameter at its dtype's size (counted, not estimated);
//! - **clip-length data** (alive through the job, grows with the audio): the latents of all
//!   frames (4 copies: current, accumulator, initial, noise), the audio tokens and Whisper
//!   states, the waveform (decoded and 16 kHz, plus the copy handed to the AAC encoder), the
//!   log-mel features (host and device), and the encoded MP4 the muxer keeps until it writes
//!   the index (assumed 0.05 byte per pixel per frame, above what QP 20 gives on faces);
//! - **stage activations** (the largest of):
//!   - *UNet window* (3 guidance branches x 25 frames): the skip connections of every level,
//!     plus the working set of the widest level (20 tensors of its width for a transformer
//!     level: norm, q/k/v, GEGLU's 8C projection and halves, residuals; 8 for a resnet-only
//!     level), plus one attention chunk (scores, exponent and weights: 3 x the chunk);
//!   - *VAE decode chunk*: 3.2 x the largest activation of the decoder (`chunk` frames at the
//!     widest (channels x pixels) level), the ratio measured on the CPU backend (docs/vae.md:
//!     3.1 x); `tests/pipeline_memory.rs` checks the whole estimate bounds measured peaks;
//!   - *RIFE pair plus the decoded chunk it reads from*: 48 full-resolution planes and
//!     8 x `c` planes at 1/4 resolution (f32), plus the chunk's frames twice (raw and in
//!     `[0, 1]`);
//!   - *VAE encode* (one picture), *CLIP* and *Whisper* (all 30 s windows at once).
//!
//! The estimate is for a backend that frees buffers as soon as they are dropped (the CPU
//! backend); GPU memory pools keep freed buffers for reuse, so give them some headroom.

use burn::tensor::DType;
use serde::Serialize;
use sonic_core::models::unet::DownBlockType;
use sonic_core::nn::attention::AttentionChunking;

use super::models::ModelConfigs;
use super::params::FRAMES_PER_WINDOW;

/// The sizes of one job that memory depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobShape {
    /// Model input width (pixels, a multiple of 64).
    pub width: usize,
    /// Model input height.
    pub height: usize,
    /// Generated frames (N).
    pub frames: usize,
    /// Frames of the written video.
    pub output_frames: usize,
    /// Size of the written video.
    pub output_width: usize,
    /// Height of the written video.
    pub output_height: usize,
    /// Audio samples as decoded (at the file's rate).
    pub audio_samples: usize,
    /// Audio samples at 16 kHz.
    pub audio_samples_16k: usize,
    /// 30 s Whisper windows.
    pub whisper_windows: usize,
    /// 25 fps audio units (`audio_len`).
    pub audio_len: usize,
    /// Frames per VAE decode chunk.
    pub decode_chunk_size: usize,
    /// Whether RIFE runs.
    pub interpolation: bool,
    /// Pixels of the decoded picture (before any crop).
    pub picture_pixels: u64,
}

/// What a job is expected to need at its peak, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MemoryEstimate {
    /// The loaded parameters.
    pub weights: u64,
    /// Data whose size grows with the clip, alive through the job.
    pub clip_length: u64,
    /// Activations of each stage.
    pub stages: Vec<(&'static str, u64)>,
    /// The stage with the largest activations.
    pub peak_stage: &'static str,
    /// `weights + clip_length + max(stages)`.
    pub total: u64,
}

impl MemoryEstimate {
    /// The activation estimate of `stage` (0 if unknown).
    pub fn stage(&self, stage: &str) -> u64 {
        self.stages
            .iter()
            .find(|(name, _)| *name == stage)
            .map_or(0, |(_, bytes)| *bytes)
    }
}

/// Estimates the peak memory of a job: `weights + clip-length data + the largest stage's
/// activations` (UNet window, VAE decode chunk, RIFE pair, VAE encode, CLIP, Whisper).
/// `docs/pipeline.md` ("Memory") describes each part and the measured numbers.
///
/// `dtype` is the dtype of UNet, VAE and CLIP; Whisper, the adapters and RIFE count as f32.
pub fn estimate(
    configs: &ModelConfigs,
    weight_bytes: u64,
    dtype: DType,
    job: &JobShape,
) -> MemoryEstimate {
    let s = dtype.size() as u64;
    let f32 = 4u64;
    let (h, w) = (job.height.div_ceil(8) as u64, job.width.div_ceil(8) as u64);
    let n = job.frames as u64;
    let latent_channels = configs.vae.latent_channels as u64;

    // Data that grows with the clip.
    let latents = 4 * n * latent_channels * h * w * s;
    let audio_tokens =
        n * configs.unet.audio_tokens as u64 * configs.unet.cross_attention_dim as u64 * f32;
    let whisper_states = 2
        * (2 * job.audio_len as u64 + 50)
        * (configs.whisper.encoder_layers as u64 + 1)
        * configs.whisper.d_model as u64
        * f32;
    let audio = (2 * job.audio_samples as u64 + 3 * job.audio_samples_16k as u64) * f32;
    let mel = 2 * 80 * 3000 * job.whisper_windows as u64 * f32;
    let encoded = (job.output_frames as u64 * job.output_width as u64 * job.output_height as u64)
        / 20
        + (job.audio_samples_16k as u64 / 16_000 + 1) * 8_192;
    let clip_length = latents + audio_tokens + whisper_states + audio + mel + encoded;

    let stages = vec![
        ("unet_window", unet_window(configs, h, w, s)),
        (
            "vae_decode",
            vae_decode(configs, h, w, job.decode_chunk_size as u64, s),
        ),
        (
            "rife",
            if job.interpolation {
                rife(configs, job, s)
            } else {
                0
            },
        ),
        ("vae_encode", vae_encode(configs, job, s)),
        ("clip", clip(configs, s)),
        ("whisper", whisper(configs, job.whisper_windows as u64)),
        ("decode_picture", decode_picture(job.picture_pixels)),
    ];
    let (peak_stage, peak) = stages
        .iter()
        .copied()
        .max_by_key(|(_, bytes)| *bytes)
        .unwrap_or(("none", 0));
    MemoryEstimate {
        weights: weight_bytes,
        clip_length,
        total: weight_bytes + clip_length + peak,
        peak_stage,
        stages,
    }
}

/// Decoding one picture: the decoder's buffer (up to 4 bytes a pixel, RGBA) and its 8-bit RGB
/// copy, plus a cropped copy.
fn decode_picture(pixels: u64) -> u64 {
    (4 + 3 + 3) * pixels
}

/// What decoding the inputs will need, from their headers alone, checked against the memory
/// budget before a pixel or sample is decoded: the weights, the decoded audio (`audio_bytes`,
/// see [`AudioHeader::decoded_bytes`](sonic_media::audio::AudioHeader::decoded_bytes)) and the
/// picture's decode (stage `decode_picture`).
pub fn estimate_inputs(weight_bytes: u64, picture_pixels: u64, audio_bytes: u64) -> MemoryEstimate {
    let picture = decode_picture(picture_pixels);
    MemoryEstimate {
        weights: weight_bytes,
        clip_length: audio_bytes,
        stages: vec![("decode_picture", picture)],
        peak_stage: "decode_picture",
        total: weight_bytes + audio_bytes + picture,
    }
}

fn attention_chunk(batch: u64, heads: u64, len_q: u64, len_k: u64, s: u64) -> u64 {
    let scores = AttentionChunking::default().chunk_scores(
        batch as usize,
        heads as usize,
        len_q as usize,
        len_k as usize,
    ) as u64;
    3 * scores * s
}

/// One UNet call on a 25-frame window with the 3 guidance branches.
fn unet_window(configs: &ModelConfigs, h: u64, w: u64, s: u64) -> u64 {
    let unet = &configs.unet;
    let bf = 3 * FRAMES_PER_WINDOW as u64;
    let levels = unet.block_out_channels.len();
    let (mut th, mut tw) = (h, w);
    let mut skips = unet.block_out_channels[0] as u64 * th * tw; // conv_in
    let mut working = 0u64;
    let mut attention = 0u64;
    for (level, &c) in unet.block_out_channels.iter().enumerate() {
        let c = c as u64;
        let tokens = th * tw;
        skips += unet.layers_per_block as u64 * c * tokens;
        let transformer =
            unet.down_block_types[level] == DownBlockType::CrossAttnDownBlockSpatioTemporal;
        // Up levels concatenate a skip: count the level's width twice for its inputs.
        let per_token = if transformer { 20 + 2 } else { 8 + 2 };
        working = working.max(per_token * c * tokens);
        if transformer {
            let heads = unet.num_attention_heads[level] as u64;
            attention = attention
                .max(attention_chunk(bf, heads, tokens, tokens, s))
                .max(attention_chunk(
                    3 * tokens,
                    heads,
                    FRAMES_PER_WINDOW as u64,
                    FRAMES_PER_WINDOW as u64,
                    s,
                ));
        }
        if level + 1 < levels {
            (th, tw) = (th.div_ceil(2), tw.div_ceil(2));
            skips += c * th * tw; // the downsampler's output
        }
    }
    bf * s * (skips + working) + attention
}

/// One chunk of the temporal decoder.
fn vae_decode(configs: &ModelConfigs, h: u64, w: u64, chunk: u64, s: u64) -> u64 {
    let reversed: Vec<u64> = configs
        .vae
        .block_out_channels
        .iter()
        .rev()
        .map(|&c| c as u64)
        .collect();
    let levels = reversed.len();
    let largest = reversed
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            // Up block i works at 2^i x the latent size; its upsampler outputs 2^(i+1).
            let scale = if i + 1 < levels { i + 1 } else { i } as u32;
            c * h * w * 4u64.pow(scale)
        })
        .max()
        .unwrap_or(0);
    (32 * chunk * largest * s) / 10
}

/// One RIFE call at full resolution (f32) plus the decoded chunk it reads from.
fn rife(configs: &ModelConfigs, job: &JobShape, s: u64) -> u64 {
    let pixels = (job.width * job.height) as u64;
    let rife = (48 * pixels + 8 * configs.rife_c as u64 * pixels / 16) * 4;
    let chunk = 2 * job.decode_chunk_size as u64 * 3 * pixels * s;
    rife + chunk
}

fn vae_encode(configs: &ModelConfigs, job: &JobShape, s: u64) -> u64 {
    let pixels = (job.width * job.height) as u64;
    let c0 = configs.vae.block_out_channels[0] as u64;
    let latent_tokens = pixels / 64;
    6 * c0 * pixels * s + attention_chunk(1, 1, latent_tokens, latent_tokens, s)
}

fn clip(configs: &ModelConfigs, s: u64) -> u64 {
    let c = &configs.clip;
    let tokens = ((c.image_size / c.patch_size).pow(2) + 1) as u64;
    (12 * c.hidden_size as u64 + 4 * c.intermediate_size as u64) * tokens * s
        + attention_chunk(1, c.num_attention_heads as u64, tokens, tokens, s)
}

fn whisper(configs: &ModelConfigs, windows: u64) -> u64 {
    let c = &configs.whisper;
    let tokens = windows * c.max_source_positions as u64;
    let d = c.d_model as u64;
    let states = (c.encoder_layers as u64 + 1) * d * tokens * 4;
    let working = (c.encoder_ffn_dim as u64 + 6 * d) * tokens * 4;
    // The convolution stem works on 2 x 1500 mel frames per window.
    let stem = 2 * d * 2 * tokens * 4;
    states
        + working.max(stem)
        + attention_chunk(
            windows,
            c.encoder_attention_heads as u64,
            c.max_source_positions as u64,
            c.max_source_positions as u64,
            4,
        )
}

/// Formats bytes as MiB or GiB.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    if bytes as f64 >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}
