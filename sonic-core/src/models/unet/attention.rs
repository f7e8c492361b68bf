//! The UNet's attention layers with the processors Sonic installs (`add_ip_adapters`):
//! every `attn1` is plain scaled dot-product self-attention, every `attn2` is
//! `IPAdapterAttnProcessor2_0` (S:src/models/base/attention_processor.py), a CLIP
//! cross-attention plus a decoupled audio cross-attention with its own softmax.
//!
//! All use [`crate::nn::attention::attention`], so no call materialises more than the
//! configured number of scores.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::on_rows;
use crate::nn::attention::{AttentionChunking, attention, merge_heads, split_heads};

/// Configuration of [`SelfAttention`] and [`AudioCrossAttention`] (diffusers `Attention` with
/// `bias=False`, `out_bias=True`).
#[derive(Config, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Width of the queries and of the output.
    pub query_dim: usize,
    /// Number of heads (the UNet uses 64 channels per head).
    pub heads: usize,
    /// Width of the context tokens (cross-attention only).
    #[config(default = "None")]
    pub cross_attention_dim: Option<usize>,
    /// Weight of the audio branch (`scale` of `add_ip_adapters`; Sonic uses 1.0).
    #[config(default = 1.0)]
    pub audio_scale: f64,
}

impl AttentionConfig {
    /// `to_q`, `to_k`, `to_v` (keys and values from `context`-wide tokens), `to_out.0`.
    fn projections<B: Backend>(&self, context: usize, device: &B::Device) -> [Linear<B>; 4] {
        let project = |from| {
            LinearConfig::new(from, self.query_dim)
                .with_bias(false)
                .init(device)
        };
        [
            project(self.query_dim),
            project(context),
            project(context),
            LinearConfig::new(self.query_dim, self.query_dim).init(device),
        ]
    }

    /// Builds `attn1` (lazily initialised); `cross_attention_dim` is not used.
    pub fn init_self<B: Backend>(&self, device: &B::Device) -> SelfAttention<B> {
        let [to_q, to_k, to_v, to_out] = self.projections(self.query_dim, device);
        SelfAttention {
            to_q,
            to_k,
            to_v,
            to_out: vec![to_out],
            heads: self.heads,
        }
    }

    /// Builds `attn2` with its audio adapter (lazily initialised).
    ///
    /// # Panics
    /// If `cross_attention_dim` is not set.
    pub fn init_cross<B: Backend>(&self, device: &B::Device) -> AudioCrossAttention<B> {
        let context = self
            .cross_attention_dim
            .expect("cross-attention needs cross_attention_dim");
        let [to_q, to_k, to_v, to_out] = self.projections(context, device);
        let ip = || {
            vec![
                LinearConfig::new(context, self.query_dim)
                    .with_bias(false)
                    .init(device),
            ]
        };
        AudioCrossAttention {
            to_q,
            to_k,
            to_v,
            to_out: vec![to_out],
            processor: AudioAdapter {
                to_k_ip: ip(),
                to_v_ip: ip(),
            },
            heads: self.heads,
            audio_scale: self.audio_scale,
        }
    }
}

fn project<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    on_rows(x, |rows| crate::nn::cpu::linear(linear, rows))
}

/// Multi-head self-attention (`attn1`).
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    /// Query projection (no bias).
    pub to_q: Linear<B>,
    /// Key projection (no bias).
    pub to_k: Linear<B>,
    /// Value projection (no bias).
    pub to_v: Linear<B>,
    /// `to_out.0`: output projection (PyTorch's `ModuleList[Linear, Dropout]`; the dropout has
    /// no parameters).
    pub to_out: Vec<Linear<B>>,
    heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    /// Attention of every token to every token of its sequence.
    ///
    /// # Shapes
    /// - `x`: `[sequences, len, query_dim]`
    /// - returns `[sequences, len, query_dim]`
    pub fn forward(&self, x: Tensor<B, 3>, chunking: AttentionChunking) -> Tensor<B, 3> {
        let q = split_heads(project(&self.to_q, x.clone()), self.heads);
        let k = split_heads(project(&self.to_k, x.clone()), self.heads);
        let v = split_heads(project(&self.to_v, x), self.heads);
        let out = merge_heads(attention(q, k, v, None, chunking)); // [n, len, C]
        project(&self.to_out[0], out)
    }
}

