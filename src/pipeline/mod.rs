//! The generation pipeline: one portrait and one speech recording in object storage, one
//! lip-synced MP4 and its manifest out.
//!
//! - [`Pipeline`]: the entry point (`Pipeline::new(backend, store)`, then
//!   [`Pipeline::generate`] per job), not generic: the backend is chosen at run time.
//! - [`GenerationParams`]: every user setting with Sonic's defaults and checked ranges.
//! - [`WeightsLayout`]: where the released checkpoints (or the tiny demo weights) are.
//! - [`SonicModels`]: the loaded models on one backend type, with
//!   [`SonicModels::render`] for callers that choose the backend type themselves.
//! - [`Progress`] / [`CancellationToken`]: reports (stage, step, window, ETA) and stopping.
//! - [`StageObserver`]: named intermediate tensors (what the parity test checks).
//! - [`MemoryEstimate`]: the peak-memory model checked against the job's budget before the
//!   first denoising step.
//!
//! `docs/pipeline.md` in the repository describes the stages with their shapes, the
//! parameters, the weights and the memory model.

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
mod stages;
mod weights;

pub use error::PipelineError;
pub use hashing::{ChecksumCache, hash_file};
pub use job::{JobControl, JobOutcome, JobRequest, Pipeline, WEIGHTS_ENV};
pub use memory::{JobShape, MemoryEstimate, estimate as estimate_memory, human_bytes};
pub use models::{ModelConfigs, SonicModels};
pub use params::{
    FRAMES_PER_WINDOW, FaceSpec, GenerationParams, MAX_DURATION_SECS, ParamError, ranges,
};
pub use progress::{CancellationToken, Progress, ProgressFn, Stage};
pub use render::{NamedBytes, RenderControl, RenderInputs, RenderOutput};
pub use stages::{StageObserver, StageRecorder};
pub use weights::{RELEASED_AUDIO_TOKENS, SVD_DIR, WeightsError, WeightsLayout};
