//! The residual blocks of diffusers 0.29 (`models/resnet.py`) that the SVD-xt UNet and the
//! temporal VAE share: [`ResnetBlock2D`], [`TemporalResnetBlock`], [`AlphaBlender`] and
//! [`SpatioTemporalResBlock`].
//!
//! Field names mirror the checkpoint keys (`norm1`, `conv1`, `time_emb_proj`, `norm2`, `conv2`,
//! `conv_shortcut`, `spatial_res_block`, `temporal_res_block`, `time_mixer.mix_factor`).

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::{
    GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d, PaddingConfig3d,
};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, silu};

use super::conv::conv2d_forward;
pub use super::conv::temporal_conv;
use super::norm::group_norm_silu;

/// Configuration of [`ResnetBlock2D`] (diffusers `ResnetBlock2D` with `time_embedding_norm
/// = "default"`, SiLU, `output_scale_factor = 1`, no up/down sampling).
#[derive(Config, Debug, PartialEq)]
pub struct ResnetBlock2DConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (a 1x1 `conv_shortcut` is added when they differ from the input's).
    pub out_channels: usize,
    /// Width of the time embedding, or `None` for a block without `time_emb_proj` (the VAE).
    #[config(default = "None")]
    pub temb_channels: Option<usize>,
    /// GroupNorm groups of both norms.
    #[config(default = 32)]
    pub groups: usize,
    /// GroupNorm epsilon of both norms.
    #[config(default = 1e-6)]
    pub eps: f64,
}

impl ResnetBlock2DConfig {
    /// Builds the block (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResnetBlock2D<B> {
        let conv3x3 = |cin, cout| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        ResnetBlock2D {
            norm1: GroupNormConfig::new(self.groups, self.in_channels)
                .with_epsilon(self.eps)
                .init(device),
            conv1: conv3x3(self.in_channels, self.out_channels),
            time_emb_proj: self
                .temb_channels
                .map(|t| LinearConfig::new(t, self.out_channels).init(device)),
            norm2: GroupNormConfig::new(self.groups, self.out_channels)
                .with_epsilon(self.eps)
                .init(device),
            conv2: conv3x3(self.out_channels, self.out_channels),
            conv_shortcut: (self.in_channels != self.out_channels).then(|| {
                Conv2dConfig::new([self.in_channels, self.out_channels], [1, 1]).init(device)
            }),
        }
    }
}

/// `x + conv2(SiLU(GN(conv1(SiLU(GN(x))) + proj(SiLU(temb)))))`, with a 1x1 shortcut when
/// the channel count changes.
#[derive(Module, Debug)]
pub struct ResnetBlock2D<B: Backend> {
    /// First GroupNorm (input channels).
    pub norm1: GroupNorm<B>,
    /// First 3x3 convolution.
    pub conv1: Conv2d<B>,
    /// Time-embedding projection, added per channel after `conv1`.
    pub time_emb_proj: Option<Linear<B>>,
    /// Second GroupNorm (output channels).
    pub norm2: GroupNorm<B>,
    /// Second 3x3 convolution.
    pub conv2: Conv2d<B>,
    /// 1x1 projection of the residual when the channel count changes.
    pub conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock2D<B> {
    /// Applies the block.
    ///
    /// `temb` is used only by blocks built with `temb_channels`; blocks without
    /// `time_emb_proj` ignore it (as they have nothing to project it with).
    ///
    /// # Shapes
    /// - `x`: `[n, in_channels, h, w]`
    /// - `temb`: `[n, temb_channels]`
    /// - returns `[n, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, temb: Option<Tensor<B, 2>>) -> Tensor<B, 4> {
        // The shortcut first: with a channel change, `x` is then no longer needed and its
        // buffer can be reused by the norm (the widest activation of a decoder level).
        let residual = match &self.conv_shortcut {
            Some(conv) => conv2d_forward(conv, x.clone()),
            None => x.clone(),
        };
        let h = conv2d_forward(&self.conv1, group_norm_silu(&self.norm1, x));
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => {
                let t = proj.forward(silu(temb)).unsqueeze_dims::<4>(&[2, 3]); // [n, c, 1, 1]
                h.add(t)
            }
            _ => h,
        };
        let h = conv2d_forward(&self.conv2, group_norm_silu(&self.norm2, h));
        residual.add(h)
    }
}

/// Configuration of [`TemporalResnetBlock`] (diffusers `TemporalResnetBlock`).
#[derive(Config, Debug, PartialEq)]
pub struct TemporalResnetBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (a 1x1x1 `conv_shortcut` is added when they differ).
    pub out_channels: usize,
    /// Width of the time embedding, or `None` for a block without `time_emb_proj`.
    #[config(default = "None")]
    pub temb_channels: Option<usize>,
    /// GroupNorm epsilon (32 groups).
    #[config(default = 1e-6)]
    pub eps: f64,
}

