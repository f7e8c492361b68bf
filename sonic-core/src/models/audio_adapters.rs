//! Sonic's audio adapters: `audio2token` (per-frame audio tokens for the UNet's audio
//! cross-attention) and `audio2bucket` (per-frame head-motion and expression buckets).
//!
//! Reference: Sonic `src/models/audio_adapter/audio_proj.py` (`AudioProjModel`) and
//! `audio_to_bucket.py` (`Audio2bucketModel`); checkpoints `Sonic/audio2token.pth` and
//! `Sonic/audio2bucket.pth` (keys `proj1`, `proj2`, `proj3`, and `norm` for audio2token).

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, silu};

use crate::nn::cpu::linear;
use crate::weights::{Checkpoint, LoadError, LoadOptions, LoadReport, load_module};

/// Configuration of [`Audio2Token`] (Sonic's `AudioProjModel`).
#[derive(Config, Debug, PartialEq)]
pub struct Audio2TokenConfig {
    /// Whisper tokens per video frame window.
    #[config(default = 10)]
    pub seq_len: usize,
    /// Whisper hidden states stacked per token (embedding output, each layer, final norm).
    #[config(default = 5)]
    pub blocks: usize,
    /// Whisper hidden size.
    #[config(default = 384)]
    pub channels: usize,
    /// Width of the two hidden layers.
    #[config(default = 1024)]
    pub intermediate_dim: usize,
    /// Width of each output token (the UNet's `cross_attention_dim`).
    #[config(default = 1024)]
    pub output_dim: usize,
    /// Output tokens per frame.
    #[config(default = 32)]
    pub context_tokens: usize,
}

impl Audio2TokenConfig {
    /// The released model: `AudioProjModel(seq_len=10, blocks=5, channels=384,
    /// intermediate_dim=1024, output_dim=1024, context_tokens=32)` (Sonic `sonic.py`).
    pub fn sonic() -> Self {
        Self::new()
    }

    /// Builds the module; parameters are initialised lazily (nothing is allocated until used
    /// or loaded).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Audio2Token<B> {
        let input_dim = self.seq_len * self.blocks * self.channels;
        Audio2Token {
            proj1: LinearConfig::new(input_dim, self.intermediate_dim).init(device),
            proj2: LinearConfig::new(self.intermediate_dim, self.intermediate_dim).init(device),
            proj3: LinearConfig::new(self.intermediate_dim, self.context_tokens * self.output_dim)
                .init(device),
            norm: LayerNormConfig::new(self.output_dim).init(device),
            context_tokens: self.context_tokens,
            output_dim: self.output_dim,
        }
    }
}

/// Projects a window of Whisper hidden states to the audio tokens of one video frame.
#[derive(Module, Debug)]
pub struct Audio2Token<B: Backend> {
    /// Flattened window -> intermediate.
    pub proj1: Linear<B>,
    /// Intermediate -> intermediate.
    pub proj2: Linear<B>,
    /// Intermediate -> all tokens.
    pub proj3: Linear<B>,
    /// LayerNorm over each token (eps 1e-5).
    pub norm: LayerNorm<B>,
    context_tokens: usize,
    output_dim: usize,
}

impl<B: Backend> Audio2Token<B> {
    /// Audio tokens for every frame.
    ///
    /// # Shapes
    /// - `audio_window`: `[batch, frames, seq_len, blocks, channels]`
    /// - returns `[batch, frames, context_tokens, output_dim]`
    pub fn forward(&self, audio_window: Tensor<B, 5>) -> Tensor<B, 4> {
        let [batch, frames, seq_len, blocks, channels] = audio_window.dims();
        // Token-major flatten, as the reference's `view`: idx = (w * blocks + b) * channels + c.
        let x = audio_window.reshape([batch * frames, seq_len * blocks * channels]);
        let x = relu(linear(&self.proj1, x));
        let x = relu(linear(&self.proj2, x));
        let tokens =
            linear(&self.proj3, x).reshape([batch * frames, self.context_tokens, self.output_dim]);
        self.norm
            .forward(tokens)
            .reshape([batch, frames, self.context_tokens, self.output_dim])
    }
}

