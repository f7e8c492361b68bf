//! Sinusoidal timestep embeddings and the MLP that projects them (diffusers `Timesteps` and
//! `TimestepEmbedding`, D:models/embeddings.py).
//!
//! The SVD-xt UNet embeds three kinds of "time" this way, all with cosines first and no
//! frequency shift (`Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`): the
//! noise level `c_noise`, the added time ids (fps, motion buckets) and the frame index inside
//! the temporal transformers.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Tensor, TensorData};

/// Sinusoidal embedding of (possibly fractional) timesteps, cosines first.
///
/// `emb[i] = [cos(t_i·f_0) … cos(t_i·f_{h-1}), sin(t_i·f_0) … sin(t_i·f_{h-1})]` with
/// `h = dim / 2` and `f_k = exp(-ln(10000)·k / h)`; an odd `dim` gets a trailing zero column.
/// As in the reference, the frequencies and the products are computed in f32 whatever the
/// model's dtype, and only the result is converted to `dtype`.
///
/// # Shapes
/// - `timesteps`: `[n]`
/// - returns `[n, dim]`
pub fn timestep_embedding<B: Backend>(
    timesteps: Tensor<B, 1>,
    dim: usize,
    dtype: DType,
) -> Tensor<B, 2> {
    let half = dim / 2;
    let device = timesteps.device();
    let [n] = timesteps.dims();
    // f32 throughout, in the reference's operation order: (-ln(10000) * k) / half, then exp.
    let log_period = -(10000f64.ln() as f32);
    let freqs: Vec<f32> = (0..half)
        .map(|k| ((log_period * k as f32) / half as f32).exp())
        .collect();
    let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), (&device, DType::F32));
    let args = timesteps.cast(DType::F32).reshape([n, 1]) * freqs.reshape([1, half]); // [n, half]
    let mut parts = vec![args.clone().cos(), args.sin()];
    if dim % 2 == 1 {
        parts.push(Tensor::zeros([n, 1], (&device, DType::F32)));
    }
    Tensor::cat(parts, 1).cast(dtype)
}

/// Configuration of [`TimestepEmbedding`].
#[derive(Config, Debug, PartialEq)]
pub struct TimestepEmbeddingConfig {
    /// Width of the sinusoidal (or concatenated) input.
    pub in_channels: usize,
    /// Width of the hidden layer (and of the output unless `out_dim` is set).
    pub time_embed_dim: usize,
    /// Output width; `None` keeps `time_embed_dim`.
    #[config(default = "None")]
    pub out_dim: Option<usize>,
}

impl TimestepEmbeddingConfig {
    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TimestepEmbedding<B> {
        let out = self.out_dim.unwrap_or(self.time_embed_dim);
        TimestepEmbedding {
            linear_1: LinearConfig::new(self.in_channels, self.time_embed_dim).init(device),
            linear_2: LinearConfig::new(self.time_embed_dim, out).init(device),
        }
    }
}

/// `linear_2(silu(linear_1(x)))`: the MLP applied to sinusoidal embeddings.
#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    /// Input -> hidden.
    pub linear_1: Linear<B>,
    /// Hidden -> output.
    pub linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    /// Projects embeddings.
    ///
    /// # Shapes
    /// - `x`: `[..., in_channels]`
    /// - returns `[..., out_dim]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn sinusoids_put_cosines_first_without_shift() {
        let device = Default::default();
        let t = Tensor::<B, 1>::from_floats([0.0, 2.5], &device);
        let emb = timestep_embedding(t, 6, DType::F32)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        // h = 3: f = [1, 10000^(-1/3), 10000^(-2/3)].
        let f = [1.0f64, 10000f64.powf(-1.0 / 3.0), 10000f64.powf(-2.0 / 3.0)];
        let mut expected = vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        expected.extend(f.iter().map(|f| (2.5 * f).cos()));
        expected.extend(f.iter().map(|f| (2.5 * f).sin()));
        for (got, want) in emb.iter().zip(&expected) {
            assert!((*got as f64 - want).abs() < 1e-6, "{emb:?} vs {expected:?}");
        }
    }

    #[test]
    fn odd_width_is_zero_padded_and_dtype_follows_the_request() {
        let device = Default::default();
        let t = Tensor::<B, 1>::from_floats([3.0], &device);
        let emb = timestep_embedding(t, 5, DType::F16);
        assert_eq!(emb.dtype(), DType::F16);
        assert_eq!(emb.dims(), [1, 5]);
        let last = emb.cast(DType::F32).into_data().into_vec::<f32>().unwrap()[4];
        assert_eq!(last, 0.0);
    }
}
