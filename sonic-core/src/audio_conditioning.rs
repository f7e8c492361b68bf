//! From log-mel features to the per-frame audio conditioning of the UNet: audio tokens
//! (with their null counterpart for classifier-free guidance) and motion buckets.
//!
//! Reference: Sonic `sonic.py` `test()`. The Whisper encoder runs on each 3000-frame (30 s)
//! window; the hidden states are concatenated in time (50 tokens per second) and cut to
//! `2 * audio_len` tokens (`audio_len` counts 25 fps units). Video frame `i` (12.5 fps, `step`
//! = 2 units) then sees
//! - for audio2token: all hidden states, zero-padded 4 tokens in front and 6 behind, tokens
//!   `[4i, 4i + 10)` (80 ms before to 120 ms after the frame);
//! - for audio2bucket: the last hidden state, zero-padded 24 in front and 26 behind, tokens
//!   `[4i, 4i + 50)` (about one second around the frame), with the portrait's CLIP embedding.
//!
//! The reference runs the two adapters one frame at a time and calls audio2token on zeros for
//! every frame; here the frames go through in batches (`frames_per_batch`) and the null
//! tokens, a constant, are computed once.

use std::ops::Range;

use burn::config::Config;
use burn::prelude::Backend;
use burn::tensor::{Int, Tensor};

use crate::models::audio_adapters::{Audio2Bucket, Audio2Token};
use crate::models::whisper::{WhisperEncoder, WhisperError};
use crate::nn::dtype::cast_to;

/// Whisper tokens per 25 fps audio unit: 50 tokens/s (1500 per 30 s) vs 640-sample units.
pub const TOKENS_PER_AUDIO_UNIT: usize = 2;

/// Why the audio conditioning could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioConditioningError {
    /// The log-mel time axis is not a whole number of Whisper windows.
    #[error(
        "log-mel has {frames} frames, not a multiple of the {window}-frame Whisper window \
         (pad each 30 s chunk to {window} frames)"
    )]
    MelFrames {
        /// Frames of the input.
        frames: usize,
        /// Frames per Whisper window (3000).
        window: usize,
    },
    /// The Whisper encoder refused a window.
    #[error(transparent)]
    Whisper(#[from] WhisperError),
    /// `audio_len` gives no video frame.
    #[error("audio_len {audio_len} gives no video frame (at least step = {step} units needed)")]
    TooShort {
        /// 25 fps audio units.
        audio_len: usize,
        /// Units per video frame.
        step: usize,
    },
    /// `audio_len` asks for more Whisper tokens than the features hold.
    #[error(
        "audio_len {audio_len} needs {needed} Whisper tokens but the log-mel features give \
         {available}"
    )]
    LongerThanFeatures {
        /// 25 fps audio units.
        audio_len: usize,
        /// `2 * audio_len`.
        needed: usize,
        /// Tokens of the encoded windows.
        available: usize,
    },
    /// A window setting is out of range.
    #[error("invalid audio window config: {0}")]
    Config(String),
    /// The models (or the CLIP embedding) do not fit together or with the window config.
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        /// What was checked.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Actual size.
        found: usize,
    },
}

/// How hidden states are windowed per video frame. Defaults are Sonic's (`sonic.py`
/// `test()` and `config/inference/sonic.yaml`).
#[derive(Config, Debug, PartialEq)]
pub struct AudioWindowConfig {
    /// 25 fps audio units per video frame (`sonic.yaml` `step`: video at 12.5 fps).
    #[config(default = 2)]
    pub step: usize,
    /// Whisper tokens per audio2token window.
    #[config(default = 10)]
    pub token_window: usize,
    /// Zero tokens before the hidden states for audio2token (`token_window - token_pad_front`
    /// follow them).
    #[config(default = 4)]
    pub token_pad_front: usize,
    /// Whisper tokens per audio2bucket window.
    #[config(default = 50)]
    pub bucket_window: usize,
    /// Zero tokens before the last hidden state for audio2bucket
    /// (`bucket_window - bucket_pad_front` follow it).
    #[config(default = 24)]
    pub bucket_pad_front: usize,
    /// Frames run through the adapters at once (bounds the temporary memory).
    #[config(default = 256)]
    pub frames_per_batch: usize,
}

impl AudioWindowConfig {
    /// Sonic's windowing.
    pub fn sonic() -> Self {
        Self::new()
    }