impl TemporalResnetBlockConfig {
    /// Builds the block (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TemporalResnetBlock<B> {
        let conv = |cin, cout| {
            Conv3dConfig::new([cin, cout], [3, 1, 1])
                .with_padding(PaddingConfig3d::Explicit(1, 0, 0))
                .init(device)
        };
        TemporalResnetBlock {
            norm1: GroupNormConfig::new(32, self.in_channels)
                .with_epsilon(self.eps)
                .init(device),
            conv1: conv(self.in_channels, self.out_channels),
            time_emb_proj: self
                .temb_channels
                .map(|t| LinearConfig::new(t, self.out_channels).init(device)),
            norm2: GroupNormConfig::new(32, self.out_channels)
                .with_epsilon(self.eps)
                .init(device),
            conv2: conv(self.out_channels, self.out_channels),
            conv_shortcut: (self.in_channels != self.out_channels).then(|| {
                Conv3dConfig::new([self.in_channels, self.out_channels], [1, 1, 1]).init(device)
            }),
        }
    }
}

/// A residual block over the frame axis: GroupNorm over `(c/32, f, h, w)` jointly, and
/// convolutions with kernel `(3, 1, 1)` (padding `(1, 0, 0)`) that mix each pixel with the same
/// pixel of the neighbouring frames; frames outside the clip are zeros.
#[derive(Module, Debug)]
pub struct TemporalResnetBlock<B: Backend> {
    /// First GroupNorm.
    pub norm1: GroupNorm<B>,
    /// First temporal convolution, weight `[out, in, 3, 1, 1]`.
    pub conv1: Conv3d<B>,
    /// Time-embedding projection, added per frame and channel after `conv1`.
    pub time_emb_proj: Option<Linear<B>>,
    /// Second GroupNorm.
    pub norm2: GroupNorm<B>,
    /// Second temporal convolution.
    pub conv2: Conv3d<B>,
    /// 1x1x1 projection of the residual when the channel count changes.
    pub conv_shortcut: Option<Conv3d<B>>,
}

impl<B: Backend> TemporalResnetBlock<B> {
    /// Applies the block.
    ///
    /// # Shapes
    /// - `x`: `[b, in_channels, f, h, w]`
    /// - `temb`: `[b, f, temb_channels]` (ignored without `time_emb_proj`)
    /// - returns `[b, out_channels, f, h, w]`
    pub fn forward(&self, x: Tensor<B, 5>, temb: Option<Tensor<B, 3>>) -> Tensor<B, 5> {
        let h = temporal_conv(&self.conv1, group_norm_silu(&self.norm1, x.clone()));
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => {
                // [b, f, c] -> [b, c, f, 1, 1]
                let t = proj
                    .forward(silu(temb))
                    .swap_dims(1, 2)
                    .unsqueeze_dims::<5>(&[3, 4]);
                h.add(t)
            }
            _ => h,
        };
        let h = temporal_conv(&self.conv2, group_norm_silu(&self.norm2, h));
        let residual = match &self.conv_shortcut {
            Some(conv) => temporal_conv(conv, x),
            None => x,
        };
        residual.add(h)
    }
}

/// How [`AlphaBlender`] turns its `mix_factor` into the spatial weight.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum MergeStrategy {
    /// `alpha = mix_factor`.
    Fixed,
    /// `alpha = sigmoid(mix_factor)` (the temporal VAE decoder).
    Learned,
    /// `alpha = sigmoid(mix_factor)` for video frames and 1 for pure images (the UNet).
    ///
    /// SVD inference passes an all-zero `image_only_indicator`, so every frame is a video
    /// frame and this is the same as [`MergeStrategy::Learned`].
    LearnedWithImages,
}

/// Blends a spatial and a temporal branch with one learned scalar (diffusers `AlphaBlender`):
/// `alpha * spatial + (1 - alpha) * temporal`, where `alpha` is replaced by `1 - alpha` when
/// `switch_spatial_to_temporal_mix` is set (the VAE decoder).
#[derive(Module, Debug)]
pub struct AlphaBlender<B: Backend> {
    /// The blend logit (or weight, for [`MergeStrategy::Fixed`]), shape `[1]`.
    pub mix_factor: Param<Tensor<B, 1>>,
    #[module(skip)]
    merge_strategy: MergeStrategy,
    #[module(skip)]
    switch_spatial_to_temporal_mix: bool,
}

