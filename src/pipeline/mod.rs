//! The generation pipeline: one portrait and one speech recording in object storage, one
//! lip-synced MP4 and its manifest out.
//!
//! - [`Pipeline`]: the entry point (`Pipeline::new(backend, store)` for `./checkpoints`,
//!   [`Pipeline::builder`] for any [`WeightsSource`], [`Pipeline::from_env`] for the
//!   environment variables; then [`Pipeline::generate`] per job), not generic: the backend is
//!   chosen at run time.
//! - [`GenerationParams`]: every user setting with Sonic's defaults and checked ranges.
//! - [`WeightsSource`]: where the weights come from (a released-layout folder, the demo
//!   layout, the Hugging Face hub through [`HubSource`]); [`WeightsLayout`]: the files, by
//!   [`Component`].
//! - [`SonicModels`]: the loaded models on one backend type, with
//!   [`SonicModels::render`] for callers that choose the backend type themselves.
//! - [`Progress`] / [`CancellationToken`]: reports (stage, step, window, ETA) and stopping.
//! - [`StageObserver`]: named intermediate tensors (what the parity test checks).
//! - [`MemoryEstimate`]: the peak-memory model checked against the job's budget before the
//!   first denoising step.
//!
//! `docs/pipeline.md` in the repository describes the stages with their shapes, the
//! parameters, the weights and the memory model.

mod component;
mod error;
mod frames;
mod hashing;
mod job;
mod manifest;
mod memory;
mod models;
mod params;
mod progress;
mod render;
mod source;
mod stages;
mod weights;

pub use component::Component;
pub use error::PipelineError;
pub use job::{
    Claim, JobControl, JobInputs, JobOutcome, JobRequest, Pipeline, PipelineBuilder, STORE_ENV,
    WriteGuard, WriteGuardFuture, WritePoint,
};
pub use memory::{MemoryEstimate, human_bytes};
pub use models::{ModelConfigs, SonicModels};
pub use params::{FRAMES_PER_WINDOW, FaceSpec, GenerationParams, ParamError, ranges};
pub use progress::{CancellationToken, Progress, ProgressFn, Stage};
pub use render::{NamedBytes, RenderControl, RenderInputs, RenderOutput};
pub use source::{
    HUB_ENDPOINT, HubSource, SONIC_REPO, SVD_REPO, WEIGHTS_ENV, WHISPER_REPO, WeightsSource,
};
pub use stages::{StageObserver, StageRecorder, StageTensor};
pub use weights::{WeightsError, WeightsLayout};
