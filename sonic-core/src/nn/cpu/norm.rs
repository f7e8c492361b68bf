//! GroupNorm, its affine parameters and an optional SiLU in one kernel.
//!
//! Per (batch entry, group) — a contiguous run of `channels / groups` channel planes — one
//! pass for the mean, one for the (biased, two-pass) variance, and one that writes
//! `x * scale + shift` per channel, through SiLU when asked: three passes over data that
//! usually stays in L2, against about eight full-tensor passes and allocations for the
//! composed burn ops. The sums are accumulated in f32 lanes per block and in f64 across
//! blocks ([`super::vector::sum`]).

use rayon::prelude::*;

use super::vector::{self, dispatch};

/// The shape and parameters of one GroupNorm.
pub(crate) struct GroupNormArgs<'a> {
    pub batch: usize,
    pub channels: usize,
    /// Elements per channel plane (the product of the dimensions after the channels).
    pub spatial: usize,
    pub groups: usize,
    pub epsilon: f32,
    /// Per-channel scale and shift (`None`: 1 and 0).
    pub affine: Option<(&'a [f32], &'a [f32])>,
    /// Apply SiLU to the result.
    pub silu: bool,
}

/// `silu?(group_norm(x))` for `x` laid out `[batch, channels, spatial]`, same layout out.
///
/// # Panics
/// If the lengths do not match the arguments, or `channels` is not a multiple of `groups`.
pub(crate) fn group_norm(x: &[f32], args: &GroupNormArgs<'_>) -> Vec<f32> {
    let GroupNormArgs {
        batch,
        channels,
        spatial,
        groups,
        affine,
        ..
    } = *args;
    assert!(
        groups > 0 && channels % groups == 0,
        "group_norm: {channels} channels, {groups} groups"
    );
    assert_eq!(
        x.len(),
        batch * channels * spatial,
        "group_norm input length"
    );
    if let Some((gamma, beta)) = affine {
        assert_eq!(
            (gamma.len(), beta.len()),
            (channels, channels),
            "group_norm affine length"
        );
    }
    let per_group = channels / groups;
    let group_len = per_group * spatial;
    let mut out = vec![0f32; x.len()];
    if group_len == 0 {
        return out;
    }
    out.par_chunks_mut(group_len)
        .zip(x.par_chunks(group_len))
        .enumerate()
        .for_each(|(task, (dst, src))| {
            let first_channel = (task % groups) * per_group;
            normalize_group(src, dst, first_channel, args);
        });
    out
}

fn normalize_group(src: &[f32], dst: &mut [f32], first_channel: usize, args: &GroupNormArgs<'_>) {
    dispatch!(
        |src: &[f32], dst: &mut [f32], first_channel: usize, args: &GroupNormArgs<'_>| {
            normalize_group_body(src, dst, first_channel, args)
        }
    )
}

#[inline(always)]
fn normalize_group_body(
    src: &[f32],
    dst: &mut [f32],
    first_channel: usize,
    args: &GroupNormArgs<'_>,
) {
    let GroupNormArgs {
        spatial,
        epsilon,
        affine,
        silu,
        ..
    } = *args;
    let len = src.len() as f64;
    let mean = (vector::sum(src) / len) as f32;
    let var = (vector::sum_sq_dev(src, mean) / len) as f32;
    let rstd = 1.0 / (var + epsilon).sqrt();
    for (c, (d, s)) in dst
        .chunks_exact_mut(spatial)
        .zip(src.chunks_exact(spatial))
        .enumerate()
    {
        let (gamma, beta) = affine.map_or((1.0, 0.0), |(g, b)| {
            (g[first_channel + c], b[first_channel + c])
        });
        let scale = rstd * gamma;
        let shift = beta - mean * scale;
        if silu {
            for (d, &s) in d.iter_mut().zip(s) {
                *d = vector::silu(s * scale + shift);
            }
        } else {
            for (d, &s) in d.iter_mut().zip(s) {
                *d = s * scale + shift;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_two_pass_definition_with_and_without_silu() {
        let (batch, channels, spatial, groups) = (2, 12, 37, 4);
        let x: Vec<f32> = (0..batch * channels * spatial)
            .map(|i| ((i * 7919 % 1013) as f32) * 0.01 - 4.0 + (i / 500) as f32)
            .collect();
        let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..channels).map(|c| c as f32 * -0.2).collect();
        for silu in [false, true] {
            for affine in [None, Some((&gamma[..], &beta[..]))] {
                let args = GroupNormArgs {
                    batch,
                    channels,
                    spatial,
                    groups,
                    epsilon: 1e-6,
                    affine,
                    silu,
                };
                let got = group_norm(&x, &args);
                let per = channels / groups;
                for b in 0..batch {
                    for g in 0..groups {
                        let start = (b * channels + g * per) * spatial;
                        let group = &x[start..start + per * spatial];
                        let n = group.len() as f64;
                        let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                        let var = group
                            .iter()
                            .map(|&v| (f64::from(v) - mean).powi(2))
                            .sum::<f64>()
                            / n;
                        for (i, &v) in group.iter().enumerate() {
                            let c = g * per + i / spatial;
                            let (ga, be) = affine.map_or((1.0, 0.0), |(ga, be)| {
                                (f64::from(ga[c]), f64::from(be[c]))
                            });
                            let mut want = (f64::from(v) - mean) / (var + 1e-6).sqrt() * ga + be;
                            if silu {
                                want /= 1.0 + (-want).exp();
                            }
                            let have = f64::from(got[start + i]);
                            assert!(
                                (have - want).abs() < 2e-5 * (1.0 + want.abs()),
                                "{silu} {b} {g} {i}: {have} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
