//! Multi-head self-attention with Hugging Face transformers' projection names (`q_proj`,
//! `k_proj`, `v_proj`, `out_proj`), as used by the Whisper encoder and the CLIP vision tower.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::attention::{AttentionChunking, attention, merge_heads, split_heads};

/// Configuration of [`SelfAttention`].
#[derive(Config, Debug, PartialEq)]
pub struct SelfAttentionConfig {
    /// Model width (input and output).
    pub d_model: usize,
    /// Number of heads; must divide `d_model`.
    pub heads: usize,
    /// Whether `k_proj` has a bias (Whisper's has none; CLIP's has one).
    #[config(default = true)]
    pub key_bias: bool,
}

impl SelfAttentionConfig {
    /// Builds the module (lazily initialised).
    ///
    /// # Panics
    /// If `heads` does not divide `d_model` (a bug in the calling model's config checks).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SelfAttention<B> {
        assert!(
            self.heads > 0 && self.d_model.is_multiple_of(self.heads),
            "{} heads do not divide width {}",
            self.heads,
            self.d_model
        );
        let linear = |bias| {
            LinearConfig::new(self.d_model, self.d_model)
                .with_bias(bias)
                .init(device)
        };
        // Field order = the checkpoints' key order (k, v, q, out).
        SelfAttention {
            k_proj: linear(self.key_bias),
            v_proj: linear(true),
            q_proj: linear(true),
            out_proj: linear(true),
            heads: self.heads,
            chunking: AttentionChunking::default(),
        }
    }
}

/// `out_proj(softmax(q kᵀ / sqrt(head_dim)) v)` over all tokens, no mask.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    /// Key projection.
    pub k_proj: Linear<B>,
    /// Value projection.
    pub v_proj: Linear<B>,
    /// Query projection (the `head_dim^-0.5` scale is applied in the attention op).
    pub q_proj: Linear<B>,
    /// Output projection.
    pub out_proj: Linear<B>,
    heads: usize,
    chunking: AttentionChunking,
}

impl<B: Backend> SelfAttention<B> {
    /// Bounds the attention scores held at once (see [`AttentionChunking`]).
    pub fn with_chunking(mut self, chunking: AttentionChunking) -> Self {
        self.chunking = chunking;
        self
    }

    /// Attends every token to every token.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`
    /// - returns `[batch, len, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let head_dim = x.dims()[2] / self.heads;
        let q = split_heads(crate::nn::cpu::linear(&self.q_proj, x.clone()), self.heads); // [b, h, len, hd]
        let k = split_heads(crate::nn::cpu::linear(&self.k_proj, x.clone()), self.heads);
        let v = split_heads(crate::nn::cpu::linear(&self.v_proj, x), self.heads);
        let scale = (head_dim as f64).powf(-0.5);
        let out = attention(q, k, v, Some(scale), self.chunking);
        crate::nn::cpu::linear(&self.out_proj, merge_heads(out)) // [b, len, d_model]
    }
}
