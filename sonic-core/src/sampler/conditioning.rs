//! The per-clip conditioning of Sonic's three guidance branches and its per-window slices.
//!
//! The UNet runs each window as a batch of three branches:
//! - **u**ncond: no image (zero CLIP embedding, zero image latents), null audio tokens;
//! - **i**mage: the portrait, null audio tokens;
//! - **c**ond: the portrait and the speech's audio tokens.
//!
//! Reference: Sonic `src/pipelines/pipeline_sonic.py` `_clip_encode_image` (`[zeros, e, e]`
//! and `[uncond, uncond, cond]`), `_encode_vae_image` (`[zeros, z, z]`) and
//! `_get_add_time_ids` (`[fps, head bucket, expression bucket]`).

use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};

use super::SamplerError;
use super::windows::WindowPlan;

/// Number of guidance branches (uncond, image, image + audio).
pub const CFG_BRANCHES: usize = 3;

/// Everything the UNet is conditioned on for a whole clip, held once (not per branch, not
/// repeated per frame).
#[derive(Debug, Clone)]
pub struct Conditioning<B: Backend> {
    image_embeds: Tensor<B, 2>,
    audio_cond: Tensor<B, 3>,
    audio_uncond: Tensor<B, 3>,
    image_latents: Tensor<B, 4>,
    motion_buckets: Vec<[f32; 2]>,
}