    /// Whisper tokens between consecutive video frames (4).
    pub fn frame_stride(&self) -> usize {
        TOKENS_PER_AUDIO_UNIT * self.step
    }

    /// Video frames for `audio_len` 25 fps units: `audio_len / step`.
    pub fn num_frames(&self, audio_len: usize) -> usize {
        audio_len.checked_div(self.step).unwrap_or(0)
    }

    fn validate(&self) -> Result<(), AudioConditioningError> {
        let fail = |m: String| Err(AudioConditioningError::Config(m));
        if self.step == 0 {
            return fail("step must be at least 1".into());
        }
        if self.frames_per_batch == 0 {
            return fail("frames_per_batch must be at least 1".into());
        }
        if self.token_window == 0 || self.token_pad_front > self.token_window {
            return fail(format!(
                "token_pad_front {} must not exceed token_window {} (> 0)",
                self.token_pad_front, self.token_window
            ));
        }
        if self.bucket_window == 0 || self.bucket_pad_front > self.bucket_window {
            return fail(format!(
                "bucket_pad_front {} must not exceed bucket_window {} (> 0)",
                self.bucket_pad_front, self.bucket_window
            ));
        }
        Ok(())
    }
}

/// The three audio models of Sonic.
#[derive(Debug)]
pub struct AudioModels<B: Backend> {
    /// whisper-tiny encoder.
    pub whisper: WhisperEncoder<B>,
    /// Per-frame audio tokens.
    pub audio2token: Audio2Token<B>,
    /// Per-frame motion buckets.
    pub audio2bucket: Audio2Bucket<B>,
}

/// The Whisper hidden states Sonic uses, padded for windowing.
#[derive(Debug, Clone)]
pub struct AudioStates<B: Backend> {
    /// All hidden states, `token_pad_front` zeros, `2 * audio_len` tokens, zeros behind:
    /// `[2 * audio_len + token_window, blocks, d]`.
    token_padded: Tensor<B, 3>,
    /// The last hidden state, padded likewise for the bucket windows:
    /// `[2 * audio_len + bucket_window, 1, d]`.
    bucket_padded: Tensor<B, 3>,
    audio_len: usize,
    config: AudioWindowConfig,
}

impl<B: Backend> AudioStates<B> {
    /// Video frames: `audio_len / step`.
    pub fn num_frames(&self) -> usize {
        self.config.num_frames(self.audio_len)
    }

    /// The hidden states used (`2 * audio_len` tokens, unpadded): `[tokens, blocks, d]`.
    pub fn hidden_states(&self) -> Tensor<B, 3> {
        self.token_padded
            .clone()
            .narrow(0, self.config.token_pad_front, 2 * self.audio_len)
    }

    /// audio2token inputs of `frames`: `[frames.len(), token_window, blocks, d]`.
    ///
    /// # Panics
    /// If `frames` reaches past [`AudioStates::num_frames`].
    pub fn token_windows(&self, frames: Range<usize>) -> Tensor<B, 4> {
        windows(
            &self.token_padded,
            frames,
            self.config.token_window,
            &self.config,
        )
    }

    /// audio2bucket inputs of `frames`: `[frames.len(), bucket_window, 1, d]`.
    ///
    /// # Panics
    /// If `frames` reaches past [`AudioStates::num_frames`].
    pub fn bucket_windows(&self, frames: Range<usize>) -> Tensor<B, 4> {
        windows(
            &self.bucket_padded,
            frames,
            self.config.bucket_window,
            &self.config,
        )
    }
}

/// Rows `[stride * i, stride * i + window)` of `padded` for each frame `i`, gathered at once.
fn windows<B: Backend>(
    padded: &Tensor<B, 3>,
    frames: Range<usize>,
    window: usize,
    config: &AudioWindowConfig,
) -> Tensor<B, 4> {
    let [len, blocks, d] = padded.dims();
    let stride = config.frame_stride();
    let n = frames.len();
    assert!(
        n == 0 || stride * (frames.end - 1) + window <= len,
        "frames {frames:?} reach past the audio"
    );
    let device = padded.device();
    let starts = Tensor::<B, 1, Int>::arange(frames.start as i64..frames.end as i64, &device)
        .mul_scalar(stride as i64)
        .reshape([n, 1]);
    let offsets = Tensor::<B, 1, Int>::arange(0..window as i64, &device).reshape([1, window]);
    let rows = (starts + offsets).reshape([n * window]); // frame-major
    padded
        .clone()
        .reshape([len, blocks * d])
        .select(0, rows) // [n * window, blocks * d]
        .reshape([n, window, blocks, d])
}