impl<B: Backend> AlphaBlender<B> {
    /// A blender whose `mix_factor` starts at `alpha`.
    pub fn new(
        alpha: f64,
        merge_strategy: MergeStrategy,
        switch_spatial_to_temporal_mix: bool,
        device: &B::Device,
    ) -> Self {
        let mix_factor = Initializer::Constant { value: alpha }.init([1], device);
        Self {
            mix_factor,
            merge_strategy,
            switch_spatial_to_temporal_mix,
        }
    }

    /// The weight of the spatial branch, shape `[1]` (in the parameter's dtype).
    pub fn alpha(&self) -> Tensor<B, 1> {
        let m = self.mix_factor.val();
        let alpha = match self.merge_strategy {
            MergeStrategy::Fixed => m,
            MergeStrategy::Learned | MergeStrategy::LearnedWithImages => sigmoid(m),
        };
        if self.switch_spatial_to_temporal_mix {
            alpha.neg().add_scalar(1.0)
        } else {
            alpha
        }
    }

    /// `alpha * spatial + (1 - alpha) * temporal`, elementwise, computed in the inputs' dtype.
    ///
    /// # Shapes
    /// - `spatial`, `temporal`: the same shape, any rank
    /// - returns that shape
    pub fn blend<const D: usize>(
        &self,
        spatial: Tensor<B, D>,
        temporal: Tensor<B, D>,
    ) -> Tensor<B, D> {
        #[cfg(feature = "flex")]
        if super::cpu::is_flex::<B>() && spatial.dtype() == burn::tensor::DType::F32 {
            use burn::tensor::ElementConversion;
            // On the CPU the scalar read is free (on a GPU it would be a sync: never taken).
            let alpha = self.alpha().into_scalar().elem::<f32>();
            if let Some(out) = super::cpu::blend(&spatial, &temporal, alpha) {
                return out;
            }
        }
        let alpha = self.alpha().cast(spatial.dtype()).reshape([1; D]);
        let beta = alpha.clone().neg().add_scalar(1.0);
        spatial.mul(alpha).add(temporal.mul(beta))
    }
}

/// Configuration of [`SpatioTemporalResBlock`] (diffusers `SpatioTemporalResBlock`).
#[derive(Config, Debug, PartialEq)]
pub struct SpatioTemporalResBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the time embedding (`None` in the VAE decoder).
    #[config(default = "None")]
    pub temb_channels: Option<usize>,
    /// GroupNorm epsilon of the spatial block.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// GroupNorm epsilon of the temporal block (`None`: same as `eps`).
    #[config(default = "None")]
    pub temporal_eps: Option<f64>,
    /// Initial `mix_factor` (overwritten by the checkpoint).
    #[config(default = 0.5)]
    pub merge_factor: f64,
    /// How the mix factor becomes a weight.
    #[config(default = "MergeStrategy::LearnedWithImages")]
    pub merge_strategy: MergeStrategy,
    /// Swap the roles of the branches in the blend (the VAE decoder sets it).
    #[config(default = false)]
    pub switch_spatial_to_temporal_mix: bool,
}

impl SpatioTemporalResBlockConfig {
    /// The blocks of SVD's temporal VAE decoder (`MidBlockTemporalDecoder`,
    /// `UpBlockTemporalDecoder`): no time embedding, spatial eps 1e-6, temporal eps 1e-5,
    /// `learned` merge with the mix switched.
    pub fn vae_decoder(in_channels: usize, out_channels: usize) -> Self {
        Self::new(in_channels, out_channels)
            .with_eps(1e-6)
            .with_temporal_eps(Some(1e-5))
            .with_merge_factor(0.0)
            .with_merge_strategy(MergeStrategy::Learned)
            .with_switch_spatial_to_temporal_mix(true)
    }

    /// Builds the block (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpatioTemporalResBlock<B> {
        SpatioTemporalResBlock {
            spatial_res_block: ResnetBlock2DConfig::new(self.in_channels, self.out_channels)
                .with_temb_channels(self.temb_channels)
                .with_eps(self.eps)
                .init(device),
            temporal_res_block: TemporalResnetBlockConfig::new(
                self.out_channels,
                self.out_channels,
            )
            .with_temb_channels(self.temb_channels)
            .with_eps(self.temporal_eps.unwrap_or(self.eps))
            .init(device),
            time_mixer: AlphaBlender::new(
                self.merge_factor,
                self.merge_strategy,
                self.switch_spatial_to_temporal_mix,
                device,
            ),
        }
    }
}

