//! The UNet's down, mid and up blocks (`CrossAttnDownBlockSpatioTemporal`,
//! `DownBlockSpatioTemporal`, `UNetMidBlockSpatioTemporal`, `UpBlockSpatioTemporal`,
//! `CrossAttnUpBlockSpatioTemporal` in S:src/models/base/unet_3d_blocks.py).
//!
//! Skip connections follow diffusers exactly: the UNet pushes `conv_in`'s output, every down
//! block pushes the output of each layer and of its downsampler; every up-block resnet pops
//! the most recent skip and concatenates it after its input's channels.

use burn::config::Config;
use burn::module::Module;
use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::transformer::{
    CrossAttentionContext, TransformerSpatioTemporal, TransformerSpatioTemporalConfig,
};
use crate::nn::resample::{Downsample2D, Downsample2DConfig, Upsample2D, Upsample2DConfig};
use crate::nn::resnet::{SpatioTemporalResBlock, SpatioTemporalResBlockConfig};

/// The down-block kinds of a diffusers `down_block_types` list.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum DownBlockType {
    /// Resnets each followed by a spatio-temporal transformer (resnet eps 1e-6).
    CrossAttnDownBlockSpatioTemporal,
    /// Resnets only (resnet eps 1e-5).
    DownBlockSpatioTemporal,
}

/// The up-block kinds of a diffusers `up_block_types` list.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum UpBlockType {
    /// Resnets only.
    UpBlockSpatioTemporal,
    /// Resnets each followed by a spatio-temporal transformer.
    CrossAttnUpBlockSpatioTemporal,
}

/// Shape of one down or up block; the UNet derives these from its config.
#[derive(Config, Debug, PartialEq)]
pub struct BlockConfig {
    /// Input channels (down: the previous level's; up: see diffusers' `in_channels`, the skip
    /// width of the block's last resnet).
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Up blocks: channels coming from the block below.
    #[config(default = 0)]
    pub prev_output_channels: usize,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// Resnets (down: `layers_per_block`; up: `layers_per_block + 1`).
    pub num_layers: usize,
    /// Transformer layers of each attention (`transformer_layers_per_block`).
    #[config(default = 1)]
    pub transformer_layers: usize,
    /// Attention heads.
    #[config(default = 1)]
    pub heads: usize,
    /// Width of the context tokens.
    #[config(default = 1024)]
    pub cross_attention_dim: usize,
    /// Weight of the audio branch of every `attn2`.
    #[config(default = 1.0)]
    pub audio_scale: f64,
    /// Whether the block changes the resolution at its end.
    pub resample: bool,
}

impl BlockConfig {
    fn resnet(&self, in_channels: usize, eps: f64) -> SpatioTemporalResBlockConfig {
        SpatioTemporalResBlockConfig::new(in_channels, self.out_channels)
            .with_temb_channels(Some(self.temb_channels))
            .with_eps(eps)
    }

    fn transformer(&self, channels: usize) -> TransformerSpatioTemporalConfig {
        TransformerSpatioTemporalConfig::new(channels, self.heads, self.cross_attention_dim)
            .with_num_layers(self.transformer_layers)
            .with_audio_scale(self.audio_scale)
    }

    fn down_resnets<B: Backend>(
        &self,
        eps: f64,
        device: &B::Device,
    ) -> Vec<SpatioTemporalResBlock<B>> {
        (0..self.num_layers)
            .map(|i| {
                let in_channels = if i == 0 {
                    self.in_channels
                } else {
                    self.out_channels
                };
                self.resnet(in_channels, eps).init(device)
            })
            .collect()
    }

    fn downsamplers<B: Backend>(&self, device: &B::Device) -> Vec<Downsample2D<B>> {
        self.resample
            .then(|| Downsample2DConfig::new(self.out_channels, self.out_channels).init(device))
            .into_iter()
            .collect()
    }

    fn up_resnets<B: Backend>(&self, device: &B::Device) -> Vec<SpatioTemporalResBlock<B>> {
        (0..self.num_layers)
            .map(|i| {
                let skip = if i + 1 == self.num_layers {
                    self.in_channels
                } else {
                    self.out_channels
                };
                let input = if i == 0 {
                    self.prev_output_channels
                } else {
                    self.out_channels
                };
                self.resnet(input + skip, 1e-6).init(device)
            })
            .collect()
    }

    fn upsamplers<B: Backend>(&self, device: &B::Device) -> Vec<Upsample2D<B>> {
        self.resample
            .then(|| Upsample2DConfig::new(self.out_channels, self.out_channels).init(device))
            .into_iter()
            .collect()
    }

