//! `softmax(q kᵀ · scale) v` without a mask, per (batch, head) group and block of query rows:
//! one `gemm` for the block's scores against every key, a vectorised softmax of those rows
//! while they are in cache ([`super::vector::softmax_rows`]), one `gemm` against the values.
//!
//! burn-flex's attention runs the same two products, but its softmax between them is a scalar
//! loop that calls libm's `expf` per score and checks the (absent) mask, bias, causal offset
//! and softcap per element: on Whisper's 1500-token layers that loop was ~40% of the encoder's
//! time (docs/performance.md, "Attention").

use super::SharedMut;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Score budget per task, in floats: a block of query rows against all keys stays in L2.
const BLOCK_SCORES: usize = 128 * 1024;

/// The shapes of one attention call: `groups` (batch x heads) independent problems.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub groups: usize,
    pub len_q: usize,
    pub len_k: usize,
    pub head_dim: usize,
    pub v_dim: usize,
}

/// `softmax(q kᵀ · scale) v` for row-major `q` `[groups, len_q, head_dim]`, `k`
/// `[groups, len_k, head_dim]` and `v` `[groups, len_k, v_dim]`; row-major
/// `[groups, len_q, v_dim]`.
///
/// # Panics
/// If a slice's length does not match `h`, or `len_k` is 0.
pub(crate) fn attention(q: &[f32], k: &[f32], v: &[f32], h: Heads, scale: f32) -> Vec<f32> {
    let Heads {
        groups,
        len_q,
        len_k,
        head_dim,
        v_dim,
    } = h;
    assert_eq!(
        q.len(),
        groups * len_q * head_dim,
        "q is [groups, len_q, head_dim]"
    );
    assert_eq!(
        k.len(),
        groups * len_k * head_dim,
        "k is [groups, len_k, head_dim]"
    );
    assert_eq!(
        v.len(),
        groups * len_k * v_dim,
        "v is [groups, len_k, v_dim]"
    );
    assert!(len_k > 0, "attention over no keys");
    let mut out = vec![0f32; groups * len_q * v_dim];
    if out.is_empty() {
        return out;
    }
    let rows = (BLOCK_SCORES / len_k).clamp(8, 256).min(len_q);
    let blocks = len_q.div_ceil(rows);
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..groups * blocks)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            let (g, r0) = (task / blocks, task % blocks * rows);
            let nr = rows.min(len_q - r0);
            scores.resize(nr * len_k, 0.0);
            // SAFETY: the pointers address group `g`'s rows `r0..r0 + nr` of q and of the output
            // (disjoint between tasks) and all of its keys and values, with the strides gemm is
            // given; `scores` holds `nr * len_k` floats.
            unsafe {
                let (qg, kg, vg) = (
                    q.as_ptr().add((g * len_q + r0) * head_dim),
                    k.as_ptr().add(g * len_k * head_dim),
                    v.as_ptr().add(g * len_k * v_dim),
                );
                // scores[nr, len_k] = scale * q_block · kᵀ (kᵀ read through its strides).
                gemm(
                    nr,
                    len_k,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    len_k as isize,
                    false,
                    qg,
                    1,
                    head_dim as isize,
                    kg,
                    head_dim as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                super::vector::softmax_rows(scores, len_k);
                let dst = out_ptr.get().add((g * len_q + r0) * v_dim);
                gemm(
                    nr,
                    v_dim,
                    len_k,
                    dst,
                    1,
                    v_dim as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    len_k as isize,
                    vg,
                    1,
                    v_dim as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        crate::nn::cpu::test_values(len, seed, 2.0)
    }

    /// The definition, in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], h: Heads, scale: f32) -> Vec<f32> {
        let mut out = vec![0f32; h.groups * h.len_q * h.v_dim];
        for g in 0..h.groups {
            for i in 0..h.len_q {
                let s: Vec<f64> = (0..h.len_k)
                    .map(|j| {
                        (0..h.head_dim)
                            .map(|d| {
                                f64::from(q[(g * h.len_q + i) * h.head_dim + d])
                                    * f64::from(k[(g * h.len_k + j) * h.head_dim + d])
                            })
                            .sum::<f64>()
                            * f64::from(scale)
                    })
                    .collect();
                let max = s.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
                let e: Vec<f64> = s.iter().map(|&x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..h.v_dim {
                    let acc: f64 = (0..h.len_k)
                        .map(|j| e[j] / sum * f64::from(v[(g * h.len_k + j) * h.v_dim + c]))
                        .sum();
                    out[(g * h.len_q + i) * h.v_dim + c] = acc as f32;
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition() {
        // One key; query blocks with a ragged last block (len_k 2000 -> 65 rows per block);
        // cross-attention shapes (len_q != len_k, v_dim != head_dim).
        for h in [
            Heads {
                groups: 3,
                len_q: 5,
                len_k: 1,
                head_dim: 8,
                v_dim: 8,
            },
            Heads {
                groups: 2,
                len_q: 150,
                len_k: 2000,
                head_dim: 16,
                v_dim: 16,
            },
            Heads {
                groups: 4,
                len_q: 77,
                len_k: 9,
                head_dim: 40,
                v_dim: 24,
            },
        ] {
            let q = values(h.groups * h.len_q * h.head_dim, 1);
            let k = values(h.groups * h.len_k * h.head_dim, 2);
            let v = values(h.groups * h.len_k * h.v_dim, 3);
            let scale = 1.0 / (h.head_dim as f32).sqrt();
            let got = attention(&q, &k, &v, h, scale);
            let want = reference(&q, &k, &v, h, scale);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 * (1.0 + w.abs()),
                    "{h:?} [{i}]: {g} vs {w}"
                );
            }
        }
    }
}
