//! The VAE's mid-block self-attention over the pixels of each image: diffusers `Attention`
//! with `norm_num_groups=32`, `bias=True`, `residual_connection=True` (one head of all channels
//! in SVD-xt). Keys `group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::nn::attention::{AttentionChunking, attention, merge_heads, split_heads};
use crate::nn::cpu::contiguous;
use crate::nn::norm::group_norm;

/// Configuration of [`SpatialSelfAttention`].
#[derive(Config, Debug, PartialEq)]
pub struct SpatialSelfAttentionConfig {
    /// Channels (query, key, value and output width).
    pub channels: usize,
    /// Width of one head (`channels` in the VAE: a single head).
    pub head_dim: usize,
    /// Epsilon of the GroupNorm(32) applied first.
    #[config(default = 1e-6)]
    pub eps: f64,
}

impl SpatialSelfAttentionConfig {
    /// Builds the block (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpatialSelfAttention<B> {
        let linear = || LinearConfig::new(self.channels, self.channels).init(device);
        SpatialSelfAttention {
            group_norm: GroupNormConfig::new(32, self.channels)
                .with_epsilon(self.eps)
                .init(device),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
            heads: self.channels / self.head_dim,
            chunking: AttentionChunking::default(),
        }
    }
}

/// `x + to_out(attention(GN(x)))` over the `h * w` pixels of each image.
#[derive(Module, Debug)]
pub struct SpatialSelfAttention<B: Backend> {
    /// GroupNorm before the projections.
    pub group_norm: GroupNorm<B>,
    /// Query projection.
    pub to_q: Linear<B>,
    /// Key projection.
    pub to_k: Linear<B>,
    /// Value projection.
    pub to_v: Linear<B>,
    /// Output projection (`to_out.0`; diffusers' `to_out.1` is a parameterless dropout).
    pub to_out: Vec<Linear<B>>,
    heads: usize,
    #[module(skip)]
    chunking: AttentionChunking,
}

impl<B: Backend> SpatialSelfAttention<B> {
    /// Applies the block to every image independently.
    ///
    /// # Shapes
    /// - `x`: `[n, channels, h, w]`
    /// - returns `[n, channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let tokens = contiguous(
            group_norm(&self.group_norm, x.clone())
                .reshape([n, c, h * w])
                .swap_dims(1, 2),
        ); // [n, hw, c]
        let q = split_heads(
            crate::nn::cpu::linear(&self.to_q, tokens.clone()),
            self.heads,
        );
        let k = split_heads(
            crate::nn::cpu::linear(&self.to_k, tokens.clone()),
            self.heads,
        );
        let v = split_heads(crate::nn::cpu::linear(&self.to_v, tokens), self.heads);
        let out = merge_heads(attention(q, k, v, None, self.chunking)); // [n, hw, c]
        let out = contiguous(crate::nn::cpu::linear(&self.to_out[0], out).swap_dims(1, 2))
            .reshape([n, c, h, w]);
        out.add(x)
    }
}
