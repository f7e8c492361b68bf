//! The spatio-temporal transformer of the SVD UNet with Sonic's audio conditioning:
//! `TransformerSpatioTemporalModel` (S:src/models/base/unet_3d_blocks.py), with diffusers'
//! `BasicTransformerBlock` and `TemporalBasicTransformerBlock` (D:models/attention.py).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::attention::{AttentionConfig, AudioCrossAttention, SelfAttention};
use super::face_mask::FaceMask;
use super::feed_forward::{FeedForward, FeedForwardConfig};
use super::on_rows;
use crate::nn::attention::AttentionChunking;
use crate::nn::cpu::contiguous;
use crate::nn::embeddings::{TimestepEmbedding, TimestepEmbeddingConfig, timestep_embedding};
use crate::nn::norm::group_norm;
use crate::nn::resnet::{AlphaBlender, MergeStrategy};

/// What every cross-attention of one UNet call attends to.
///
/// Built once per call by [`CrossAttentionContext::new`]; the window averages and the
/// resampled face masks are computed there, not in every block.
#[derive(Debug, Clone)]
pub struct CrossAttentionContext<B: Backend> {
    /// Per-frame CLIP tokens (spatial blocks), `[b·f, clip_tokens, d]`.
    pub clip: Tensor<B, 3>,
    /// Per-frame audio tokens (spatial blocks), `[b·f, audio_tokens, d]`.
    pub audio: Tensor<B, 3>,
    /// CLIP tokens averaged over the frames of each batch entry (temporal blocks),
    /// `[b, clip_tokens, d]`.
    pub clip_mean: Tensor<B, 3>,
    /// Audio tokens averaged over the frames of each batch entry (temporal blocks),
    /// `[b, audio_tokens, d]`.
    pub audio_mean: Tensor<B, 3>,
    /// Frames per batch entry.
    pub num_frames: usize,
    /// Bound on the attention scores computed at once.
    pub chunking: AttentionChunking,
    /// The face mask on each token grid, `(tokens, [1, tokens, 1])`; empty when unmasked.
    masks: Vec<(usize, Tensor<B, 3>)>,
    /// The host mask, for a token count not prepared in advance.
    face_mask: Option<FaceMask>,
}

