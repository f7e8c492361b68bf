//! One refinement stage of IFNet: a strided conv encoder, four residual conv blocks and two
//! transposed-conv heads (flow and fusion mask).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{PRelu, PReluConfig, PaddingConfig2d};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::nn::conv::{conv_transpose2d_forward, conv2d_forward};

/// `act.forward(x)`, through sonic's CPU kernel on `Flex` (`nn::cpu::prelu`).
fn prelu<B: Backend>(act: &PRelu<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    crate::nn::cpu::prelu(x, act.alpha.val())
}

/// `conv(in, out, 3, stride, 1)` of the reference: 3x3 conv with bias, then a per-channel
/// PReLU. Checkpoint keys `<i>.0.*` (conv) and `<i>.1.weight` (PReLU), see
/// [`rife_key_action`](super::rife_key_action).
#[derive(Module, Debug)]
pub struct ConvPrelu<B: Backend> {
    /// The convolution (`.0`).
    pub conv: Conv2d<B>,
    /// The activation (`.1`).
    pub act: PRelu<B>,
}

impl<B: Backend> ConvPrelu<B> {
    fn new(channels: [usize; 2], stride: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new(channels, [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            act: PReluConfig::new()
                .with_num_parameters(channels[1])
                .init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        prelu(&self.act, conv2d_forward(&self.conv, x))
    }
}

/// `Sequential(ConvTranspose2d(c, c/2, 4, 2, 1), PReLU(c/2), ConvTranspose2d(c/2, out, 4, 2,
/// 1))`: x4 upsampling head. Checkpoint keys `.0.*`, `.1.weight`, `.2.*`.
#[derive(Module, Debug)]
pub struct UpsampleHead<B: Backend> {
    /// First transposed conv (`.0`), x2.
    pub up: ConvTranspose2d<B>,
    /// Activation (`.1`).
    pub act: PRelu<B>,
    /// Second transposed conv (`.2`), x2, to the output channels.
    pub out: ConvTranspose2d<B>,
}

impl<B: Backend> UpsampleHead<B> {
    fn new(c: usize, out_channels: usize, device: &B::Device) -> Self {
        let deconv = |channels| {
            ConvTranspose2dConfig::new(channels, [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(device)
        };
        Self {
            up: deconv([c, c / 2]),
            act: PReluConfig::new().with_num_parameters(c / 2).init(device),
            out: deconv([c / 2, out_channels]),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv_transpose2d_forward(
            &self.out,
            prelu(&self.act, conv_transpose2d_forward(&self.up, x)),
        )
    }
}

/// IFNet's `IFBlock(in_planes, c)`.
#[derive(Module, Debug)]
pub struct IfBlock<B: Backend> {
    /// Two stride-2 `conv`s: `in_planes -> c/2 -> c` (x1/4 resolution).
    pub conv0: Vec<ConvPrelu<B>>,
    /// Residual block 0: two `conv(c, c)`.
    pub convblock0: Vec<ConvPrelu<B>>,
    /// Residual block 1.
    pub convblock1: Vec<ConvPrelu<B>>,
    /// Residual block 2.
    pub convblock2: Vec<ConvPrelu<B>>,
    /// Residual block 3.
    pub convblock3: Vec<ConvPrelu<B>>,
    /// Flow head (4 channels: x/y flow towards each of the two frames).
    pub conv1: UpsampleHead<B>,
    /// Fusion-mask head (1 channel, a logit).
    pub conv2: UpsampleHead<B>,
}

impl<B: Backend> IfBlock<B> {
    /// `IFBlock(in_planes, c)` with lazily initialised parameters.
    pub fn new(in_planes: usize, c: usize, device: &B::Device) -> Self {
        let residual = || {
            vec![
                ConvPrelu::new([c, c], 1, device),
                ConvPrelu::new([c, c], 1, device),
            ]
        };
        Self {
            conv0: vec![
                ConvPrelu::new([in_planes, c / 2], 2, device),
                ConvPrelu::new([c / 2, c], 2, device),
            ],
            convblock0: residual(),
            convblock1: residual(),
            convblock2: residual(),
            convblock3: residual(),
            conv1: UpsampleHead::new(c, 4, device),
            conv2: UpsampleHead::new(c, 1, device),
        }
    }

    /// Flow and mask residuals at full resolution, computed at `1/scale` resolution.
    ///
    /// # Shapes
    /// - `x`: `[b, in_planes - 4, h, w]`; `flow`: `[b, 4, h, w]`, with `h` and `w` multiples of
    ///   `4 * scale`
    /// - returns (`[b, 4, h, w]`, `[b, 1, h, w]`)
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        flow: Tensor<B, 4>,
        scale: f64,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let x = resize(x, 1.0 / scale);
        let flow = resize(flow, 1.0 / scale).mul_scalar(1.0 / scale);
        let mut feat = Tensor::cat(vec![x, flow], 1); // [b, in_planes, h/s, w/s]
        for layer in &self.conv0 {
            feat = layer.forward(feat); // stride 2 each: [b, c, h/4s, w/4s]
        }
        for block in [
            &self.convblock0,
            &self.convblock1,
            &self.convblock2,
            &self.convblock3,
        ] {
            let residual = block.iter().fold(feat.clone(), |y, layer| layer.forward(y));
            feat = residual.add(feat);
        }
        let flow = self.conv1.forward(feat.clone()); // [b, 4, h/s, w/s]
        let mask = self.conv2.forward(feat); // [b, 1, h/s, w/s]
        (resize(flow, scale).mul_scalar(scale), resize(mask, scale))
    }
}

/// `F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)`. The sizes
/// IFNet uses divide exactly, so the size-based burn op maps coordinates as torch's
/// factor-based one does; factor 1 is the identity, as in torch.
fn resize<B: Backend>(x: Tensor<B, 4>, factor: f64) -> Tensor<B, 4> {
    if factor == 1.0 {
        return x;
    }
    let [_, _, h, w] = x.dims();
    let size = [
        (h as f64 * factor).floor() as usize,
        (w as f64 * factor).floor() as usize,
    ];
    interpolate(
        x,
        size,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false),
    )
}
