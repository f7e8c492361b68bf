//! Group normalisation as PyTorch computes it, for every tensor rank and float dtype.
//!
//! burn's [`GroupNorm`] module holds the parameters (keys `weight`/`bias` after the loader's
//! renaming); [`group_norm`] applies them. It differs from `GroupNorm::forward` only for
//! half-precision inputs: the statistics are computed in f32 (PyTorch accumulates GroupNorm
//! in f32 for f16/bf16 too), so a group of a few million elements neither overflows nor loses
//! the mean. For f32 inputs the two are the same computation.

use burn::nn::GroupNorm;
use burn::prelude::Backend;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Tensor};

/// `group_norm_silu(norm, x)`, the resnet pattern, in one kernel on the CPU backend
/// (`nn::cpu::norm`, feature `flex`); burn's ops elsewhere.
///
/// # Shapes
/// - `x`: `[batch, channels, ...]` (rank 3 or more)
/// - returns the shape of `x`
///
/// # Panics
/// As [`group_norm`].
pub fn group_norm_silu<B: Backend, const D: usize>(
    norm: &GroupNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    if let Some(y) = cpu_group_norm(norm, &x, true) {
        return y;
    }
    silu(group_norm(norm, x))
}

/// The fused CPU kernel, or `None` where it does not apply (another backend, dtype or layout).
#[cfg(feature = "flex")]
fn cpu_group_norm<B: Backend, const D: usize>(
    norm: &GroupNorm<B>,
    x: &Tensor<B, D>,
    silu: bool,
) -> Option<Tensor<B, D>> {
    use super::cpu::{from_flex, norm as kernel, to_flex};
    let dims = x.dims();
    if D < 3
        || dims[1] != norm.num_channels
        || norm.num_groups == 0
        || !dims[1].is_multiple_of(norm.num_groups)
    {
        return None;
    }
    let xf = to_flex(x.clone()).ok()?;
    let affine = match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => Some((to_flex(gamma.val()).ok()?, to_flex(beta.val()).ok()?)),
        (None, None) => None,
        _ => return None,
    };
    let args = kernel::GroupNormArgs {
        batch: dims[0],
        channels: dims[1],
        spatial: dims[2..].iter().product(),
        groups: norm.num_groups,
        epsilon: norm.epsilon as f32,
        affine: affine.as_ref().map(|(g, b)| (g.values(), b.values())),
        silu,
    };
    Some(from_flex(kernel::group_norm(xf.values(), &args), dims))
}

/// Normalises `x` over `(channels / groups, rest...)` per batch entry and group, then applies
/// the per-channel affine parameters of `norm`.
///
/// The variance is the biased (population) variance, as in `torch.nn.GroupNorm`; it is
/// computed in two passes (mean first) for accuracy.
///
/// # Shapes
/// - `x`: `[batch, channels, ...]` (any rank from 3 up; the temporal blocks pass
///   `[b, c, f, h, w]`, which groups over `(c / groups, f, h, w)` jointly)
/// - returns the shape of `x`
///
/// # Panics
/// If `x` has fewer than 3 dimensions or its channel count is not `norm.num_channels`
/// (programming errors: the model builds its norms from its own channel counts).
pub fn group_norm<B: Backend, const D: usize>(
    norm: &GroupNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    assert!(
        D >= 3,
        "group_norm needs [batch, channels, ...], got rank {D}"
    );
    let shape = x.shape();
    let dims = x.dims();
    let (batch, channels) = (dims[0], dims[1]);
    assert_eq!(
        channels, norm.num_channels,
        "group_norm: input has {channels} channels, the norm {}",
        norm.num_channels
    );
    #[cfg(feature = "flex")]
    if let Some(y) = cpu_group_norm(norm, &x, false) {
        return y;
    }
    let groups = norm.num_groups;
    let group_len = dims[1..].iter().product::<usize>() / groups;
    let dtype = x.dtype();

    let x = x.cast(DType::F32).reshape([batch, groups, group_len]);
    let mean = x.clone().mean_dim(2); // [b, g, 1]
    let centered = x.sub(mean);
    let var = centered.clone().square().mean_dim(2); // [b, g, 1]
    let rstd = var.add_scalar(norm.epsilon).sqrt().recip(); // [b, g, 1]

    // Fold rstd and the affine parameters into one scale and shift per (batch, channel), so
    // the full-size work is `centered * scale + shift` with per-row operands (the broadcast
    // shape CPU kernels vectorise).
    let per_group = channels / groups;
    let rstd = rstd
        .expand([batch, groups, per_group])
        .reshape([batch, channels, 1]);
    let (scale, shift) = match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => {
            let gamma = gamma.val().cast(DType::F32).reshape([1, channels, 1]);
            let beta = beta.val().cast(DType::F32).reshape([1, channels, 1]);
            let zeros = Tensor::zeros([batch, channels, 1], (&rstd.device(), DType::F32));
            (rstd.mul(gamma), Some(zeros.add(beta)))
        }
        _ => (rstd, None),
    };
    let spatial = group_len / per_group;
    let out = centered.reshape([batch, channels, spatial]).mul(scale);
    let out = match shift {
        Some(shift) => out.add(shift),
        None => out,
    };
    let out = out.reshape(shape);
    out.cast(dtype)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::*;

    type B = Flex;

    #[test]
    fn matches_burn_group_norm_in_f32() {
        let device = Default::default();
        let norm = GroupNormConfig::new(4, 8)
            .with_epsilon(1e-6)
            .init::<B>(&device);
        let x = Tensor::<B, 4>::random([2, 8, 3, 5], Distribution::Normal(0.5, 2.0), &device);
        let ours = group_norm(&norm, x.clone());
        let burns = norm.forward(x);
        ours.into_data()
            .assert_approx_eq::<f32>(&burns.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn groups_span_every_trailing_dimension() {
        // One group of 2 channels x 2 frames: the statistics are over all 4 values.
        let device = Default::default();
        let norm = GroupNormConfig::new(1, 2)
            .with_epsilon(0.0)
            .init::<B>(&device);
        let x = Tensor::<B, 5>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [1, 2, 2, 1, 1]),
            &device,
        );
        let y = group_norm(&norm, x).into_data().into_vec::<f32>().unwrap();
        // mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5
        let s = 3.5f32.sqrt();
        let expected = [-2.0 / s, -1.0 / s, 0.0, 3.0 / s];
        for (got, want) in y.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{y:?} vs {expected:?}");
        }
    }

    #[test]
    fn half_precision_keeps_its_dtype_and_large_groups_stay_finite() {
        let device = Default::default();
        let norm = GroupNormConfig::new(1, 1).init::<B>(&device);
        // 2^17 values of 300: sum of squares overflows f16 if accumulated in it.
        let x = Tensor::<B, 3>::full([1, 1, 1 << 17], 300.0, (&device, DType::F16));
        let x = x.slice_assign(
            [0..1, 0..1, 0..1],
            Tensor::full([1, 1, 1], 310.0, (&device, DType::F16)),
        );
        let y = group_norm(&norm, x);
        assert_eq!(y.dtype(), DType::F16);
        let values = y.cast(DType::F32).into_data().into_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "non-finite output");
        assert!(
            values[0] > 100.0,
            "outlier should stand out, got {}",
            values[0]
        );
    }
}
