//! Sonic's denoising loop, generic over the model that predicts the velocity so it can run
//! (and be tested) without the UNet.
//!
//! Reference: Sonic `src/pipelines/pipeline_sonic.py` `SonicPipeline.__call__`, step 8 (the
//! loop over timesteps and shifted windows).

use burn::config::Config;
use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};

use super::SamplerError;
use super::conditioning::{CFG_BRANCHES, Conditioning};
use super::guidance::{self, GuidanceScales};
use super::scheduler::EulerEdmScheduler;
use super::windows::{WindowPlan, frame_counts, plan_step};

/// Parameters of the denoising loop (Sonic's `config/inference/sonic.yaml`).
#[derive(Config, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Frames per UNet call (`n_sample_frames`; the UNet's frame embeddings cover 0..25).
    #[config(default = 25)]
    pub frames_per_batch: usize,
    /// Frames shared by consecutive windows (`overlap`); must be < `frames_per_batch`.
    #[config(default = 0)]
    pub overlap: usize,
    /// Frames the window cut moves at each step (`shift_offset`).
    #[config(default = 7)]
    pub shift_offset: usize,
    /// Image guidance `g1` (`min/max_appearance_guidance_scale`, both 2.0).
    #[config(default = 2.0)]
    pub image_guidance: f32,
    /// Audio guidance `g2` (`audio_guidance_scale`).
    #[config(default = 7.5)]
    pub audio_guidance: f32,
    /// The value of `added_time_ids[0]` (`fps`, 12.5 as is, not `fps - 1` as in SVD).
    #[config(default = 12.5)]
    pub fps_condition: f32,
}

impl SamplerConfig {
    /// Sonic's released settings (`sonic.yaml`): windows of 25, no overlap, shift 7, guidance
    /// 2.0 / 7.5, fps condition 12.5.
    pub fn sonic() -> Self {
        Self::new()
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let bad = |name: &'static str, value: String, expected: &'static str| {
            Err(SamplerError::InvalidConfig {
                name,
                value,
                expected,
            })
        };
        if self.frames_per_batch == 0 {
            return bad("frames_per_batch", "0".into(), ">= 1");
        }
        if self.overlap >= self.frames_per_batch {
            return bad("overlap", self.overlap.to_string(), "< frames_per_batch");
        }
        for (name, value) in [
            ("image_guidance", self.image_guidance),
            ("audio_guidance", self.audio_guidance),
            ("fps_condition", self.fps_condition),
        ] {
            if !value.is_finite() {
                return bad(name, value.to_string(), "a finite number");
            }
        }
        Ok(())
    }

    fn guidance(&self) -> GuidanceScales {
        GuidanceScales {
            image: self.image_guidance,
            audio: self.audio_guidance,
        }
    }
}

/// What the model sees for one window: the UNet's inputs with the three guidance branches
/// batched on the first dimension (uncond, image, image + audio).
#[derive(Debug, Clone)]
pub struct WindowInput<B: Backend> {
    /// Step, window and the frames it holds.
    pub plan: WindowPlan,
    /// Scaled noisy latents concatenated on channels with the image latents:
    /// `[3, frames, 2 * channels, h, w]`.
    pub sample: Tensor<B, 5>,
    /// The continuous timestep `0.25 ln sigma`.
    pub timestep: f32,
    /// CLIP context, branch-major: `[3 * frames, 1, clip_dim]`.
    pub clip_context: Tensor<B, 3>,
    /// Audio tokens, branch-major: `[3 * frames, tokens, dim]`.
    pub audio_context: Tensor<B, 3>,
    /// `[fps, head bucket, expression bucket]` per branch: `[3, 3]`.
    pub added_time_ids: Tensor<B, 2>,
}

/// A model that predicts the velocity of a window for the three guidance branches (in the
/// pipeline: the UNet with its face mask).
pub trait Denoiser<B: Backend> {
    /// The model's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The v-prediction of each branch, `[3, frames, channels, h, w]`.
    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Self::Error>;
}

/// Where the loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopProgress {
    /// Step index (0-based).
    pub step: usize,
    /// Number of steps.
    pub num_steps: usize,
    /// Window index within the step (0-based).
    pub window: usize,
    /// Windows per step.
    pub windows_per_step: usize,
}

