//! Sonic's UNet: the SVD-xt spatio-temporal UNet (`UNetSpatioTemporalConditionModel`) with
//! Sonic's audio cross-attention in every `attn2`.
//!
//! Reference: Sonic `src/models/base/unet_spatio_temporal_condition.py` (+ `add_ip_adapters`),
//! `unet_3d_blocks.py`, `attention_processor.py` (`IPAdapterAttnProcessor2_0`),
//! `src/utils/mask_processer.py`; diffusers v0.29.0 `models/attention.py`, `embeddings.py`,
//! `resnet.py`. Checkpoint: `Sonic/unet.pth` (1492 keys, the full UNet in diffusers naming plus
//! `*.attn2.processor.to_{k,v}_ip.0.weight`).
//!
//! Layout:
//! - [`attention`]: `attn1` / `attn2` with the decoupled audio branch;
//! - [`feed_forward`]: the GEGLU feed-forward;
//! - [`transformer`]: spatial, temporal and spatio-temporal transformer blocks, and the
//!   per-call [`CrossAttentionContext`];
//! - [`blocks`]: down, mid and up blocks;
//! - [`face_mask`]: the face mask on each token grid.
//!
//! This module holds the whole model ([`UNet`]), its config and its loader.

pub mod attention;
pub mod blocks;
pub mod face_mask;
pub mod feed_forward;
pub mod transformer;

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use serde::Deserialize;

pub use blocks::{DownBlockType, UpBlockType};
pub use face_mask::{FaceMask, FaceMaskError};
pub use transformer::CrossAttentionContext;

use super::ConfigError;
use crate::nn::attention::AttentionChunking;
use crate::nn::conv::conv2d_forward;
use crate::nn::embeddings::{TimestepEmbedding, TimestepEmbeddingConfig, timestep_embedding};
use crate::nn::norm::group_norm_silu;
use crate::weights::{Checkpoint, LoadError, LoadOptions, LoadReport, load_module};
use blocks::{BlockConfig, DownBlock, UNetMidBlockSpatioTemporal, UpBlock};

/// Configuration of [`UNet`]: the diffusers `UNetSpatioTemporalConditionModel` config plus the
/// audio adapter's settings. Defaults are SVD-xt's (see [`UNetConfig::svd_xt`]).
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Input channels: 4 noisy latents + 4 image latents.
    #[config(default = 8)]
    pub in_channels: usize,
    /// Output channels (the v-prediction).
    #[config(default = 4)]
    pub out_channels: usize,
    /// Kind of each down block.
    #[config(
        default = "vec![DownBlockType::CrossAttnDownBlockSpatioTemporal, DownBlockType::CrossAttnDownBlockSpatioTemporal, DownBlockType::CrossAttnDownBlockSpatioTemporal, DownBlockType::DownBlockSpatioTemporal]"
    )]
    pub down_block_types: Vec<DownBlockType>,
    /// Kind of each up block.
    #[config(
        default = "vec![UpBlockType::UpBlockSpatioTemporal, UpBlockType::CrossAttnUpBlockSpatioTemporal, UpBlockType::CrossAttnUpBlockSpatioTemporal, UpBlockType::CrossAttnUpBlockSpatioTemporal]"
    )]
    pub up_block_types: Vec<UpBlockType>,
    /// Channels of each level.
    #[config(default = "vec![320, 640, 1280, 1280]")]
    pub block_out_channels: Vec<usize>,
    /// Sinusoid width of each added time id (fps, two motion buckets).
    #[config(default = 256)]
    pub addition_time_embed_dim: usize,
    /// Width of the concatenated added-time sinusoids (3 x 256).
    #[config(default = 768)]
    pub projection_class_embeddings_input_dim: usize,
    /// Resnets per down block (up blocks have one more).
    #[config(default = 2)]
    pub layers_per_block: usize,
    /// Width of the CLIP and audio context tokens.
    #[config(default = 1024)]
    pub cross_attention_dim: usize,
    /// Transformer layers in each spatio-temporal transformer.
    #[config(default = 1)]
    pub transformer_layers_per_block: usize,
    /// Attention heads of each level (64 channels per head in SVD-xt).
    #[config(default = "vec![5, 10, 20, 20]")]
    pub num_attention_heads: Vec<usize>,
    /// Frames per window the model was trained on (informational: any count runs).
    #[config(default = 25)]
    pub num_frames: usize,
    /// Audio tokens per frame (`num_adapter_embeds` of `add_ip_adapters`; audio2token's
    /// `context_tokens`). Informational: the weights do not depend on it.
    #[config(default = 32)]
    pub audio_tokens: usize,
    /// Weight of the audio branch of every `attn2` (`scale` of `add_ip_adapters`).
    #[config(default = 1.0)]
    pub audio_scale: f64,
}

