//! Resolution changes between the levels of a UNet or VAE (diffusers 0.29
//! `models/downsampling.py` `Downsample2D` and `models/upsampling.py` `Upsample2D`, both with
//! `use_conv=True`).
//!
//! The parent block holds them as `downsamplers: Vec<Downsample2D>` / `upsamplers:
//! Vec<Upsample2D>` (one element, or none on the last level), which gives the checkpoint keys
//! `downsamplers.0.conv.*` and `upsamplers.0.conv.*`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::conv::conv2d_forward;

/// Where [`Downsample2D`] pads before its stride-2 convolution.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum DownsamplePadding {
    /// One pixel on every side (diffusers `padding=1`: the UNet).
    Symmetric,
    /// One pixel on the right and bottom only, no convolution padding (diffusers `padding=0`,
    /// which pads `(0, 1, 0, 1)` with zeros first: the VAE encoder).
    BottomRight,
}

/// Configuration of [`Downsample2D`].
#[derive(Config, Debug, PartialEq)]
pub struct Downsample2DConfig {
    /// Input channels.
    pub channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Padding scheme.
    #[config(default = "DownsamplePadding::Symmetric")]
    pub padding: DownsamplePadding,
}

impl Downsample2DConfig {
    /// Builds the layer (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Downsample2D<B> {
        // burn's explicit padding is (top, left, bottom, right).
        let padding = match self.padding {
            DownsamplePadding::Symmetric => PaddingConfig2d::Explicit(1, 1, 1, 1),
            DownsamplePadding::BottomRight => PaddingConfig2d::Explicit(0, 0, 1, 1),
        };
        Downsample2D {
            conv: Conv2dConfig::new([self.channels, self.out_channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(padding)
                .init(device),
        }
    }
}

/// Halves the resolution with a 3x3 stride-2 convolution.
#[derive(Module, Debug)]
pub struct Downsample2D<B: Backend> {
    /// The strided convolution.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample2D<B> {
    /// Applies the layer.
    ///
    /// # Shapes
    /// - `x`: `[n, channels, h, w]`
    /// - returns `[n, out_channels, ceil(h / 2), ceil(w / 2)]` with symmetric padding,
    ///   `[n, out_channels, floor(h / 2), floor(w / 2)]` with bottom-right padding (the same
    ///   for even sizes)
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv2d_forward(&self.conv, x)
    }
}

/// Configuration of [`Upsample2D`].
#[derive(Config, Debug, PartialEq)]
pub struct Upsample2DConfig {
    /// Input channels.
    pub channels: usize,
    /// Output channels.
    pub out_channels: usize,
}

impl Upsample2DConfig {
    /// Builds the layer (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Upsample2D<B> {
        Upsample2D {
            conv: Conv2dConfig::new([self.channels, self.out_channels], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
        }
    }
}

/// Doubles the resolution (nearest neighbour), then a 3x3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D<B: Backend> {
    /// The convolution after the resize.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample2D<B> {
    /// Applies the layer. `output_size` replaces the doubling by an explicit size, as the UNet
    /// does when its input is not a multiple of its total downsampling; nearest neighbour then
    /// takes source pixel `floor(i * in / out)`, as PyTorch's `mode="nearest"`.
    ///
    /// # Shapes
    /// - `x`: `[n, channels, h, w]`
    /// - returns `[n, out_channels, 2h, 2w]` (or `output_size`)
    pub fn forward(&self, x: Tensor<B, 4>, output_size: Option<[usize; 2]>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let size = output_size.unwrap_or([2 * h, 2 * w]);
        let x = interpolate(x, size, InterpolateOptions::new(InterpolateMode::Nearest));
        conv2d_forward(&self.conv, x)
    }
}