/// The decoupled audio branch's projections (`attn2.processor.to_{k,v}_ip.0`, no bias).
#[derive(Module, Debug)]
pub struct AudioAdapter<B: Backend> {
    /// Audio key projection, one per adapter (Sonic has one).
    pub to_k_ip: Vec<Linear<B>>,
    /// Audio value projection, one per adapter.
    pub to_v_ip: Vec<Linear<B>>,
}

/// Cross-attention to the CLIP tokens plus the audio tokens (`attn2` with Sonic's
/// `IPAdapterAttnProcessor2_0`):
/// `to_out(SDPA(q, to_k(clip), to_v(clip)) + scale · mask ⊙ SDPA(q, to_k_ip(audio),
/// to_v_ip(audio)))`, both with the same heads, each with its own softmax.
#[derive(Module, Debug)]
pub struct AudioCrossAttention<B: Backend> {
    /// Query projection (no bias), shared by both branches.
    pub to_q: Linear<B>,
    /// CLIP key projection (no bias).
    pub to_k: Linear<B>,
    /// CLIP value projection (no bias).
    pub to_v: Linear<B>,
    /// `to_out.0`: output projection.
    pub to_out: Vec<Linear<B>>,
    /// The audio adapter's projections.
    pub processor: AudioAdapter<B>,
    heads: usize,
    audio_scale: f64,
}