impl<B: Backend> Conditioning<B> {
    /// Bundles the conditioning of a clip of `audio_cond.dims()[0]` frames.
    ///
    /// - `image_embeds`: the portrait's CLIP `image_embeds`, `[1, clip_dim]`;
    /// - `audio_cond`: audio2token tokens of every frame, `[frames, tokens, dim]`;
    /// - `audio_uncond`: audio2token of zeros, `[frames, tokens, dim]` or `[1, tokens, dim]`
    ///   (the same for every frame);
    /// - `image_latents`: the VAE latent mode of the portrait, unscaled, `[1, 4, h, w]`;
    /// - `motion_buckets`: per frame `[head, expression]`, already `x16 + 16` and scaled by
    ///   the user's motion scales.
    pub fn new(
        image_embeds: Tensor<B, 2>,
        audio_cond: Tensor<B, 3>,
        audio_uncond: Tensor<B, 3>,
        image_latents: Tensor<B, 4>,
        motion_buckets: Vec<[f32; 2]>,
    ) -> Result<Self, SamplerError> {
        let [frames, tokens, dim] = audio_cond.dims();
        let shape_error = |what: &'static str, got: Vec<usize>, expected: String| {
            Err(SamplerError::Shape {
                what,
                got,
                expected,
            })
        };
        if frames == 0 {
            return shape_error(
                "audio_cond",
                audio_cond.dims().to_vec(),
                "at least one frame".into(),
            );
        }
        let [u_frames, u_tokens, u_dim] = audio_uncond.dims();
        if !((u_frames == frames || u_frames == 1) && u_tokens == tokens && u_dim == dim) {
            return shape_error(
                "audio_uncond",
                audio_uncond.dims().to_vec(),
                format!("[{frames} or 1, {tokens}, {dim}]"),
            );
        }
        if image_embeds.dims()[0] != 1 {
            return shape_error(
                "image_embeds",
                image_embeds.dims().to_vec(),
                "[1, clip_dim]".into(),
            );
        }
        if image_latents.dims()[0] != 1 {
            return shape_error(
                "image_latents",
                image_latents.dims().to_vec(),
                "[1, channels, h, w]".into(),
            );
        }
        if motion_buckets.len() != frames {
            return shape_error(
                "motion_buckets",
                vec![motion_buckets.len(), 2],
                format!("[{frames}, 2]"),
            );
        }
        Ok(Self {
            image_embeds,
            audio_cond,
            audio_uncond,
            image_latents,
            motion_buckets,
        })
    }

    /// Number of video frames.
    pub fn num_frames(&self) -> usize {
        self.audio_cond.dims()[0]
    }

    /// The portrait's unscaled latents `[1, channels, h, w]`.
    pub fn image_latents(&self) -> &Tensor<B, 4> {
        &self.image_latents
    }

    /// Per-frame motion buckets `[head, expression]`.
    pub fn motion_buckets(&self) -> &[[f32; 2]] {
        &self.motion_buckets
    }

    /// The pipeline's CLIP context of all frames, `[zeros, e, e]` repeated over frames:
    /// `[3, frames, 1, clip_dim]` (for inspection; the loop slices lazily).
    pub fn image_embeddings_cfg(&self) -> Tensor<B, 4> {
        let frames = self.num_frames();
        let [_, dim] = self.image_embeds.dims();
        let e = self.image_embeds.clone().reshape([1, 1, 1, dim]);
        Tensor::cat(vec![e.zeros_like(), e.clone(), e], 0).expand([CFG_BRANCHES, frames, 1, dim])
    }

    /// The pipeline's audio context of all frames, `[uncond, uncond, cond]`:
    /// `[3, frames, tokens, dim]`.
    pub fn audio_prompts_cfg(&self) -> Tensor<B, 4> {
        let [frames, tokens, dim] = self.audio_cond.dims();
        let uncond = self.audio_uncond.clone().expand([frames, tokens, dim]);
        Tensor::stack(vec![uncond.clone(), uncond, self.audio_cond.clone()], 0)
    }

    /// The concat-conditioning latents per branch, `[zeros, z, z]`: `[3, channels, h, w]`.
    pub fn image_latents_cfg(&self) -> Tensor<B, 4> {
        let z = self.image_latents.clone();
        Tensor::cat(vec![z.zeros_like(), z.clone(), z], 0)
    }

    /// The UNet's CLIP context for a window, branch-major: `[3 * window, 1, clip_dim]`.
    pub fn clip_context(&self, window: usize) -> Tensor<B, 3> {
        let [_, dim] = self.image_embeds.dims();
        let e = self.image_embeds.clone().reshape([1, 1, 1, dim]);
        Tensor::cat(vec![e.zeros_like(), e.clone(), e], 0)
            .expand([CFG_BRANCHES, window, 1, dim])
            .reshape([CFG_BRANCHES * window, 1, dim])
    }

    /// The UNet's audio context for a window, branch-major (uncond, uncond, cond):
    /// `[3 * window, tokens, dim]`.
    pub fn audio_context(&self, plan: &WindowPlan) -> Tensor<B, 3> {
        let [_, tokens, dim] = self.audio_cond.dims();
        let window = plan.len();
        let uncond = if self.audio_uncond.dims()[0] == 1 {
            self.audio_uncond.clone().expand([window, tokens, dim])
        } else {
            plan.gather(&self.audio_uncond, 0)
        };
        let cond = plan.gather(&self.audio_cond, 0);
        Tensor::cat(vec![uncond.clone(), uncond, cond], 0)
    }

    /// The concat-conditioning latents of a window, `[3, window, channels, h, w]`.
    pub fn window_image_latents(&self, window: usize) -> Tensor<B, 5> {
        let [_, c, h, w] = self.image_latents.dims();
        self.image_latents_cfg()
            .unsqueeze_dim::<5>(1)
            .expand([CFG_BRANCHES, window, c, h, w])
    }

    /// The window's mean motion buckets `[head, expression]` over its (wrapped) frames, as
    /// `torch.mean` over the window computes them in f32.
    pub fn window_motion_buckets(&self, plan: &WindowPlan) -> [f32; 2] {
        let mut sum = [0f64; 2];
        for &f in &plan.frame_indices {
            sum[0] += self.motion_buckets[f][0] as f64;
            sum[1] += self.motion_buckets[f][1] as f64;
        }
        let n = plan.len().max(1) as f64;
        [(sum[0] / n) as f32, (sum[1] / n) as f32]
    }

    /// The window's `added_time_ids`, `[fps, head bucket, expression bucket]` for each of the
    /// three branches: `[3, 3]`, in `dtype` (Sonic builds them in the UNet's dtype, so a
    /// half-precision run rounds the buckets to f16 here, as the reference does).
    pub fn added_time_ids(
        &self,
        plan: &WindowPlan,
        fps: f32,
        dtype: burn::tensor::DType,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let [head, expression] = self.window_motion_buckets(plan);
        let row = [fps, head, expression];
        let data: Vec<f32> = row.iter().copied().cycle().take(3 * CFG_BRANCHES).collect();
        Tensor::from_data(
            TensorData::new(data, [CFG_BRANCHES, 3]).convert_dtype(dtype),
            (device, dtype),
        )
    }
}
