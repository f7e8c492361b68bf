//! Sampling: the Euler/EDM schedule of SVD-xt and Sonic's denoising loop over shifted,
//! wrapping windows with three-way guidance.
//!
//! The loop is generic over a [`Denoiser`] (the UNet in the pipeline), so it runs without any
//! model. A pipeline builds, in order:
//! 1. an [`EulerEdmScheduler`] from `scheduler_config.json` and the step count;
//! 2. the clip's [`Conditioning`] (CLIP embedding, audio tokens, image latents, buckets);
//! 3. the [`initial_latents`] from the portrait's scaled latents and a [`NoiseSource`];
//! 4. [`Sampler::denoise`] with its UNet as the [`Denoiser`] ([`MaskedUNet`]) and a [`LoopObserver`] for
//!    progress and cancellation.

mod conditioning;
mod denoise;
mod guidance;
mod noise;
mod scheduler;
mod unet;
mod windows;

pub use conditioning::{CFG_BRANCHES, Conditioning};
pub use denoise::{
    Denoiser, LoopObserver, LoopProgress, Sampler, SamplerConfig, Unobserved, WindowDone,
    WindowInput,
};
pub use guidance::{GuidanceScales, combine as combine_guidance};
pub use noise::{NoiseSource, initial_latents, seeded_noise};
pub use scheduler::{
    EdmCoefficients, EulerEdmScheduler, EulerStep, FinalSigmas, KARRAS_RHO, PredictionType,
    SchedulerConfig, SchedulerError, TimestepSpacing, TimestepType,
};
pub use unet::MaskedUNet;
pub use windows::{Segment, WindowPlan, frame_counts, plan_step};

/// Why sampling stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// A loop parameter is out of range.
    #[error("sampler parameter `{name}` = {value} out of range: {expected}")]
    InvalidConfig {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
    /// The schedule could not be built.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// A tensor has the wrong shape.
    #[error("`{what}` has shape {got:?}, expected {expected}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The expected shape.
        expected: String,
    },
    /// The observer asked to stop (checked before each window).
    #[error("cancelled before window {window} of step {step}")]
    Cancelled {
        /// Step that was running.
        step: usize,
        /// Window that was about to run.
        window: usize,
    },
    /// The denoising model failed.
    #[error("denoiser failed at step {step}, window {window}")]
    Denoiser {
        /// Step that was running.
        step: usize,
        /// Window that failed.
        window: usize,
        /// The model's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