impl LoopProgress {
    /// UNet calls done after this window, out of [`LoopProgress::total_windows`].
    pub fn windows_done(&self) -> usize {
        self.step * self.windows_per_step + self.window + 1
    }

    /// UNet calls of the whole loop.
    pub fn total_windows(&self) -> usize {
        self.num_steps * self.windows_per_step
    }
}

/// One finished window, as reported to a [`LoopObserver`].
#[derive(Debug)]
pub struct WindowDone<'a, B: Backend> {
    /// Where the loop is.
    pub progress: LoopProgress,
    /// The window's frames.
    pub plan: &'a WindowPlan,
    /// The guided velocity `[1, frames, channels, h, w]`.
    pub v_guided: &'a Tensor<B, 5>,
    /// The window's latents after the Euler step, before per-frame averaging:
    /// `[1, frames, channels, h, w]`.
    pub latents: &'a Tensor<B, 5>,
}

/// Progress reporting and cancellation for the loop. Every method has a default that does
/// nothing.
pub trait LoopObserver<B: Backend> {
    /// Checked before every window; `true` stops the loop with [`SamplerError::Cancelled`].
    fn is_cancelled(&self) -> bool {
        false
    }

    /// Called after each window's Euler step.
    fn on_window(&mut self, _done: &WindowDone<'_, B>) {}

    /// Called after each step with the averaged latents of all frames.
    fn on_step(&mut self, _step: usize, _latents: &Tensor<B, 5>) {}
}

/// An observer that reports nothing and never cancels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl<B: Backend> LoopObserver<B> for Unobserved {}

/// Sonic's sampler: the Euler/EDM schedule run over shifted, wrapping windows with three-way
/// guidance and per-frame averaging.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampler {
    config: SamplerConfig,
    scheduler: EulerEdmScheduler,
}

impl Sampler {
    /// A sampler running `scheduler`'s steps with `config`'s windows and guidance.
    pub fn new(config: SamplerConfig, scheduler: EulerEdmScheduler) -> Result<Self, SamplerError> {
        config.validate()?;
        Ok(Self { config, scheduler })
    }

    /// The loop's parameters.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The noise schedule.
    pub fn scheduler(&self) -> &EulerEdmScheduler {
        &self.scheduler
    }

    /// Number of denoising steps.
    pub fn num_steps(&self) -> usize {
        self.scheduler.num_steps()
    }

    /// Windows of `step` for a clip of `num_frames` frames, in execution order.
    ///
    /// # Panics
    /// If `num_frames == 0`.
    pub fn windows(&self, num_frames: usize, step: usize) -> Vec<WindowPlan> {
        plan_step(
            num_frames,
            self.config.frames_per_batch,
            self.config.overlap,
            self.config.shift_offset,
            step,
        )
    }

    /// Builds the model input of one window from the clip's latents `[1, frames, c, h, w]`.
    pub fn window_input<B: Backend>(
        &self,
        conditioning: &Conditioning<B>,
        latents: &Tensor<B, 5>,
        plan: &WindowPlan,
    ) -> WindowInput<B> {
        let window_latents = plan.gather(latents, 1); // [1, f, c, h, w]
        self.input_for(conditioning, window_latents, plan)
    }

    fn input_for<B: Backend>(
        &self,
        conditioning: &Conditioning<B>,
        window_latents: Tensor<B, 5>,
        plan: &WindowPlan,
    ) -> WindowInput<B> {
        let frames = plan.len();
        let scaled = self
            .scheduler
            .scale_model_input(window_latents, plan.step)
            .repeat_dim(0, CFG_BRANCHES); // [3, f, c, h, w]
        let sample = Tensor::cat(vec![scaled, conditioning.window_image_latents(frames)], 2);
        WindowInput {
            plan: plan.clone(),
            timestep: self.scheduler.timesteps()[plan.step],
            clip_context: conditioning.clip_context(frames),
            audio_context: conditioning.audio_context(plan),
            added_time_ids: conditioning.added_time_ids(
                plan,
                self.config.fps_condition,
                sample.dtype(),
                &sample.device(),
            ),
            sample,
        }
    }