impl<B: Backend> CrossAttentionContext<B> {
    /// Prepares the context of one call: averages the contexts over each entry's frames
    /// (Sonic's `spatial2time`) and resamples the face mask to each of `token_counts`.
    ///
    /// # Shapes
    /// - `clip`: `[b·num_frames, clip_tokens, d]`
    /// - `audio`: `[b·num_frames, audio_tokens, d]`
    pub fn new(
        clip: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        num_frames: usize,
        face_mask: Option<&FaceMask>,
        token_counts: &[usize],
        chunking: AttentionChunking,
    ) -> Self {
        let frames_mean = |x: Tensor<B, 3>| {
            let [n, tokens, d] = x.dims();
            x.reshape([n / num_frames, num_frames, tokens, d])
                .mean_dim(1)
                .reshape([n / num_frames, tokens, d])
        };
        let (device, dtype) = (audio.device(), audio.dtype());
        let masks = face_mask
            .map(|mask| {
                token_counts
                    .iter()
                    .map(|&n| (n, mask.tokens::<B>(n, &device, dtype)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            clip_mean: frames_mean(clip.clone()),
            audio_mean: frames_mean(audio.clone()),
            clip,
            audio,
            num_frames,
            chunking,
            masks,
            face_mask: face_mask.cloned(),
        }
    }

    /// The face mask on a grid of `tokens` tokens, `[1, tokens, 1]`, or `None` when unmasked.
    pub fn mask(&self, tokens: usize) -> Option<Tensor<B, 3>> {
        let mask = self.face_mask.as_ref()?;
        match self.masks.iter().find(|(n, _)| *n == tokens) {
            Some((_, t)) => Some(t.clone()),
            None => Some(mask.tokens(tokens, &self.audio.device(), self.audio.dtype())),
        }
    }
}

/// Configuration of [`BasicTransformerBlock`] and [`TemporalBasicTransformerBlock`].
#[derive(Config, Debug, PartialEq)]
pub struct TransformerBlockConfig {
    /// Channels.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the context tokens.
    pub cross_attention_dim: usize,
    /// Weight of the audio branch of `attn2`.
    #[config(default = 1.0)]
    pub audio_scale: f64,
}

impl TransformerBlockConfig {
    fn attention(&self) -> AttentionConfig {
        AttentionConfig::new(self.dim, self.heads)
            .with_cross_attention_dim(Some(self.cross_attention_dim))
            .with_audio_scale(self.audio_scale)
    }

    /// Builds the per-frame block (lazily initialised).
    pub fn init_spatial<B: Backend>(&self, device: &B::Device) -> BasicTransformerBlock<B> {
        let norm = || LayerNormConfig::new(self.dim).init(device);
        BasicTransformerBlock {
            norm1: norm(),
            attn1: self.attention().init_self(device),
            norm2: norm(),
            attn2: self.attention().init_cross(device),
            norm3: norm(),
            ff: FeedForwardConfig::new(self.dim).init(device),
        }
    }

    /// Builds the across-frames block (lazily initialised).
    pub fn init_temporal<B: Backend>(
        &self,
        device: &B::Device,
    ) -> TemporalBasicTransformerBlock<B> {
        let norm = || LayerNormConfig::new(self.dim).init(device);
        TemporalBasicTransformerBlock {
            norm_in: norm(),
            ff_in: FeedForwardConfig::new(self.dim).init(device),
            norm1: norm(),
            attn1: self.attention().init_self(device),
            norm2: norm(),
            attn2: self.attention().init_cross(device),
            norm3: norm(),
            ff: FeedForwardConfig::new(self.dim).init(device),
        }
    }
}

/// Per-frame transformer block: self-attention over the frame's pixels, cross-attention to the
/// frame's CLIP and (face-masked) audio tokens, GEGLU feed-forward; pre-LayerNorm, residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock<B: Backend> {
    /// Before `attn1` (eps 1e-5).
    pub norm1: LayerNorm<B>,
    /// Self-attention.
    pub attn1: SelfAttention<B>,
    /// Before `attn2`.
    pub norm2: LayerNorm<B>,
    /// CLIP + audio cross-attention.
    pub attn2: AudioCrossAttention<B>,
    /// Before `ff`.
    pub norm3: LayerNorm<B>,
    /// Feed-forward.
    pub ff: FeedForward<B>,
}

impl<B: Backend> BasicTransformerBlock<B> {
    /// # Shapes
    /// - `x`: `[b·f, tokens, dim]`
    /// - `mask`: `[1, tokens, 1]`
    /// - returns `[b·f, tokens, dim]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: &CrossAttentionContext<B>,
        mask: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let chunking = context.chunking;
        let x = self
            .attn1
            .forward(self.norm1.forward(x.clone()), chunking)
            .add(x);
        let x = self
            .attn2
            .forward(
                self.norm2.forward(x.clone()),
                context.clip.clone(),
                context.audio.clone(),
                mask,
                chunking,
            )
            .add(x);
        self.ff.forward(self.norm3.forward(x.clone())).add(x)
    }
}

/// Across-frames transformer block: every pixel is a sequence of `num_frames` tokens.
/// `ff_in` with a residual first (`is_res`), then self-attention over the frames,
/// cross-attention to the window-averaged context (unmasked), feed-forward.
#[derive(Module, Debug)]
pub struct TemporalBasicTransformerBlock<B: Backend> {
    /// Before `ff_in` (eps 1e-5).
    pub norm_in: LayerNorm<B>,
    /// Input feed-forward.
    pub ff_in: FeedForward<B>,
    /// Before `attn1`.
    pub norm1: LayerNorm<B>,
    /// Self-attention over the frames.
    pub attn1: SelfAttention<B>,
    /// Before `attn2`.
    pub norm2: LayerNorm<B>,
    /// Cross-attention to the averaged CLIP and audio tokens.
    pub attn2: AudioCrossAttention<B>,
    /// Before `ff`.
    pub norm3: LayerNorm<B>,
    /// Feed-forward.
    pub ff: FeedForward<B>,
}

impl<B: Backend> TemporalBasicTransformerBlock<B> {
    /// # Shapes
    /// - `x`: `[b, f, tokens, dim]`
    /// - returns `[b, f, tokens, dim]` (a permuted view; the caller's blend makes it dense)
    pub fn forward(&self, x: Tensor<B, 4>, context: &CrossAttentionContext<B>) -> Tensor<B, 4> {
        let [b, f, tokens, dim] = x.dims();
        let chunking = context.chunking;
        let x = contiguous(x.swap_dims(1, 2)).reshape([b * tokens, f, dim]); // [b*tokens, f, dim]
        let x = self.ff_in.forward(self.norm_in.forward(x.clone())).add(x);
        let x = self
            .attn1
            .forward(self.norm1.forward(x.clone()), chunking)
            .add(x);
        // One query group per batch entry: every pixel's frames attend to the same context.
        let queries = self.norm2.forward(x.clone()).reshape([b, tokens * f, dim]);
        let cross = self.attn2.forward(
            queries,
            context.clip_mean.clone(),
            context.audio_mean.clone(),
            None,
            chunking,
        );
        let x = cross.reshape([b * tokens, f, dim]).add(x);
        let x = self.ff.forward(self.norm3.forward(x.clone())).add(x);
        x.reshape([b, tokens, f, dim]).swap_dims(1, 2)
    }
}

/// Configuration of [`TransformerSpatioTemporal`].
#[derive(Config, Debug, PartialEq)]
pub struct TransformerSpatioTemporalConfig {
    /// Channels of the feature map (= heads · head_dim).
    pub in_channels: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the context tokens.
    pub cross_attention_dim: usize,
    /// Spatial/temporal block pairs (`transformer_layers_per_block`).
    #[config(default = 1)]
    pub num_layers: usize,
    /// Weight of the audio branch of every `attn2`.
    #[config(default = 1.0)]
    pub audio_scale: f64,
}

impl TransformerSpatioTemporalConfig {
    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TransformerSpatioTemporal<B> {
        let c = self.in_channels;
        let block = TransformerBlockConfig::new(c, self.heads, self.cross_attention_dim)
            .with_audio_scale(self.audio_scale);
        TransformerSpatioTemporal {
            norm: GroupNormConfig::new(32, c).with_epsilon(1e-6).init(device),
            proj_in: LinearConfig::new(c, c).init(device),
            transformer_blocks: (0..self.num_layers)
                .map(|_| block.init_spatial(device))
                .collect(),
            temporal_transformer_blocks: (0..self.num_layers)
                .map(|_| block.init_temporal(device))
                .collect(),
            time_pos_embed: TimestepEmbeddingConfig::new(c, 4 * c)
                .with_out_dim(Some(c))
                .init(device),
            time_mixer: AlphaBlender::new(0.5, MergeStrategy::LearnedWithImages, false, device),
            proj_out: LinearConfig::new(c, c).init(device),
        }
    }
}

/// Spatial and temporal transformer blocks on a feature map, blended by a learned scalar,
/// with the frame index embedded into the temporal branch; a residual around the whole.
#[derive(Module, Debug)]
pub struct TransformerSpatioTemporal<B: Backend> {
    /// GroupNorm(32, eps 1e-6) on the input.
    pub norm: GroupNorm<B>,
    /// Channels -> inner width.
    pub proj_in: Linear<B>,
    /// Per-frame blocks.
    pub transformer_blocks: Vec<BasicTransformerBlock<B>>,
    /// Across-frames blocks.
    pub temporal_transformer_blocks: Vec<TemporalBasicTransformerBlock<B>>,
    /// MLP of the frame-index sinusoids (`C -> 4C -> C`).
    pub time_pos_embed: TimestepEmbedding<B>,
    /// `sigmoid(mix_factor) · spatial + (1 - sigmoid(mix_factor)) · temporal`.
    pub time_mixer: AlphaBlender<B>,
    /// Inner width -> channels.
    pub proj_out: Linear<B>,
}

impl<B: Backend> TransformerSpatioTemporal<B> {
    /// # Shapes
    /// - `x`: `[b·f, C, h, w]`
    /// - returns `[b·f, C, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, context: &CrossAttentionContext<B>) -> Tensor<B, 4> {
        let [bf, c, h, w] = x.dims();
        let f = context.num_frames;
        let b = bf / f;
        let tokens = h * w;
        let residual = x.clone();