/// A per-level setting of a diffusers config: one value or one per block.
#[derive(Deserialize)]
#[serde(untagged)]
enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

/// The fields of a diffusers `config.json` this model reads (others are ignored).
#[derive(Deserialize)]
struct DiffusersUNetConfig {
    in_channels: usize,
    out_channels: usize,
    down_block_types: Vec<String>,
    up_block_types: Vec<String>,
    block_out_channels: Vec<usize>,
    addition_time_embed_dim: usize,
    projection_class_embeddings_input_dim: usize,
    layers_per_block: PerBlock,
    cross_attention_dim: PerBlock,
    transformer_layers_per_block: PerBlock,
    num_attention_heads: PerBlock,
    num_frames: usize,
}

impl UNetConfig {
    /// SVD-xt's `unet/config.json` with Sonic's audio adapter (32 tokens, scale 1.0).
    pub fn svd_xt() -> Self {
        Self::new()
    }

    /// Reads a diffusers `UNetSpatioTemporalConditionModel` `config.json` (as found beside the
    /// weights, e.g. `stable-video-diffusion-img2vid-xt/unet/config.json`). The audio adapter
    /// settings are not part of it: they keep their defaults (see [`UNetConfig::with_audio_tokens`]).
    pub fn from_diffusers_file(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let invalid = |source: ConfigError| LoadError::Config {
            file: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_diffusers_json(&text).map_err(invalid)
    }

    /// [`UNetConfig::from_diffusers_file`] on the JSON text; the error names the field and
    /// its value.
    pub fn from_diffusers_json(text: &str) -> Result<Self, ConfigError> {
        let raw: DiffusersUNetConfig = serde_json::from_str(text)?;
        let levels = raw.block_out_channels.len();
        let uniform = |name: &'static str, value: PerBlock| match value {
            PerBlock::One(v) => Ok(v),
            PerBlock::Each(v) if !v.is_empty() && v.iter().all(|&x| x == v[0]) => Ok(v[0]),
            PerBlock::Each(v) => Err(ConfigError::unsupported(
                name,
                v,
                "one value for every block",
            )),
        };
        let down_block_types = raw
            .down_block_types
            .iter()
            .map(|t| match t.as_str() {
                "CrossAttnDownBlockSpatioTemporal" => {
                    Ok(DownBlockType::CrossAttnDownBlockSpatioTemporal)
                }
                "DownBlockSpatioTemporal" => Ok(DownBlockType::DownBlockSpatioTemporal),
                other => Err(ConfigError::unsupported(
                    "down_block_types",
                    other,
                    "CrossAttnDownBlockSpatioTemporal, DownBlockSpatioTemporal",
                )),
            })
            .collect::<Result<_, _>>()?;
        let up_block_types = raw
            .up_block_types
            .iter()
            .map(|t| match t.as_str() {
                "UpBlockSpatioTemporal" => Ok(UpBlockType::UpBlockSpatioTemporal),
                "CrossAttnUpBlockSpatioTemporal" => Ok(UpBlockType::CrossAttnUpBlockSpatioTemporal),
                other => Err(ConfigError::unsupported(
                    "up_block_types",
                    other,
                    "UpBlockSpatioTemporal, CrossAttnUpBlockSpatioTemporal",
                )),
            })
            .collect::<Result<_, _>>()?;
        let num_attention_heads = match raw.num_attention_heads {
            PerBlock::One(h) => vec![h; levels],
            PerBlock::Each(h) => h,
        };
        let config = Self::new()
            .with_in_channels(raw.in_channels)
            .with_out_channels(raw.out_channels)
            .with_down_block_types(down_block_types)
            .with_up_block_types(up_block_types)
            .with_block_out_channels(raw.block_out_channels)
            .with_addition_time_embed_dim(raw.addition_time_embed_dim)
            .with_projection_class_embeddings_input_dim(raw.projection_class_embeddings_input_dim)
            .with_layers_per_block(uniform("layers_per_block", raw.layers_per_block)?)
            .with_cross_attention_dim(uniform("cross_attention_dim", raw.cross_attention_dim)?)
            .with_transformer_layers_per_block(uniform(
                "transformer_layers_per_block",
                raw.transformer_layers_per_block,
            )?)
            .with_num_attention_heads(num_attention_heads)
            .with_num_frames(raw.num_frames);
        config.validate()?;
        Ok(config)
    }