    /// Runs every step from `latents` (see [`Sampler::step`]); returns the clean latents.
    ///
    /// # Shapes
    /// - `latents`: `[1, frames, channels, h, w]` (e.g. from
    ///   [`initial_latents`](super::initial_latents))
    /// - returns the same shape
    pub fn denoise<B: Backend, M: Denoiser<B>>(
        &self,
        mut latents: Tensor<B, 5>,
        conditioning: &Conditioning<B>,
        model: &mut M,
        observer: &mut impl LoopObserver<B>,
    ) -> Result<Tensor<B, 5>, SamplerError> {
        for step in 0..self.num_steps() {
            latents = self.step(step, latents, conditioning, model, observer)?;
        }
        Ok(latents)
    }

    /// Runs denoising step `step` over all windows and averages frames covered more than once.
    ///
    /// # Shapes
    /// - `latents`: `[1, frames, channels, h, w]`, `frames == conditioning.num_frames()`
    /// - returns the same shape
    pub fn step<B: Backend, M: Denoiser<B>>(
        &self,
        step: usize,
        latents: Tensor<B, 5>,
        conditioning: &Conditioning<B>,
        model: &mut M,
        observer: &mut impl LoopObserver<B>,
    ) -> Result<Tensor<B, 5>, SamplerError> {
        let [batch, num_frames, channels, height, width] = latents.dims();
        let [_, latent_c, latent_h, latent_w] = conditioning.image_latents().dims();
        if batch != 1
            || num_frames != conditioning.num_frames()
            || [channels, height, width] != [latent_c, latent_h, latent_w]
        {
            return Err(SamplerError::Shape {
                what: "latents",
                got: latents.dims().to_vec(),
                expected: format!(
                    "[1, {}, {latent_c}, {latent_h}, {latent_w}]",
                    conditioning.num_frames()
                ),
            });
        }
        if step >= self.num_steps() {
            return Err(SamplerError::InvalidConfig {
                name: "step",
                value: step.to_string(),
                expected: "< num_inference_steps",
            });
        }
        let plans = self.windows(num_frames, step);
        let mut accumulated = latents.zeros_like();
        for plan in &plans {
            let progress = LoopProgress {
                step,
                num_steps: self.num_steps(),
                window: plan.window,
                windows_per_step: plans.len(),
            };
            if observer.is_cancelled() {
                return Err(SamplerError::Cancelled {
                    step,
                    window: plan.window,
                });
            }
            let window_latents = plan.gather(&latents, 1); // [1, f, c, h, w]
            let input = self.input_for(conditioning, window_latents.clone(), plan);
            let branches = model
                .predict_v(input)
                .map_err(|source| SamplerError::Denoiser {
                    step,
                    window: plan.window,
                    source: Box::new(source),
                })?;
            let expected = [CFG_BRANCHES, plan.len(), channels, height, width];
            if branches.dims() != expected {
                return Err(SamplerError::Shape {
                    what: "denoiser output",
                    got: branches.dims().to_vec(),
                    expected: format!("{expected:?}"),
                });
            }
            let v_guided = guidance::combine(branches, self.config.guidance()); // [1, f, c, h, w]
            let stepped = self
                .scheduler
                .step(step, v_guided.clone(), window_latents)
                .prev_sample;
            // The step returns the model's dtype (as diffusers does); accumulate in the latents'.
            let stepped = if stepped.dtype() == latents.dtype() {
                stepped
            } else {
                stepped.cast(latents.dtype())
            };
            observer.on_window(&WindowDone {
                progress,
                plan,
                v_guided: &v_guided,
                latents: &stepped,
            });
            accumulated = plan.scatter_add(accumulated, &stepped, 1);
        }
        let counts: Vec<f32> = frame_counts(num_frames, &plans)
            .into_iter()
            .map(|c| c as f32)
            .collect();
        let dtype = accumulated.dtype();
        let counts = Tensor::<B, 5>::from_data(
            TensorData::new(counts, [1, num_frames, 1, 1, 1]).convert_dtype(dtype),
            (&accumulated.device(), dtype),
        );
        let latents = accumulated.div(counts.expand([batch, num_frames, channels, height, width]));
        observer.on_step(step, &latents);
        Ok(latents)
    }
}
