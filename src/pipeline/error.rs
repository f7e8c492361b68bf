//! Everything that can stop a job, as one matchable enum.
//!
//! One policy for error sources: a wrapped error is kept as `#[source]` (or forwarded whole with
//! `#[error(transparent)]`) and never also printed in the message; a report walks the chain
//! (the manifest records it as the failure's causes).

use sonic_core::audio_conditioning::AudioConditioningError;
use sonic_core::models::clip::ClipError;
use sonic_core::models::rife::RifeError;
use sonic_core::models::unet::FaceMaskError;
use sonic_core::models::vae::VaeError;
use sonic_core::sampler::{SamplerError, SchedulerError};
use sonic_core::weights::LoadError;
use sonic_media::MediaError;
use sonic_storage::StorageError;

use super::component::Component;
use super::memory::{MemoryEstimate, human_bytes};
use super::params::ParamError;
use super::progress::Stage;
use super::weights::WeightsError;

/// Why a job (or loading the pipeline) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A generation parameter is out of range (checked before any work).
    #[error(transparent)]
    InvalidParameter(#[from] ParamError),
    /// The face detector found no face in the picture (supply a box or use the whole frame).
    #[error(
        "{name}: no face detected (set the face box, or use the whole picture as the face region)"
    )]
    NoFaceDetected {
        /// The picture's key or file name.
        name: String,
    },
    /// The audio is too short to give one video frame.
    #[error(
        "{name}: {seconds:.3} s of audio give no video frame (at least {min_seconds} s needed)"
    )]
    AudioTooShort {
        /// The audio's key or file name.
        name: String,
        /// Seconds of audio used.
        seconds: f64,
        /// Seconds needed for one frame.
        min_seconds: f64,
    },
    /// A picture or audio input could not be decoded or processed, or the video not encoded.
    #[error(transparent)]
    Media(MediaError),
    /// The video could not be encoded at the size the job asks for (checked before any model
    /// runs).
    #[error("{}", if *keep_resolution {
        "the video would have the picture's own size (keep_resolution), which cannot be encoded: \
         drop keep_resolution or use a smaller picture"
    } else {
        "the model size that min_resolution gives cannot be encoded: lower min_resolution"
    })]
    OutputSize {
        /// Whether the size is the picture's own (`keep_resolution`).
        keep_resolution: bool,
        /// The encoder's limit.
        #[source]
        source: MediaError,
    },
    /// The job's estimated peak memory is above the budget (checked before step 1).
    #[error(
        "the job needs an estimated {} at its peak ({}), above the memory budget of {}",
        human_bytes(estimate.total),
        estimate.peak_stage,
        human_bytes(*budget)
    )]
    MemoryBudget {
        /// The estimate.
        estimate: Box<MemoryEstimate>,
        /// The budget in bytes.
        budget: u64,
    },
    /// The job succeeded already (a [`Claim::Existing`](super::Claim::Existing) run); nothing
    /// was changed.
    #[error("job {job} succeeded already; nothing was changed")]
    AlreadySucceeded {
        /// `tenant/job`.
        job: String,
    },
    /// The job's video exists although its manifest does not say it succeeded (a run stopped
    /// between writing the video and its manifest); nothing was changed.
    #[error(
        "the video `{key}` exists already although the job did not record success; nothing was \
         changed (delete the video to render the job again)"
    )]
    VideoExists {
        /// The video's key.
        key: String,
    },
    /// Another process holds the job now (the [fence](super::JobControl::fence) was set): it
    /// stopped and wrote nothing more.
    #[error("job {job} is held by another process now; this run stopped and wrote nothing more")]
    Fenced {
        /// `tenant/job`.
        job: String,
    },
    /// The job was cancelled through its [`CancellationToken`](super::CancellationToken).
    #[error("cancelled during {stage}")]
    Cancelled {
        /// The stage that was running.
        stage: Stage,
    },
    /// A weights file is missing or a configuration unreadable.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A checkpoint did not load.
    #[error("loading {component}")]
    Load {
        /// The component.
        component: Component,
        /// The loader's error.
        #[source]
        source: LoadError,
    },
    /// The CLIP image encoder refused its input.
    #[error(transparent)]
    Clip(#[from] ClipError),
    /// The VAE refused its input.
    #[error(transparent)]
    Vae(#[from] VaeError),
    /// The audio conditioning failed.
    #[error(transparent)]
    Audio(#[from] AudioConditioningError),
    /// The schedule could not be built.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The denoising loop failed.
    #[error(transparent)]
    Sampler(SamplerError),
    /// The face mask is unusable.
    #[error(transparent)]
    FaceMask(#[from] FaceMaskError),
    /// RIFE refused a frame.
    #[error(transparent)]
    Rife(#[from] RifeError),
    /// Reading or writing storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A local file (the temporary video, a checkpoint being hashed) failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The compute backend could not be used.
    #[error(transparent)]
    Backend(#[from] sonic_backends::BackendError),
    /// The computation panicked or its thread was lost (a bug; the message says where).
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Whether running the job again may succeed: the store or a local file failed (network,
    /// timeout, disk), the device or the weights of this process failed, an internal error, or
    /// another process took the job over. `false` for what the job itself asks or holds (bad
    /// parameters, bad or faceless input, a missing input, over the memory budget, a size the
    /// encoder refuses, a job that succeeded) and for cancellation: a worker fails those at
    /// once instead of retrying them.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Storage(e) => !matches!(
                e,
                StorageError::InvalidId { .. }
                    | StorageError::InvalidKey { .. }
                    | StorageError::NotFound { .. }
                    | StorageError::AmbiguousInput { .. }
                    | StorageError::InvalidArgument { .. }
                    | StorageError::Manifest { .. }
            ),
            PipelineError::Io { .. }
            | PipelineError::Backend(_)
            | PipelineError::Weights(_)
            | PipelineError::Load { .. }
            | PipelineError::Internal(_)
            | PipelineError::Fenced { .. } => true,
            _ => false,
        }
    }
}

impl From<MediaError> for PipelineError {
    fn from(error: MediaError) -> Self {
        match error {
            MediaError::NoFaceDetected { name } => Self::NoFaceDetected { name },
            other => Self::Media(other),
        }
    }
}

impl From<SamplerError> for PipelineError {
    fn from(error: SamplerError) -> Self {
        match error {
            SamplerError::Cancelled { .. } => Self::Cancelled {
                stage: Stage::Denoise,
            },
            other => Self::Sampler(other),
        }
    }
}