    /// Checks that the config describes a buildable model; the error names the field and its
    /// value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return Err(ConfigError::Empty {
                field: "block_out_channels",
            });
        }
        for (name, len) in [
            ("down_block_types", self.down_block_types.len()),
            ("up_block_types", self.up_block_types.len()),
            ("num_attention_heads", self.num_attention_heads.len()),
        ] {
            if len != levels {
                return Err(ConfigError::LengthMismatch {
                    field: name,
                    len,
                    other: "block_out_channels",
                    other_len: levels,
                });
            }
        }
        for (name, value) in [
            ("layers_per_block", self.layers_per_block),
            (
                "transformer_layers_per_block",
                self.transformer_layers_per_block,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(name, value, "must be at least 1"));
            }
        }
        for (&c, &heads) in self
            .block_out_channels
            .iter()
            .zip(&self.num_attention_heads)
        {
            if c == 0 || !c.is_multiple_of(32) {
                return Err(ConfigError::invalid(
                    "block_out_channels",
                    c,
                    "must be a positive multiple of 32 (GroupNorm groups)",
                ));
            }
            if heads == 0 || !c.is_multiple_of(heads) {
                return Err(ConfigError::invalid(
                    "num_attention_heads",
                    heads,
                    format!("must divide the block width {c}"),
                ));
            }
        }
        if !self
            .projection_class_embeddings_input_dim
            .is_multiple_of(self.addition_time_embed_dim.max(1))
        {
            return Err(ConfigError::invalid(
                "projection_class_embeddings_input_dim",
                self.projection_class_embeddings_input_dim,
                format!(
                    "must be a multiple of `addition_time_embed_dim` {}",
                    self.addition_time_embed_dim
                ),
            ));
        }
        Ok(())
    }

    /// Builds the model; parameters are initialised lazily (nothing is allocated until used
    /// or loaded, so [`crate::weights::param_specs`] works on the full size).
    ///
    /// # Panics
    /// If [`UNetConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        if let Err(e) = self.validate() {
            panic!("invalid UNet config: {e}");
        }
        let channels = &self.block_out_channels;
        let levels = channels.len();
        let c0 = channels[0];
        let temb = 4 * c0;
        let block = |in_channels, out_channels, heads, num_layers, resample| {
            BlockConfig::new(in_channels, out_channels, temb, num_layers, resample)
                .with_transformer_layers(self.transformer_layers_per_block)
                .with_heads(heads)
                .with_cross_attention_dim(self.cross_attention_dim)
                .with_audio_scale(self.audio_scale)
        };

        let down_blocks = self
            .down_block_types
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let in_channels = channels[i.saturating_sub(1)];
                block(
                    in_channels,
                    channels[i],
                    self.num_attention_heads[i],
                    self.layers_per_block,
                    i + 1 < levels,
                )
                .init_down(kind, device)
            })
            .collect();

        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let reversed_heads: Vec<usize> = self.num_attention_heads.iter().rev().copied().collect();
        let up_blocks = self
            .up_block_types
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let prev_output = reversed[i.saturating_sub(1)];
                let in_channels = reversed[(i + 1).min(levels - 1)];
                block(
                    in_channels,
                    reversed[i],
                    reversed_heads[i],
                    self.layers_per_block + 1,
                    i + 1 < levels,
                )
                .with_prev_output_channels(prev_output)
                .init_up(kind, device)
            })
            .collect();

        let last = channels[levels - 1];
        let mid_block =
            block(last, last, self.num_attention_heads[levels - 1], 1, false).init_mid(device);

        let conv = |from, to| {
            Conv2dConfig::new([from, to], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        UNet {
            conv_in: conv(self.in_channels, c0),
            time_embedding: TimestepEmbeddingConfig::new(c0, temb).init(device),
            add_embedding: TimestepEmbeddingConfig::new(
                self.projection_class_embeddings_input_dim,
                temb,
            )
            .init(device),
            down_blocks,
            up_blocks,
            mid_block,
            conv_norm_out: GroupNormConfig::new(32, c0).init(device),
            conv_out: conv(c0, self.out_channels),
            time_proj_dim: c0,
            addition_time_embed_dim: self.addition_time_embed_dim,
            chunking: AttentionChunking::default(),
        }
    }
}

