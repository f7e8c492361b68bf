//! SVD's temporal decoder (diffusers `TemporalDecoder` in
//! `models/autoencoders/autoencoder_kl_temporal_decoder.py`, blocks from
//! `models/unets/unet_3d_blocks.py`): per-frame 2-D layers interleaved with temporal residual
//! blocks that mix each pixel across the frames of one clip, and a final temporal convolution.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv3d, Conv3dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig3d};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::AutoencoderKLTemporalDecoderConfig;
use super::attention::{SpatialSelfAttention, SpatialSelfAttentionConfig};
use super::encoder::conv3x3;
use crate::nn::conv::conv2d_forward;
use crate::nn::norm::group_norm_silu;
use crate::nn::resample::{Upsample2D, Upsample2DConfig};
use crate::nn::resnet::{
    SpatioTemporalResBlock, SpatioTemporalResBlockConfig, clips_to_frames, frames_to_clips,
    temporal_conv,
};

/// The decoder's middle: spatio-temporal resnet, then (attention, resnet) pairs (diffusers
/// `MidBlockTemporalDecoder`).
#[derive(Module, Debug)]
pub struct MidBlockTemporalDecoder<B: Backend> {
    /// Per-frame self-attention (one, between the first two resnets).
    pub attentions: Vec<SpatialSelfAttention<B>>,
    /// Spatio-temporal residual blocks (`layers_per_block` of them).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
}

impl<B: Backend> MidBlockTemporalDecoder<B> {
    fn new(channels: usize, layers: usize, device: &B::Device) -> Self {
        Self {
            attentions: vec![SpatialSelfAttentionConfig::new(channels, channels).init(device)],
            resnets: (0..layers)
                .map(|_| SpatioTemporalResBlockConfig::vae_decoder(channels, channels).init(device))
                .collect(),
        }
    }

    /// # Shapes
    /// - `x`: `[b * num_frames, c, h, w]`
    /// - returns `[b * num_frames, c, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, num_frames: usize) -> Tensor<B, 4> {
        let x = self.resnets[0].forward(x, None, num_frames);
        // zip stops at the shorter list, as the reference's `zip(resnets[1:], attentions)`.
        self.resnets[1..]
            .iter()
            .zip(&self.attentions)
            .fold(x, |x, (resnet, attn)| {
                resnet.forward(attn.forward(x), None, num_frames)
            })
    }
}

/// One decoder level: `layers_per_block + 1` spatio-temporal resnets, then a nearest x2
/// upsample on every level but the last (diffusers `UpBlockTemporalDecoder`).
#[derive(Module, Debug)]
pub struct UpBlockTemporalDecoder<B: Backend> {
    /// Spatio-temporal residual blocks (the first changes the channel count).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
    /// The upsample (empty on the last level).
    pub upsamplers: Vec<Upsample2D<B>>,
}

impl<B: Backend> UpBlockTemporalDecoder<B> {
    fn new(
        in_channels: usize,
        out_channels: usize,
        layers: usize,
        upsample: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| {
                    let cin = if i == 0 { in_channels } else { out_channels };
                    SpatioTemporalResBlockConfig::vae_decoder(cin, out_channels).init(device)
                })
                .collect(),
            upsamplers: upsample
                .then(|| Upsample2DConfig::new(out_channels, out_channels).init(device))
                .into_iter()
                .collect(),
        }
    }

    /// # Shapes
    /// - `x`: `[b * num_frames, in_channels, h, w]`
    /// - returns `[b * num_frames, out_channels, 2h, 2w]` (`h`, `w` on the last level)
    pub fn forward(&self, x: Tensor<B, 4>, num_frames: usize) -> Tensor<B, 4> {
        let x = self
            .resnets
            .iter()
            .fold(x, |x, r| r.forward(x, None, num_frames));
        self.upsamplers.iter().fold(x, |x, u| u.forward(x, None))
    }
}

/// The temporal decoder: latents of `b` clips of `num_frames` frames to pixels.
#[derive(Module, Debug)]
pub struct TemporalDecoder<B: Backend> {
    /// `latent_channels` -> `block_out_channels[-1]`, 3x3.
    pub conv_in: Conv2d<B>,
    /// The middle block at the latent resolution.
    pub mid_block: MidBlockTemporalDecoder<B>,
    /// One block per level, widest first.
    pub up_blocks: Vec<UpBlockTemporalDecoder<B>>,
    /// Final GroupNorm (eps 1e-6).
    pub conv_norm_out: GroupNorm<B>,
    /// `block_out_channels[0]` -> `out_channels`, 3x3.
    pub conv_out: Conv2d<B>,
    /// Temporal convolution over the pixels' frames, kernel `(3, 1, 1)`, padding `(1, 0, 0)`.
    pub time_conv_out: Conv3d<B>,
}

impl<B: Backend> TemporalDecoder<B> {
    pub(super) fn new(config: &AutoencoderKLTemporalDecoderConfig, device: &B::Device) -> Self {
        let channels: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let widest = channels[0];
        let up_blocks = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let cin = if i == 0 { widest } else { channels[i - 1] };
                let is_final = i + 1 == channels.len();
                UpBlockTemporalDecoder::new(
                    cin,
                    out,
                    config.layers_per_block + 1,
                    !is_final,
                    device,
                )
            })
            .collect();
        let narrowest = config.block_out_channels[0];
        Self {
            conv_in: conv3x3(config.latent_channels, widest, device),
            mid_block: MidBlockTemporalDecoder::new(widest, config.layers_per_block, device),
            up_blocks,
            conv_norm_out: GroupNormConfig::new(32, narrowest)
                .with_epsilon(1e-6)
                .init(device),
            conv_out: conv3x3(narrowest, config.out_channels, device),
            time_conv_out: Conv3dConfig::new([config.out_channels, config.out_channels], [3, 1, 1])
                .with_padding(PaddingConfig3d::Explicit(1, 0, 0))
                .init(device),
        }
    }

    /// Decodes clips of `num_frames` frames; each clip is its own temporal context (its
    /// first and last frames see zeros beyond them).
    ///
    /// # Shapes
    /// - `z`: `[b * num_frames, latent_channels, h, w]`
    /// - returns `[b * num_frames, out_channels, h * 2^(levels-1), w * 2^(levels-1)]`
    pub fn forward(&self, z: Tensor<B, 4>, num_frames: usize) -> Tensor<B, 4> {
        let x = conv2d_forward(&self.conv_in, z);
        let x = self.mid_block.forward(x, num_frames);
        let x = self
            .up_blocks
            .iter()
            .fold(x, |x, b| b.forward(x, num_frames));
        let x = conv2d_forward(&self.conv_out, group_norm_silu(&self.conv_norm_out, x));
        self.time_conv(x, num_frames)
    }

    /// `time_conv_out` on `[b * f, c, h, w]`: the frames of each clip are the depth axis.
    fn time_conv(&self, x: Tensor<B, 4>, num_frames: usize) -> Tensor<B, 4> {
        clips_to_frames(temporal_conv(
            &self.time_conv_out,
            frames_to_clips(x, num_frames),
        ))
    }
}