/// Configuration of [`Audio2Bucket`] (Sonic's `Audio2bucketModel`).
#[derive(Config, Debug, PartialEq)]
pub struct Audio2BucketConfig {
    /// Whisper tokens per window (2 s of audio).
    #[config(default = 50)]
    pub seq_len: usize,
    /// Hidden states per token (only the last one).
    #[config(default = 1)]
    pub blocks: usize,
    /// Whisper hidden size.
    #[config(default = 384)]
    pub channels: usize,
    /// Width of the CLIP image embedding appended to the flattened window.
    #[config(default = 1024)]
    pub clip_channels: usize,
    /// Width of the two hidden layers.
    #[config(default = 1024)]
    pub intermediate_dim: usize,
    /// Width of each output value.
    #[config(default = 1)]
    pub output_dim: usize,
    /// Output values per frame: head motion, expression.
    #[config(default = 2)]
    pub context_tokens: usize,
}

impl Audio2BucketConfig {
    /// The released model: `Audio2bucketModel(seq_len=50, blocks=1, channels=384,
    /// clip_channels=1024, intermediate_dim=1024, output_dim=1, context_tokens=2)`.
    pub fn sonic() -> Self {
        Self::new()
    }

    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Audio2Bucket<B> {
        let input_dim = self.seq_len * self.blocks * self.channels + self.clip_channels;
        Audio2Bucket {
            proj1: LinearConfig::new(input_dim, self.intermediate_dim).init(device),
            proj2: LinearConfig::new(self.intermediate_dim, self.intermediate_dim).init(device),
            proj3: LinearConfig::new(self.intermediate_dim, self.context_tokens * self.output_dim)
                .init(device),
            context_tokens: self.context_tokens,
            output_dim: self.output_dim,
        }
    }
}

/// Predicts the raw motion buckets of each frame from 2 s of audio and the portrait's CLIP
/// embedding. Sonic uses `raw * 16 + 16` (see [`Audio2Bucket::buckets`]).
#[derive(Module, Debug)]
pub struct Audio2Bucket<B: Backend> {
    /// Flattened window + CLIP embedding -> intermediate.
    pub proj1: Linear<B>,
    /// Intermediate -> intermediate.
    pub proj2: Linear<B>,
    /// Intermediate -> buckets.
    pub proj3: Linear<B>,
    context_tokens: usize,
    output_dim: usize,
}

impl<B: Backend> Audio2Bucket<B> {
    /// Raw bucket predictions.
    ///
    /// The reference concatenates one CLIP row per call (it runs one frame at a time); here the
    /// embedding is broadcast to every frame, which is the same computation batched.
    ///
    /// # Shapes
    /// - `audio_window`: `[batch, frames, seq_len, blocks, channels]`
    /// - `clip_embeds`: `[batch, clip_channels]`
    /// - returns `[batch, frames, context_tokens, output_dim]`
    pub fn forward(&self, audio_window: Tensor<B, 5>, clip_embeds: Tensor<B, 2>) -> Tensor<B, 4> {
        let [batch, frames, seq_len, blocks, channels] = audio_window.dims();
        let [_, clip_channels] = clip_embeds.dims();
        let audio = audio_window.reshape([batch * frames, seq_len * blocks * channels]);
        let clip = clip_embeds
            .unsqueeze_dim::<3>(1)
            .expand([batch, frames, clip_channels])
            .reshape([batch * frames, clip_channels]);
        let x = Tensor::cat(vec![audio, clip], 1); // [b*f, seq_len*blocks*channels + clip]
        let x = silu(linear(&self.proj1, x));
        let x = silu(linear(&self.proj2, x));
        linear(&self.proj3, x).reshape([batch, frames, self.context_tokens, self.output_dim])
    }

    /// Motion buckets as Sonic feeds them to the UNet: `raw * 16 + 16`.
    ///
    /// # Shapes
    /// Same as [`Audio2Bucket::forward`].
    pub fn buckets(&self, audio_window: Tensor<B, 5>, clip_embeds: Tensor<B, 2>) -> Tensor<B, 4> {
        self.forward(audio_window, clip_embeds)
            .mul_scalar(16.0)
            .add_scalar(16.0)
    }
}

/// Loads `audio2token.pth` (keys as released, no prefix) into a model built from `config`.
pub fn load_audio2token<B: Backend>(
    config: &Audio2TokenConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(Audio2Token<B>, LoadReport), LoadError> {
    let checkpoint = Checkpoint::open(path)?;
    load_module(config.init(device), &checkpoint, options)
}

/// Loads `audio2bucket.pth` (keys as released, no prefix) into a model built from `config`.
pub fn load_audio2bucket<B: Backend>(
    config: &Audio2BucketConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(Audio2Bucket<B>, LoadReport), LoadError> {
    let checkpoint = Checkpoint::open(path)?;
    load_module(config.init(device), &checkpoint, options)
}