/// The denoiser: SVD-xt's spatio-temporal UNet with Sonic's audio cross-attention.
///
/// Field names mirror `unet.pth`; [`load_unet`] loads the released file as it is.
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    /// 3x3 convolution of the 8 input channels.
    pub conv_in: Conv2d<B>,
    /// MLP of the noise-level sinusoids.
    pub time_embedding: TimestepEmbedding<B>,
    /// MLP of the added-time-id sinusoids.
    pub add_embedding: TimestepEmbedding<B>,
    /// Encoder levels.
    pub down_blocks: Vec<DownBlock<B>>,
    /// Decoder levels (declared before `mid_block`, as in the checkpoint's key order).
    pub up_blocks: Vec<UpBlock<B>>,
    /// Lowest level.
    pub mid_block: UNetMidBlockSpatioTemporal<B>,
    /// GroupNorm(32, eps 1e-5) before the output convolution.
    pub conv_norm_out: GroupNorm<B>,
    /// 3x3 convolution to the output channels.
    pub conv_out: Conv2d<B>,
    time_proj_dim: usize,
    addition_time_embed_dim: usize,
    #[module(skip)]
    chunking: AttentionChunking,
}

/// The inputs of one [`UNet::forward`] call.
///
/// `clip_context` and `audio_context` are per frame (batch-major, frame fastest), as Sonic
/// passes them; a CLIP context with one row per batch entry is repeated over the frames.
/// `face_mask` multiplies the spatial audio attention (the temporal one is never masked);
/// `None` (the default of [`UNetInput::new`]) leaves it unmasked.
///
/// # Shapes
/// - `sample`: `[b, f, in_channels, h, w]` (noisy latents scaled for the step, then the
///   image latents)
/// - `timestep`: `[1]` or `[b]` (`c_noise = 0.25·ln σ`)
/// - `clip_context`: `[b·f, clip_tokens, d]` or `[b, clip_tokens, d]`
/// - `audio_context`: `[b·f, audio_tokens, d]`
/// - `added_time_ids`: `[b, 3]` (fps, motion bucket head, motion bucket expression)
/// - `face_mask`: a pixel-space mask of the `8h x 8w` frame, resampled to each token grid
#[derive(Debug, Clone)]
pub struct UNetInput<'a, B: Backend> {
    /// Noisy latents concatenated on channels with the image latents, `[b, f, in_channels, h, w]`.
    pub sample: Tensor<B, 5>,
    /// The continuous timestep, `[1]` or `[b]`.
    pub timestep: Tensor<B, 1>,
    /// CLIP image context, `[b·f, clip_tokens, d]` or `[b, clip_tokens, d]`.
    pub clip_context: Tensor<B, 3>,
    /// Audio tokens, `[b·f, audio_tokens, d]`.
    pub audio_context: Tensor<B, 3>,
    /// `[fps, head bucket, expression bucket]` per batch entry, `[b, 3]`.
    pub added_time_ids: Tensor<B, 2>,
    /// Mask of the spatial audio attention (`None`: unmasked).
    pub face_mask: Option<&'a FaceMask>,
}