/// Per-frame audio conditioning of the UNet.
#[derive(Debug, Clone)]
pub struct AudioConditioning<B: Backend> {
    /// audio2token of each frame's window: `[frames, context_tokens, output_dim]`.
    pub tokens: Tensor<B, 3>,
    /// audio2token of a zero window (the null audio of classifier-free guidance, the same
    /// for every frame): `[context_tokens, output_dim]`.
    pub null_tokens: Tensor<B, 2>,
    /// Raw audio2bucket outputs (head motion, expression): `[frames, 2, 1]`.
    pub buckets_raw: Tensor<B, 3>,
}

impl<B: Backend> AudioConditioning<B> {
    /// Video frames.
    pub fn num_frames(&self) -> usize {
        self.tokens.dims()[0]
    }

    /// The null tokens repeated for every frame, as the reference's list holds them:
    /// `[frames, context_tokens, output_dim]`.
    pub fn uncond_tokens(&self) -> Tensor<B, 3> {
        let [tokens, dim] = self.null_tokens.dims();
        self.null_tokens
            .clone()
            .unsqueeze_dim::<3>(0)
            .expand([self.num_frames(), tokens, dim])
    }

    /// Motion buckets as Sonic passes them to the pipeline: `raw * 16 + 16`, `[frames, 2, 1]`.
    pub fn motion_buckets(&self) -> Tensor<B, 3> {
        self.buckets_raw.clone().mul_scalar(16.0).add_scalar(16.0)
    }
}

impl<B: Backend> AudioModels<B> {
    /// Runs Whisper on every 30 s window of `mel` (all windows in one batch) and pads the
    /// hidden states of the first `2 * audio_len` tokens for windowing.
    ///
    /// # Shapes
    /// - `mel`: `[num_mel_bins, 3000 * windows]` (Whisper log-mel, one chunk per 30 s)
    ///
    /// # Errors
    /// A time axis that is not whole windows, a wrong mel-bin count, an `audio_len` that gives
    /// no frame or needs more tokens than the features hold, or an invalid `config`.
    pub fn encode(
        &self,
        mel: Tensor<B, 2>,
        audio_len: usize,
        config: &AudioWindowConfig,
    ) -> Result<AudioStates<B>, AudioConditioningError> {
        config.validate()?;
        if config.num_frames(audio_len) == 0 {
            return Err(AudioConditioningError::TooShort {
                audio_len,
                step: config.step,
            });
        }
        let [bins, frames] = mel.dims();
        let window = self.whisper.input_frames();
        if frames == 0 || !frames.is_multiple_of(window) {
            return Err(AudioConditioningError::MelFrames { frames, window });
        }
        let windows = frames / window;
        let available = windows * self.whisper.positions();
        let needed = TOKENS_PER_AUDIO_UNIT * audio_len;
        if needed > available {
            return Err(AudioConditioningError::LongerThanFeatures {
                audio_len,
                needed,
                available,
            });
        }

        let batch = mel.reshape([bins, windows, window]).swap_dims(0, 1); // [windows, bins, 3000]
        let states = self.whisper.forward(batch)?.hidden_states; // [windows, 1500, blocks, d]
        let [_, positions, blocks, d] = states.dims();
        // Windows follow each other in time.
        let states = states
            .reshape([windows * positions, blocks, d])
            .narrow(0, 0, needed); // [2 * audio_len, blocks, d]
        let last = states.clone().narrow(1, blocks - 1, 1); // [2 * audio_len, 1, d]
        Ok(AudioStates {
            token_padded: pad_tokens(states, config.token_pad_front, config.token_window),
            bucket_padded: pad_tokens(last, config.bucket_pad_front, config.bucket_window),
            audio_len,
            config: config.clone(),
        })
    }