    /// Builds a down block of the given kind (lazily initialised).
    pub fn init_down<B: Backend>(&self, kind: DownBlockType, device: &B::Device) -> DownBlock<B> {
        match kind {
            DownBlockType::CrossAttnDownBlockSpatioTemporal => {
                DownBlock::CrossAttn(CrossAttnDownBlockSpatioTemporal {
                    attentions: (0..self.num_layers)
                        .map(|_| self.transformer(self.out_channels).init(device))
                        .collect(),
                    resnets: self.down_resnets(1e-6, device),
                    downsamplers: self.downsamplers(device),
                })
            }
            DownBlockType::DownBlockSpatioTemporal => DownBlock::Plain(DownBlockSpatioTemporal {
                resnets: self.down_resnets(1e-5, device),
                downsamplers: self.downsamplers(device),
            }),
        }
    }

    /// Builds an up block of the given kind (lazily initialised).
    pub fn init_up<B: Backend>(&self, kind: UpBlockType, device: &B::Device) -> UpBlock<B> {
        match kind {
            UpBlockType::CrossAttnUpBlockSpatioTemporal => {
                UpBlock::CrossAttn(CrossAttnUpBlockSpatioTemporal {
                    attentions: (0..self.num_layers)
                        .map(|_| self.transformer(self.out_channels).init(device))
                        .collect(),
                    resnets: self.up_resnets(device),
                    upsamplers: self.upsamplers(device),
                })
            }
            UpBlockType::UpBlockSpatioTemporal => UpBlock::Plain(UpBlockSpatioTemporal {
                resnets: self.up_resnets(device),
                upsamplers: self.upsamplers(device),
            }),
        }
    }

    /// Builds the mid block: resnet, then `num_layers` x (transformer, resnet); eps 1e-5
    /// (lazily initialised).
    pub fn init_mid<B: Backend>(&self, device: &B::Device) -> UNetMidBlockSpatioTemporal<B> {
        let c = self.in_channels;
        let resnet = || {
            SpatioTemporalResBlockConfig::new(c, c)
                .with_temb_channels(Some(self.temb_channels))
                .with_eps(1e-5)
                .init(device)
        };
        UNetMidBlockSpatioTemporal {
            attentions: (0..self.num_layers)
                .map(|_| self.transformer(c).init(device))
                .collect(),
            resnets: (0..=self.num_layers).map(|_| resnet()).collect(),
        }
    }
}

/// A down block (heterogeneous stages of `down_blocks`).
#[derive(Module, Debug)]
pub enum DownBlock<B: Backend> {
    /// `CrossAttnDownBlockSpatioTemporal`.
    CrossAttn(CrossAttnDownBlockSpatioTemporal<B>),
    /// `DownBlockSpatioTemporal`.
    Plain(DownBlockSpatioTemporal<B>),
}

impl<B: Backend> DownBlock<B> {
    /// Runs the block and pushes its skip connections onto `skips`.
    ///
    /// # Shapes
    /// - `x`: `[b·f, in_channels, h, w]`
    /// - `temb`: `[b·f, temb_channels]`
    /// - returns `[b·f, out_channels, h', w']` (`h' = ceil(h / 2)` when it downsamples)
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: Tensor<B, 2>,
        context: &CrossAttentionContext<B>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let f = context.num_frames;
        let (mut x, downsamplers) = match self {
            Self::CrossAttn(block) => {
                let mut x = x;
                for (resnet, attention) in block.resnets.iter().zip(&block.attentions) {
                    x = resnet.forward(x, Some(temb.clone()), f);
                    x = attention.forward(x, context);
                    skips.push(x.clone());
                }
                (x, &block.downsamplers)
            }
            Self::Plain(block) => {
                let mut x = x;
                for resnet in &block.resnets {
                    x = resnet.forward(x, Some(temb.clone()), f);
                    skips.push(x.clone());
                }
                (x, &block.downsamplers)
            }
        };
        if !downsamplers.is_empty() {
            for downsampler in downsamplers {
                x = downsampler.forward(x);
            }
            skips.push(x.clone());
        }
        x
    }
}

/// Resnets each followed by a spatio-temporal transformer, then an optional downsampler.
#[derive(Module, Debug)]
pub struct CrossAttnDownBlockSpatioTemporal<B: Backend> {
    /// One transformer after each resnet.
    pub attentions: Vec<TransformerSpatioTemporal<B>>,
    /// Spatio-temporal resnets (eps 1e-6).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
    /// `downsamplers.0` (empty on the last level).
    pub downsamplers: Vec<Downsample2D<B>>,
}