/// A [`ResnetBlock2D`] on every frame, then a [`TemporalResnetBlock`] across the frames of
/// each clip, blended by a learned scalar.
#[derive(Module, Debug)]
pub struct SpatioTemporalResBlock<B: Backend> {
    /// Per-frame residual block.
    pub spatial_res_block: ResnetBlock2D<B>,
    /// Across-frames residual block.
    pub temporal_res_block: TemporalResnetBlock<B>,
    /// Blend of the two outputs.
    pub time_mixer: AlphaBlender<B>,
}

impl<B: Backend> SpatioTemporalResBlock<B> {
    /// Applies the block to `n = b * num_frames` frames, clip-major (frame index fastest).
    ///
    /// Every clip is an independent temporal context: the temporal convolutions zero-pad at
    /// its first and last frame. The image-only indicator of the reference is taken as all
    /// zeros (every frame is a video frame), as in SVD inference.
    ///
    /// # Shapes
    /// - `x`: `[b * num_frames, in_channels, h, w]`
    /// - `temb`: `[b * num_frames, temb_channels]`
    /// - returns `[b * num_frames, out_channels, h, w]`
    ///
    /// # Panics
    /// If the frame count is not a multiple of `num_frames` (a caller bug).
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: Option<Tensor<B, 2>>,
        num_frames: usize,
    ) -> Tensor<B, 4> {
        let spatial = self.spatial_res_block.forward(x, temb.clone()); // [b*f, c, h, w]
        let n = spatial.dims()[0];
        assert!(
            num_frames > 0 && n.is_multiple_of(num_frames),
            "{n} frames are not a whole number of clips of {num_frames}"
        );
        let b = n / num_frames;
        let clips = frames_to_clips(spatial.clone(), num_frames); // [b, c, f, h, w]
        let temb = temb.map(|t| {
            let channels = t.dims()[1];
            t.reshape([b, num_frames, channels])
        });
        let temporal = clips_to_frames(self.temporal_res_block.forward(clips, temb));
        self.time_mixer.blend(spatial, temporal)
    }
}

/// `[b * f, c, h, w]` (frames of each clip consecutive) to `[b, c, f, h, w]`, the layout of
/// the temporal layers (the reference's `reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)`).
///
/// # Shapes
/// - `x`: `[b * num_frames, c, h, w]`
/// - returns `[b, c, num_frames, h, w]`
pub fn frames_to_clips<B: Backend>(x: Tensor<B, 4>, num_frames: usize) -> Tensor<B, 5> {
    let [n, c, h, w] = x.dims();
    let b = n / num_frames;
    swap_middle_axes(x.reshape([b, num_frames, c, h * w])).reshape([b, c, num_frames, h, w])
}

/// The inverse of [`frames_to_clips`].
///
/// # Shapes
/// - `x`: `[b, c, f, h, w]`
/// - returns `[b * f, c, h, w]`
pub fn clips_to_frames<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 4> {
    let [b, c, f, h, w] = x.dims();
    swap_middle_axes(x.reshape([b, c, f, h * w])).reshape([b * f, c, h, w])
}

/// `[b, p, q, n]` -> `[b, q, p, n]`, materialised.
///
/// Built from `p` slices concatenated along the new axis rather than one strided permute:
/// each slice copies rows of `n` contiguous elements, which CPU backends do at memcpy speed,
/// whereas a general 3-axis permute falls back to an element-by-element walk there.
fn swap_middle_axes<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, p, q, n] = x.dims();
    if p == 1 || q == 1 {
        return x.reshape([b, q, p, n]);
    }
    // Slices are views `[b, 1, q, 1, n]` (no reshape after the narrow, which would copy an
    // offset view); the cat writes them side by side along the new `p` axis.
    let x = x.reshape([b, p, q, 1, n]);
    let slices = (0..p).map(|i| x.clone().narrow(1, i, 1)).collect();
    Tensor::cat(slices, 3).reshape([b, q, p, n])
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    type B = Flex;

    #[test]
    fn frame_layout_round_trip_equals_the_permute() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random([6, 4, 3, 5], Distribution::Default, &device);
        let clips = frames_to_clips(x.clone(), 3);
        let permuted = x.clone().reshape([2, 3, 4, 3, 5]).swap_dims(1, 2);
        clips
            .clone()
            .into_data()
            .assert_eq(&permuted.into_data(), true);
        clips_to_frames(clips)
            .into_data()
            .assert_eq(&x.into_data(), true);
    }

    #[test]
    fn single_frame_clips_need_no_copy_and_stay_correct() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random([3, 2, 2, 2], Distribution::Default, &device);
        let clips = frames_to_clips(x.clone(), 1);
        assert_eq!(clips.dims(), [3, 2, 1, 2, 2]);
        clips_to_frames(clips)
            .into_data()
            .assert_eq(&x.into_data(), true);
    }
}