    /// Audio tokens, null tokens and raw motion buckets for every frame of `states`.
    ///
    /// `clip_embeds` is the portrait's CLIP `image_embeds`, cast to audio2bucket's dtype (as
    /// `torch.cat` promotes Sonic's fp16 embedding).
    ///
    /// # Shapes
    /// - `clip_embeds`: `[1, clip_channels]`
    ///
    /// # Errors
    /// [`AudioConditioningError::Mismatch`] when the adapters' input widths do not fit the
    /// Whisper states and the window config, or `clip_embeds` is not one embedding of the
    /// width audio2bucket takes.
    pub fn condition(
        &self,
        states: &AudioStates<B>,
        clip_embeds: Tensor<B, 2>,
    ) -> Result<AudioConditioning<B>, AudioConditioningError> {
        let config = &states.config;
        let [_, blocks, d] = states.token_padded.dims();
        let token_in = self.audio2token.proj1.weight.lazy_shape().dims::<2>()[0];
        check(
            "audio2token input width",
            token_in,
            config.token_window * blocks * d,
        )?;
        let [clip_batch, clip_width] = clip_embeds.dims();
        check("CLIP embeddings per call", 1, clip_batch)?;
        let bucket_in = self.audio2bucket.proj1.weight.lazy_shape().dims::<2>()[0];
        check(
            "audio2bucket input width (audio window + CLIP embedding)",
            bucket_in,
            config.bucket_window * d + clip_width,
        )?;

        let token_dtype = self.audio2token.proj1.weight.val().dtype();
        let bucket_dtype = self.audio2bucket.proj1.weight.val().dtype();
        let clip_embeds = cast_to(clip_embeds, bucket_dtype);
        let frames = states.num_frames();
        let mut tokens = Vec::with_capacity(frames.div_ceil(config.frames_per_batch));
        let mut buckets = Vec::with_capacity(tokens.capacity());
        for start in (0..frames).step_by(config.frames_per_batch) {
            let range = start..frames.min(start + config.frames_per_batch);
            let n = range.len();
            let window = cast_to(states.token_windows(range.clone()), token_dtype);
            let t = self.audio2token.forward(window.unsqueeze_dim(0)); // [1, n, ctx, dim]
            let [_, _, ctx, dim] = t.dims();
            tokens.push(t.reshape([n, ctx, dim]));
            let window = cast_to(states.bucket_windows(range), bucket_dtype);
            let b = self
                .audio2bucket
                .forward(window.unsqueeze_dim(0), clip_embeds.clone()); // [1, n, 2, 1]
            let [_, _, ctx, dim] = b.dims();
            buckets.push(b.reshape([n, ctx, dim]));
        }

        let device = states.token_padded.device();
        let zeros = Tensor::<B, 5>::zeros(
            [1, 1, config.token_window, blocks, d],
            (&device, token_dtype),
        );
        let null = self.audio2token.forward(zeros); // [1, 1, ctx, dim]
        let [_, _, ctx, dim] = null.dims();
        Ok(AudioConditioning {
            tokens: Tensor::cat(tokens, 0),
            null_tokens: null.reshape([ctx, dim]),
            buckets_raw: Tensor::cat(buckets, 0),
        })
    }

    /// [`AudioModels::encode`] then [`AudioModels::condition`].
    ///
    /// # Shapes
    /// - `mel`: `[num_mel_bins, 3000 * windows]`
    /// - `clip_embeds`: `[1, clip_channels]`
    ///
    /// # Errors
    /// As the two steps.
    pub fn conditioning(
        &self,
        mel: Tensor<B, 2>,
        audio_len: usize,
        clip_embeds: Tensor<B, 2>,
        config: &AudioWindowConfig,
    ) -> Result<AudioConditioning<B>, AudioConditioningError> {
        let states = self.encode(mel, audio_len, config)?;
        self.condition(&states, clip_embeds)
    }
}

/// `[front zeros, x, window - front zeros]` along the token axis.
fn pad_tokens<B: Backend>(x: Tensor<B, 3>, front: usize, window: usize) -> Tensor<B, 3> {
    let [_, blocks, d] = x.dims();
    let options = (&x.device(), x.dtype());
    let zeros = |len| (len > 0).then(|| Tensor::zeros([len, blocks, d], options));
    let parts = [zeros(front), Some(x), zeros(window - front)];
    Tensor::cat(parts.into_iter().flatten().collect(), 0)
}

/// `expected`: what the model takes; `found`: what it would be given.
fn check(what: &'static str, expected: usize, found: usize) -> Result<(), AudioConditioningError> {
    if expected == found {
        Ok(())
    } else {
        Err(AudioConditioningError::Mismatch {
            what,
            expected,
            found,
        })
    }
}
