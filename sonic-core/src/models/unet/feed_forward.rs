//! The transformers' GEGLU feed-forward (diffusers `FeedForward(activation_fn="geglu")`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use burn::tensor::module::linear;

use super::on_rows;

/// Configuration of [`FeedForward`].
#[derive(Config, Debug, PartialEq)]
pub struct FeedForwardConfig {
    /// Input width.
    pub dim: usize,
    /// Output width; `None` keeps `dim`.
    #[config(default = "None")]
    pub dim_out: Option<usize>,
    /// Hidden width as a multiple of `dim`.
    #[config(default = 4)]
    pub mult: usize,
}

impl FeedForwardConfig {
    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> FeedForward<B> {
        let inner = self.dim * self.mult;
        FeedForward {
            net: (
                Geglu {
                    proj: LinearConfig::new(self.dim, 2 * inner).init(device),
                },
                DropoutConfig::new(0.0).init(),
                LinearConfig::new(inner, self.dim_out.unwrap_or(self.dim)).init(device),
            ),
        }
    }
}

/// `h · gelu(gate)` where `[h, gate] = proj(x)` split in halves (erf GELU).
#[derive(Module, Debug)]
pub struct Geglu<B: Backend> {
    /// `dim -> 2 · inner`: the value half, then the gate half.
    pub proj: Linear<B>,
}

impl<B: Backend> Geglu<B> {
    /// # Shapes
    /// - `x`: `[..., dim]`
    /// - returns `[..., inner]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // Two products with the halves of the weight rather than one product split afterwards:
        // same arithmetic, but both halves come out dense, so the gating multiply runs on
        // contiguous memory instead of two strided views.
        let weight = self.proj.weight.val(); // [dim, 2 * inner]
        let bias = self.proj.bias.as_ref().map(|b| b.val());
        let inner = weight.dims()[1] / 2;
        let half = |start: usize| {
            on_rows(x.clone(), |rows| {
                // On the CPU backend: the column range of the weight read in place.
                #[cfg(feature = "flex")]
                if let Some(out) =
                    crate::nn::cpu::linear_columns(&rows, &weight, bias.as_ref(), start, inner)
                {
                    return out;
                }
                linear(
                    rows,
                    weight.clone().narrow(1, start, inner),
                    bias.clone().map(|b| b.narrow(0, start, inner)),
                )
            })
        };
        let (value, gate) = (half(0), half(inner));
        #[cfg(feature = "flex")]
        if let Some(out) = crate::nn::cpu::gelu_gate(&value, &gate) {
            return out;
        }
        value * gelu(gate)
    }
}

/// `net.2(net.0(x))`: GEGLU projection up, linear projection down.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    /// PyTorch's `ModuleList[GEGLU, Dropout, Linear]`, kept as a tuple so the keys stay
    /// `net.0.proj` and `net.2` (the dropout is the identity at inference).
    pub net: (Geglu<B>, Dropout, Linear<B>),
}

impl<B: Backend> FeedForward<B> {
    /// # Shapes
    /// - `x`: `[..., dim]`
    /// - returns `[..., dim_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let hidden = self.net.0.forward(x);
        on_rows(hidden, |rows| crate::nn::cpu::linear(&self.net.2, rows))
    }
}
