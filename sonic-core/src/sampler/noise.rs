//! The starting point of sampling: Sonic's `x0 * 0.18215 + sigma_max * noise`, with the noise
//! either injected (to reproduce a reference run) or drawn from a seeded generator.
//!
//! The generator runs on the host (ChaCha8, standard normal), so a seed gives the same video
//! on every backend and device; frame `i`'s noise does not depend on the clip length. Torch's
//! generator is not reproduced: a seed here does not give the reference's noise for that seed.

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::SamplerError;
use super::scheduler::EulerEdmScheduler;

/// Where the initial noise comes from.
#[derive(Debug, Clone)]
pub enum NoiseSource<B: Backend> {
    /// Draw it from [`seeded_noise`] with this seed (any value, 0 included).
    Seed(u64),
    /// Use this tensor, `[1, frames, channels, h, w]` (e.g. a reference run's `latent_noise`).
    Injected(Tensor<B, 5>),
}

/// Standard normal noise of `shape` from a ChaCha8 generator seeded with `seed`, drawn in
/// row-major order on the host and uploaded as `dtype`.
pub fn seeded_noise<B: Backend, const D: usize>(
    seed: u64,
    shape: [usize; D],
    dtype: DType,
    device: &B::Device,
) -> Tensor<B, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let len = shape.iter().product();
    let values: Vec<f32> = (0..len).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_data(
        TensorData::new(values, shape).convert_dtype(dtype),
        (device, dtype),
    )
}

/// Sonic's initial latents: `ref_latents + sigma_max * noise` for every frame.
///
/// `ref_latents` are the VAE mean latents of the portrait already multiplied by 0.18215.
///
/// # Shapes
/// - `ref_latents`: `[1, channels, h, w]`
/// - returns `[1, frames, channels, h, w]`
pub fn initial_latents<B: Backend>(
    scheduler: &EulerEdmScheduler,
    ref_latents: Tensor<B, 4>,
    num_frames: usize,
    noise: NoiseSource<B>,
) -> Result<Tensor<B, 5>, SamplerError> {
    let [b, c, h, w] = ref_latents.dims();
    if b != 1 {
        return Err(SamplerError::Shape {
            what: "ref_latents",
            got: ref_latents.dims().to_vec(),
            expected: "[1, channels, h, w]".into(),
        });
    }
    let shape = [1, num_frames, c, h, w];
    let noise = match noise {
        NoiseSource::Seed(seed) => {
            seeded_noise::<B, 5>(seed, shape, ref_latents.dtype(), &ref_latents.device())
        }
        NoiseSource::Injected(noise) => {
            if noise.dims() != shape {
                return Err(SamplerError::Shape {
                    what: "noise",
                    got: noise.dims().to_vec(),
                    expected: format!("{shape:?}"),
                });
            }
            noise
        }
    };
    Ok(scheduler.add_noise(ref_latents.unsqueeze_dim::<5>(1), noise, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn seeds_are_reproducible_and_distinct() {
        let device = Default::default();
        let a = seeded_noise::<B, 1>(0, [4096], DType::F32, &device).into_data();
        let b = seeded_noise::<B, 1>(0, [4096], DType::F32, &device).into_data();
        let c = seeded_noise::<B, 1>(1, [4096], DType::F32, &device).into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v = a.to_vec::<f32>().unwrap();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.07, "variance {var}");
    }
}