impl<B: Backend> AudioCrossAttention<B> {
    /// Cross-attention of `groups` query sets, each to its own context row.
    ///
    /// The spatial transformer calls it with one group per frame (`groups = b·f`, the tokens of
    /// the frame as queries); the temporal one with one group per batch entry (`groups = b`,
    /// every pixel's frames as queries, the window-averaged context). Grouping the temporal
    /// queries this way is the reference's per-pixel repeat of the context without the copy.
    ///
    /// `mask` multiplies the audio branch per query token (the face mask on this level's token
    /// grid); `None` leaves it unmasked, as for the temporal blocks.
    ///
    /// # Shapes
    /// - `x`: `[groups, queries, query_dim]`
    /// - `clip`: `[groups, clip_tokens, cross_attention_dim]`
    /// - `audio`: `[groups, audio_tokens, cross_attention_dim]`
    /// - `mask`: `[1, queries, 1]`
    /// - returns `[groups, queries, query_dim]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        clip: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        mask: Option<Tensor<B, 3>>,
        chunking: AttentionChunking,
    ) -> Tensor<B, 3> {
        let [groups, queries, width] = x.dims();
        let q = split_heads(project(&self.to_q, x), self.heads);

        let clip_tokens = clip.dims()[1];
        let clip_out = if clip_tokens == 1 {
            // The softmax over a single key is exactly 1: every query receives the value
            // (`[g, 1, C]`, broadcast over the queries below).
            project(&self.to_v, clip)
        } else {
            let k = split_heads(project(&self.to_k, clip.clone()), self.heads);
            let v = split_heads(project(&self.to_v, clip), self.heads);
            merge_heads(attention(q.clone(), k, v, None, chunking))
        };

        if self.audio_scale == 0.0 {
            // The reference skips an adapter whose scale is zero.
            return project(&self.to_out[0], clip_out.expand([groups, queries, width]));
        }
        let k_ip = split_heads(
            project(&self.processor.to_k_ip[0], audio.clone()),
            self.heads,
        );
        let v_ip = split_heads(project(&self.processor.to_v_ip[0], audio), self.heads);
        let mut audio_out = merge_heads(attention(q, k_ip, v_ip, None, chunking)); // [g, q, C]
        #[cfg(feature = "flex")]
        if let Some(mixed) = crate::nn::cpu::audio_mix(
            &audio_out,
            mask.as_ref(),
            self.audio_scale as f32,
            &clip_out,
        ) {
            return project(&self.to_out[0], mixed);
        }
        if let Some(mask) = mask {
            audio_out = audio_out * mask;
        }
        if self.audio_scale != 1.0 {
            audio_out = audio_out.mul_scalar(self.audio_scale);
        }
        project(&self.to_out[0], audio_out + clip_out)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::nn::attention::attention_materialized;

    type B = burn::backend::Flex;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    fn assert_close(got: Tensor<B, 3>, want: Tensor<B, 3>) {
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(2e-5));
    }

    /// Budgets that force: the whole call, batch chunks, row chunks, single query rows.
    fn budgets(heads: usize, len_q: usize, len_k: usize) -> [AttentionChunking; 4] {
        [
            usize::MAX,
            2 * heads * len_q * len_k,
            heads * (len_q / 3) * len_k,
            1,
        ]
        .map(AttentionChunking::new)
    }

    #[test]
    fn chunked_self_attention_equals_the_materialized_formula() {
        let device = Default::default();
        let attn = AttentionConfig::new(16, 2).init_self::<B>(&device);
        let x = random([5, 37, 16]);
        let (q, k, v) = (
            split_heads(project(&attn.to_q, x.clone()), 2),
            split_heads(project(&attn.to_k, x.clone()), 2),
            split_heads(project(&attn.to_v, x.clone()), 2),
        );
        let want = project(
            &attn.to_out[0],
            merge_heads(attention_materialized(q, k, v, None)),
        );
        for chunking in budgets(2, 37, 37) {
            assert_close(attn.forward(x.clone(), chunking), want.clone());
        }
    }

    /// The decoupled processor, written out with materialized attention: CLIP branch plus the
    /// face-masked audio branch, each with its own softmax, then `to_out`.
    fn reference(
        attn: &AudioCrossAttention<B>,
        x: Tensor<B, 3>,
        clip: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        mask: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let h = attn.heads;
        let q = split_heads(project(&attn.to_q, x), h);
        let clip_out = merge_heads(attention_materialized(
            q.clone(),
            split_heads(project(&attn.to_k, clip.clone()), h),
            split_heads(project(&attn.to_v, clip), h),
            None,
        ));
        let audio_out = merge_heads(attention_materialized(
            q,
            split_heads(project(&attn.processor.to_k_ip[0], audio.clone()), h),
            split_heads(project(&attn.processor.to_v_ip[0], audio), h),
            None,
        ));
        project(&attn.to_out[0], clip_out + audio_out * mask)
    }

    #[test]
    fn chunked_cross_attention_equals_the_materialized_processor() {
        let device = Default::default();
        let attn = AttentionConfig::new(16, 2)
            .with_cross_attention_dim(Some(12))
            .init_cross::<B>(&device);
        let x = random([4, 30, 16]);
        let audio = random([4, 7, 12]);
        let mask = random([1, 30, 1]);
        // One CLIP token (the shortcut: softmax over one key is 1) and several.
        for clip_tokens in [1, 3] {
            let clip = random([4, clip_tokens, 12]);
            let want = reference(&attn, x.clone(), clip.clone(), audio.clone(), mask.clone());
            for chunking in budgets(2, 30, 7) {
                let got = attn.forward(
                    x.clone(),
                    clip.clone(),
                    audio.clone(),
                    Some(mask.clone()),
                    chunking,
                );
                assert_close(got, want.clone());
            }
        }
    }

    /// Every attention call of the full-size UNet at 512x512 (latents 64x64, B = 3 CFG
    /// branches x 25 frames, 64 channels per head, 32 audio tokens). The bound: one chunk holds
    /// at most `max(max_scores, heads * len_k)` scores (at least one query row per head is
    /// computed), whatever the number of query tokens; materialised, the spatial
    /// self-attention at 64x64 alone would hold 75 * 5 * 4096^2 = 6.3e9 scores (12.6 GB in f16).
    #[test]
    fn peak_scores_grow_with_the_chunk_not_with_tokens_squared() {
        let chunking = AttentionChunking::default();
        let (b, f, audio_tokens) = (3, 25, 32);
        let mut calls = Vec::new();
        for (side, heads) in [(64, 5), (32, 10), (16, 20), (8, 20)] {
            let hw = side * side;
            calls.push((b * f, heads, hw, hw)); // spatial attn1
            calls.push((b * f, heads, hw, audio_tokens)); // spatial attn2, audio branch
            calls.push((b * hw, heads, f, f)); // temporal attn1
            calls.push((b, heads, hw * f, audio_tokens)); // temporal attn2, audio branch
        }
        for (batch, heads, len_q, len_k) in calls {
            let peak = chunking.chunk_scores(batch, heads, len_q, len_k);
            assert!(
                peak <= chunking.max_scores.max(heads * len_k),
                "{batch}x{heads}x{len_q}x{len_k}: {peak} scores in one chunk"
            );
        }
        assert!(75 * 5 * 4096 * 4096 > 90 * chunking.max_scores);

        // Quadrupling the tokens of a self-attention leaves the chunk where it is.
        let small = AttentionChunking::new(1 << 16);
        for tokens in [256, 1024, 4096, 16384] {
            let peak = small.chunk_scores(1, 5, tokens, tokens);
            assert!(peak <= (1 << 16).max(5 * tokens), "{tokens}: {peak}");
        }
    }
}
