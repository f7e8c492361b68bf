//! Scaled dot-product attention that never materialises more than a bounded number of scores.
//!
//! At 512x512 the UNet's spatial self-attention has 4096 tokens x 75 sequences x heads: the
//! full score matrix would be 12.6 GB. [`attention`] splits the work over batch entries and
//! query rows so that at most [`AttentionChunking::max_scores`] scores exist at a time, and
//! hands each piece to burn's attention op (flash attention on the CPU and GPU backends that
//! have it).

use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;

/// Bound on the attention scores computed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionChunking {
    /// Largest number of `q·k` scores (elements) one chunk may hold.
    pub max_scores: usize,
}

impl AttentionChunking {
    /// 2^26 scores per chunk: 256 MiB in f32, 128 MiB in f16.
    pub const DEFAULT_MAX_SCORES: usize = 1 << 26;

    /// A bound of `max_scores` elements per chunk (at least one query row is always computed).
    pub const fn new(max_scores: usize) -> Self {
        Self { max_scores }
    }

    /// Number of scores of one chunk for a call of the given shape (the peak the bound holds).
    pub fn chunk_scores(&self, batch: usize, heads: usize, len_q: usize, len_k: usize) -> usize {
        let (b, q) = self.split(batch, heads, len_q, len_k);
        b * heads * q * len_k
    }

    /// (batch entries per chunk, query rows per chunk).
    fn split(&self, batch: usize, heads: usize, len_q: usize, len_k: usize) -> (usize, usize) {
        let per_batch = heads * len_q * len_k;
        if per_batch <= self.max_scores {
            (
                (self.max_scores / per_batch.max(1)).clamp(1, batch.max(1)),
                len_q,
            )
        } else {
            let rows = (self.max_scores / (heads * len_k).max(1)).clamp(1, len_q.max(1));
            (1, rows)
        }
    }
}

impl Default for AttentionChunking {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_SCORES)
    }
}

/// `softmax(q kᵀ · scale) v`, computed in chunks bounded by `chunking`.
///
/// `scale` defaults to `1/sqrt(head_dim)`.
///
/// # Shapes
/// - `q`: `[batch, heads, len_q, head_dim]`
/// - `k`: `[batch, heads, len_k, head_dim]`
/// - `v`: `[batch, heads, len_k, v_dim]`
/// - returns `[batch, heads, len_q, v_dim]`
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: Option<f64>,
    chunking: AttentionChunking,
) -> Tensor<B, 4> {
    // On the CPU backend, sonic's kernel: it holds one block of scores per thread, within
    // any chunking budget.
    if let Some(out) = super::cpu::attention(&q, &k, &v, scale) {
        return out;
    }
    let [batch, heads, len_q, _] = q.dims();
    let len_k = k.dims()[2];
    let options = AttentionModuleOptions {
        scale,
        softcap: None,
        is_causal: false,
    };
    let run = |q, k, v| module::attention(q, k, v, None, None, options);
    let (batch_step, row_step) = chunking.split(batch, heads, len_q, len_k);
    if batch_step >= batch && row_step >= len_q {
        return run(q, k, v);
    }
    let mut outputs = Vec::with_capacity(batch.div_ceil(batch_step));
    for b0 in (0..batch).step_by(batch_step) {
        let nb = batch_step.min(batch - b0);
        let (qb, kb, vb) = (
            q.clone().narrow(0, b0, nb),
            k.clone().narrow(0, b0, nb),
            v.clone().narrow(0, b0, nb),
        );
        if row_step >= len_q {
            outputs.push(run(qb, kb, vb));
            continue;
        }
        let mut rows = Vec::with_capacity(len_q.div_ceil(row_step));
        for r0 in (0..len_q).step_by(row_step) {
            let nr = row_step.min(len_q - r0);
            rows.push(run(qb.clone().narrow(2, r0, nr), kb.clone(), vb.clone()));
        }
        outputs.push(Tensor::cat(rows, 2));
    }
    Tensor::cat(outputs, 0)
}

/// The textbook formula with the full score matrix materialised: the reference that
/// [`attention`] is tested against. Not for production shapes.
///
/// # Shapes
/// As [`attention`].
pub fn attention_materialized<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: Option<f64>,
) -> Tensor<B, 4> {
    let head_dim = q.dims()[3];
    let scale = scale.unwrap_or(1.0 / (head_dim as f64).sqrt());
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale); // [b, h, len_q, len_k]
    softmax(scores, 3).matmul(v)
}

/// Splits `[batch, len, heads * head_dim]` into `[batch, heads, len, head_dim]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [batch, len, width] = x.dims();
    super::cpu::contiguous(
        x.reshape([batch, len, heads, width / heads])
            .swap_dims(1, 2),
    )
}

/// Merges `[batch, heads, len, head_dim]` back into `[batch, len, heads * head_dim]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, len, head_dim] = x.dims();
    super::cpu::contiguous(x.swap_dims(1, 2)).reshape([batch, len, heads * head_dim])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    type B = burn::backend::Flex;

    fn random(shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn chunked_equals_materialized() {
        let (q, k, v) = (
            random([3, 2, 37, 8]),
            random([3, 2, 29, 8]),
            random([3, 2, 29, 5]),
        );
        let expected = attention_materialized(q.clone(), k.clone(), v.clone(), Some(0.3));
        // Bounds that force: whole call, batch chunks, row chunks, and single rows.
        for max_scores in [usize::MAX, 2 * 37 * 29, 2 * 10 * 29, 1] {
            let got = attention(
                q.clone(),
                k.clone(),
                v.clone(),
                Some(0.3),
                AttentionChunking::new(max_scores),
            );
            got.into_data()
                .assert_approx_eq::<f32>(&expected.clone().into_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn chunk_size_is_bounded_by_the_budget_not_by_tokens_squared() {
        let chunking = AttentionChunking::new(1 << 20);
        // 512x512 spatial self-attention of the SVD UNet: 75 sequences, 5 heads, 4096 tokens.
        let peak = chunking.chunk_scores(75, 5, 4096, 4096);
        assert!(peak <= 1 << 20, "chunk holds {peak} scores");
        assert!(75 * 5 * 4096 * 4096 > 6000 * peak);
        // Small calls are not split.
        assert_eq!(chunking.chunk_scores(2, 2, 16, 16), 2 * 2 * 16 * 16);
    }
}
