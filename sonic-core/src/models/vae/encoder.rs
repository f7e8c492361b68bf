//! The image encoder of the SVD VAE (diffusers `Encoder` in `models/autoencoders/vae.py`,
//! `double_z=True`): `conv_in`, one `DownEncoderBlock2D` per level, `UNetMidBlock2D` with
//! attention, `conv_norm_out`, SiLU, `conv_out` to the mean and log-variance channels.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::AutoencoderKLTemporalDecoderConfig;
use super::attention::{SpatialSelfAttention, SpatialSelfAttentionConfig};
use crate::nn::conv::conv2d_forward;
use crate::nn::norm::group_norm_silu;
use crate::nn::resample::{Downsample2D, Downsample2DConfig, DownsamplePadding};
use crate::nn::resnet::{ResnetBlock2D, ResnetBlock2DConfig};

/// GroupNorm epsilon of every encoder norm (diffusers passes `resnet_eps=1e-6`).
const EPS: f64 = 1e-6;

pub(super) fn conv3x3<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// One encoder level: `layers_per_block` resnets, then a stride-2 downsample with
/// bottom-right padding on every level but the last.
#[derive(Module, Debug)]
pub struct DownEncoderBlock2D<B: Backend> {
    /// Residual blocks (the first changes the channel count).
    pub resnets: Vec<ResnetBlock2D<B>>,
    /// The downsample (empty on the last level).
    pub downsamplers: Vec<Downsample2D<B>>,
}

impl<B: Backend> DownEncoderBlock2D<B> {
    fn new(
        in_channels: usize,
        out_channels: usize,
        layers: usize,
        downsample: bool,
        device: &B::Device,
    ) -> Self {
        let resnets = (0..layers)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { out_channels };
                ResnetBlock2DConfig::new(cin, out_channels)
                    .with_eps(EPS)
                    .init(device)
            })
            .collect();
        let downsamplers = downsample
            .then(|| {
                Downsample2DConfig::new(out_channels, out_channels)
                    .with_padding(DownsamplePadding::BottomRight)
                    .init(device)
            })
            .into_iter()
            .collect();
        Self {
            resnets,
            downsamplers,
        }
    }

    /// # Shapes
    /// - `x`: `[n, in_channels, h, w]`
    /// - returns `[n, out_channels, h / 2, w / 2]` (`h`, `w` on the last level)
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.resnets.iter().fold(x, |x, r| r.forward(x, None));
        self.downsamplers.iter().fold(x, |x, d| d.forward(x))
    }
}

/// The encoder's middle: resnet, then (attention, resnet) pairs (diffusers `UNetMidBlock2D`,
/// one layer, no time embedding).
#[derive(Module, Debug)]
pub struct UNetMidBlock2D<B: Backend> {
    /// Self-attentions, one per layer.
    pub attentions: Vec<SpatialSelfAttention<B>>,
    /// Residual blocks, one more than attentions.
    pub resnets: Vec<ResnetBlock2D<B>>,
}

impl<B: Backend> UNetMidBlock2D<B> {
    fn new(channels: usize, device: &B::Device) -> Self {
        let resnet = || {
            ResnetBlock2DConfig::new(channels, channels)
                .with_eps(EPS)
                .init(device)
        };
        Self {
            attentions: vec![SpatialSelfAttentionConfig::new(channels, channels).init(device)],
            resnets: vec![resnet(), resnet()],
        }
    }

    /// # Shapes
    /// - `x`: `[n, c, h, w]`
    /// - returns `[n, c, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.resnets[0].forward(x, None);
        self.attentions
            .iter()
            .zip(&self.resnets[1..])
            .fold(x, |x, (attn, resnet)| resnet.forward(attn.forward(x), None))
    }
}

/// The VAE encoder up to (not including) `quant_conv`.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// `in_channels` -> `block_out_channels[0]`, 3x3.
    pub conv_in: Conv2d<B>,
    /// One block per level.
    pub down_blocks: Vec<DownEncoderBlock2D<B>>,
    /// The middle block at the lowest resolution.
    pub mid_block: UNetMidBlock2D<B>,
    /// Final GroupNorm (eps 1e-6).
    pub conv_norm_out: GroupNorm<B>,
    /// `block_out_channels[-1]` -> `2 * latent_channels`, 3x3.
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> Encoder<B> {
    pub(super) fn new(config: &AutoencoderKLTemporalDecoderConfig, device: &B::Device) -> Self {
        let channels = &config.block_out_channels;
        let last = channels[channels.len() - 1];
        let down_blocks = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let cin = if i == 0 { channels[0] } else { channels[i - 1] };
                let is_final = i + 1 == channels.len();
                DownEncoderBlock2D::new(cin, out, config.layers_per_block, !is_final, device)
            })
            .collect();
        Self {
            conv_in: conv3x3(config.in_channels, channels[0], device),
            down_blocks,
            mid_block: UNetMidBlock2D::new(last, device),
            conv_norm_out: GroupNormConfig::new(32, last)
                .with_epsilon(EPS)
                .init(device),
            conv_out: conv3x3(last, 2 * config.latent_channels, device),
        }
    }

    /// The moments (mean and log-variance channels, before `quant_conv`).
    ///
    /// # Shapes
    /// - `x`: `[n, in_channels, h, w]`
    /// - returns `[n, 2 * latent_channels, h / 2^(levels-1), w / 2^(levels-1)]` (floored per
    ///   level)
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = conv2d_forward(&self.conv_in, x);
        let x = self.down_blocks.iter().fold(x, |x, b| b.forward(x));
        let x = self.mid_block.forward(x);
        conv2d_forward(&self.conv_out, group_norm_silu(&self.conv_norm_out, x))
    }
}