impl<'a, B: Backend> UNetInput<'a, B> {
    /// The required inputs, unmasked (see the type's `# Shapes`).
    pub fn new(
        sample: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        clip_context: Tensor<B, 3>,
        audio_context: Tensor<B, 3>,
        added_time_ids: Tensor<B, 2>,
    ) -> Self {
        Self {
            sample,
            timestep,
            clip_context,
            audio_context,
            added_time_ids,
            face_mask: None,
        }
    }

    /// Masks the spatial audio attention with `face_mask`.
    pub fn with_face_mask(mut self, face_mask: &'a FaceMask) -> Self {
        self.face_mask = Some(face_mask);
        self
    }
}

/// Intermediate tensors of one forward pass, for parity checks and debugging.
#[derive(Debug, Clone)]
pub struct UNetTrace<B: Backend> {
    /// `time_embedding(time_proj(timestep))`, `[b, 4·C0]`.
    pub time_embedding: Tensor<B, 2>,
    /// `add_embedding(add_time_proj(added_time_ids))`, `[b, 4·C0]`.
    pub add_embedding: Tensor<B, 2>,
    /// Output of each down block (after its downsampler), `[b·f, C, h, w]`.
    pub down_blocks: Vec<Tensor<B, 4>>,
    /// Output of the mid block.
    pub mid_block: Tensor<B, 4>,
    /// Output of each up block (after its upsampler).
    pub up_blocks: Vec<Tensor<B, 4>>,
}

impl<B: Backend> UNet<B> {
    /// The bound on attention scores computed at once (default
    /// [`AttentionChunking::DEFAULT_MAX_SCORES`]).
    pub fn attention_chunking(&self) -> AttentionChunking {
        self.chunking
    }

    /// Sets the bound on attention scores computed at once: lower saves memory on large
    /// frames, higher gives the backend larger attention calls.
    pub fn with_attention_chunking(mut self, chunking: AttentionChunking) -> Self {
        self.chunking = chunking;
        self
    }

    /// The token counts of the transformer levels for `h x w` latents (`h·w`, then halved
    /// sides, rounded up like the stride-2 convolutions): the grids the face mask is
    /// resampled to.
    pub fn token_grids(&self, height: usize, width: usize) -> Vec<usize> {
        let (mut h, mut w) = (height, width);
        let mut grids = Vec::with_capacity(self.down_blocks.len());
        for _ in 0..self.down_blocks.len() {
            grids.push(h * w);
            (h, w) = (h.div_ceil(2), w.div_ceil(2));
        }
        grids
    }

    /// Predicts the v-target of every frame (see [`UNetInput`] for the inputs and shapes).
    ///
    /// # Shapes
    /// - input: as [`UNetInput`]
    /// - returns `[b, f, out_channels, h, w]`
    ///
    /// # Panics
    /// On inconsistent shapes (a caller bug; the pipeline builds them).
    pub fn forward(&self, input: UNetInput<'_, B>) -> Tensor<B, 5> {
        self.run(input, false).0
    }

    /// [`UNet::forward`], also returning the embeddings and every block's output.
    ///
    /// # Shapes
    /// As [`UNet::forward`].
    pub fn forward_traced(&self, input: UNetInput<'_, B>) -> (Tensor<B, 5>, UNetTrace<B>) {
        let (out, trace) = self.run(input, true);
        (out, trace.expect("a traced run records a trace"))
    }