        let x =
            contiguous(group_norm(&self.norm, x).permute([0, 2, 3, 1])).reshape([bf, tokens, c]); // [b*f, h*w, C]
        let mut x = on_rows(x, |rows| crate::nn::cpu::linear(&self.proj_in, rows));

        // Frame index 0..f within the window, embedded once and broadcast over batch and pixels.
        let device = x.device();
        let frames: Vec<f32> = (0..f).map(|i| i as f32).collect();
        let frames = Tensor::<B, 1>::from_data(TensorData::new(frames, [f]), (&device, DType::F32));
        let frame_emb = self
            .time_pos_embed
            .forward(timestep_embedding(frames, c, x.dtype()))
            .reshape([1, f, 1, c]);

        let mask = context.mask(tokens);
        for (spatial, temporal) in self
            .transformer_blocks
            .iter()
            .zip(&self.temporal_transformer_blocks)
        {
            let spatial_out = spatial
                .forward(x, context, mask.clone())
                .reshape([b, f, tokens, c]);
            let temporal_out =
                temporal.forward(spatial_out.clone().add(frame_emb.clone()), context);
            // Blending the permuted temporal view directly saves a copy back to frame order.
            x = self
                .time_mixer
                .blend(spatial_out, temporal_out)
                .reshape([bf, tokens, c]);
        }

        contiguous(
            on_rows(x, |rows| crate::nn::cpu::linear(&self.proj_out, rows))
                .reshape([bf, h, w, c])
                .permute([0, 3, 1, 2]),
        )
        .add(residual)
    }
}