/// Resnets then an optional downsampler.
#[derive(Module, Debug)]
pub struct DownBlockSpatioTemporal<B: Backend> {
    /// Spatio-temporal resnets (eps 1e-5).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
    /// `downsamplers.0` (empty on the last level).
    pub downsamplers: Vec<Downsample2D<B>>,
}

/// Resnet, then (transformer, resnet) pairs, at the lowest resolution.
#[derive(Module, Debug)]
pub struct UNetMidBlockSpatioTemporal<B: Backend> {
    /// Transformers between the resnets.
    pub attentions: Vec<TransformerSpatioTemporal<B>>,
    /// One more resnet than transformers (eps 1e-5).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
}

impl<B: Backend> UNetMidBlockSpatioTemporal<B> {
    /// # Shapes
    /// - `x`: `[b·f, C, h, w]`
    /// - `temb`: `[b·f, temb_channels]`
    /// - returns `[b·f, C, h, w]`
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: Tensor<B, 2>,
        context: &CrossAttentionContext<B>,
    ) -> Tensor<B, 4> {
        let f = context.num_frames;
        let mut x = self.resnets[0].forward(x, Some(temb.clone()), f);
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = attention.forward(x, context);
            x = resnet.forward(x, Some(temb.clone()), f);
        }
        x
    }
}

/// An up block (heterogeneous stages of `up_blocks`).
#[derive(Module, Debug)]
pub enum UpBlock<B: Backend> {
    /// `UpBlockSpatioTemporal`.
    Plain(UpBlockSpatioTemporal<B>),
    /// `CrossAttnUpBlockSpatioTemporal`.
    CrossAttn(CrossAttnUpBlockSpatioTemporal<B>),
}

impl<B: Backend> UpBlock<B> {
    /// Number of skips the block pops (one per resnet).
    pub fn num_skips(&self) -> usize {
        match self {
            Self::Plain(block) => block.resnets.len(),
            Self::CrossAttn(block) => block.resnets.len(),
        }
    }

    /// Runs the block, popping one skip connection per resnet from `skips`.
    ///
    /// # Shapes
    /// - `x`: `[b·f, prev_output_channels, h, w]`
    /// - `temb`: `[b·f, temb_channels]`
    /// - returns `[b·f, out_channels, 2h, 2w]` (`[.., h, w]` without upsampler)
    ///
    /// # Panics
    /// If `skips` runs out (the UNet pushes exactly as many as its up blocks pop).
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: Tensor<B, 2>,
        context: &CrossAttentionContext<B>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let f = context.num_frames;
        let mut with_skip = |x: Tensor<B, 4>| {
            let skip = skips
                .pop()
                .expect("one skip connection per up-block resnet");
            Tensor::cat(vec![x, skip], 1)
        };
        let (mut x, upsamplers) = match self {
            Self::Plain(block) => {
                let mut x = x;
                for resnet in &block.resnets {
                    x = resnet.forward(with_skip(x), Some(temb.clone()), f);
                }
                (x, &block.upsamplers)
            }
            Self::CrossAttn(block) => {
                let mut x = x;
                for (resnet, attention) in block.resnets.iter().zip(&block.attentions) {
                    x = resnet.forward(with_skip(x), Some(temb.clone()), f);
                    x = attention.forward(x, context);
                }
                (x, &block.upsamplers)
            }
        };
        for upsampler in upsamplers {
            x = upsampler.forward(x, None);
        }
        x
    }
}

/// Resnets on the input concatenated with skips, then an optional nearest-x2 upsampler.
#[derive(Module, Debug)]
pub struct UpBlockSpatioTemporal<B: Backend> {
    /// Spatio-temporal resnets (eps 1e-6).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
    /// `upsamplers.0` (empty on the last level).
    pub upsamplers: Vec<Upsample2D<B>>,
}

/// Resnets on the input concatenated with skips, each followed by a spatio-temporal
/// transformer, then an optional upsampler.
#[derive(Module, Debug)]
pub struct CrossAttnUpBlockSpatioTemporal<B: Backend> {
    /// One transformer after each resnet.
    pub attentions: Vec<TransformerSpatioTemporal<B>>,
    /// Spatio-temporal resnets (eps 1e-6).
    pub resnets: Vec<SpatioTemporalResBlock<B>>,
    /// `upsamplers.0` (empty on the last level).
    pub upsamplers: Vec<Upsample2D<B>>,
}