    fn run(&self, input: UNetInput<'_, B>, record: bool) -> (Tensor<B, 5>, Option<UNetTrace<B>>) {
        let UNetInput {
            sample,
            timestep,
            clip_context,
            audio_context,
            added_time_ids,
            face_mask,
        } = input;
        let [b, f, channels, h, w] = sample.dims();
        let dtype = sample.dtype();

        // 1. Time: c_noise and the added ids as cos-first sinusoids, each through its MLP.
        let timesteps = timestep.expand([b]);
        let time_emb =
            self.time_embedding
                .forward(timestep_embedding(timesteps, self.time_proj_dim, dtype));
        let [_, ids] = added_time_ids.dims();
        let add_input = timestep_embedding(
            added_time_ids.reshape([b * ids]),
            self.addition_time_embed_dim,
            dtype,
        )
        .reshape([b, ids * self.addition_time_embed_dim]);
        let add_emb = self.add_embedding.forward(add_input);
        let emb = time_emb.clone() + add_emb.clone(); // [b, 4*C0]
        let temb_width = emb.dims()[1];
        let temb = emb
            .reshape([b, 1, temb_width])
            .expand([b, f, temb_width])
            .reshape([b * f, temb_width]); // repeat_interleave over frames

        // 2. Context: per frame (a per-entry CLIP context is repeated), window averages, masks.
        let clip_context = if clip_context.dims()[0] == b && f > 1 {
            let [_, n, d] = clip_context.dims();
            clip_context
                .reshape([b, 1, n, d])
                .expand([b, f, n, d])
                .reshape([b * f, n, d])
        } else {
            clip_context
        };
        let context = CrossAttentionContext::new(
            clip_context,
            audio_context,
            f,
            face_mask,
            &self.token_grids(h, w),
            self.chunking,
        );

        // 3. Down, mid, up with diffusers' skip order.
        let mut x = conv2d_forward(&self.conv_in, sample.reshape([b * f, channels, h, w]));
        let mut skips = vec![x.clone()];
        let mut down_outputs = Vec::new();
        for block in &self.down_blocks {
            x = block.forward(x, temb.clone(), &context, &mut skips);
            if record {
                down_outputs.push(x.clone());
            }
        }
        x = self.mid_block.forward(x, temb.clone(), &context);
        let mid_output = record.then(|| x.clone());
        let mut up_outputs = Vec::new();
        for block in &self.up_blocks {
            x = block.forward(x, temb.clone(), &context, &mut skips);
            if record {
                up_outputs.push(x.clone());
            }
        }

        // 4. Out.
        let x = group_norm_silu(&self.conv_norm_out, x);
        let x = conv2d_forward(&self.conv_out, x);
        let [_, out_channels, _, _] = x.dims();

        let trace = mid_output.map(|mid_block| UNetTrace {
            time_embedding: time_emb,
            add_embedding: add_emb,
            down_blocks: down_outputs,
            mid_block,
            up_blocks: up_outputs,
        });
        (x.reshape([b, f, out_channels, h, w]), trace)
    }
}

/// Applies `f` to `x` seen as a matrix of rows (all leading dimensions folded into one), then
/// restores the leading dimensions.
///
/// burn's `Linear` on a `[n, len, C]` input runs `n` small matrix products on some backends;
/// folding makes it one large product (the fold is free for contiguous inputs).
pub(crate) fn on_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let rows = dims[..D - 1].iter().product();
    let y = f(x.reshape([rows, dims[D - 1]]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// Loads `unet.pth` (keys as released, no prefix) into a model built from `config`.
///
/// The file is read lazily, one tensor at a time (see [`Checkpoint`]): besides the model
/// itself, peak memory holds one tensor of the file (plus its converted copy when
/// `options.dtype` casts it), never the whole 6.3 GB file.
pub fn load_unet<B: Backend>(
    config: &UNetConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(UNet<B>, LoadReport), LoadError> {
    let path = path.as_ref();
    config.validate().map_err(|source| LoadError::Config {
        file: path.to_path_buf(),
        source,
    })?;
    let checkpoint = Checkpoint::open(path)?;
    load_module(config.init(device), &checkpoint, options)
}
