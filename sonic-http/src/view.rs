//! The JSON bodies of the API: requests and answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sonic_service::{JobPhase, JobState};
use utoipa::ToSchema;

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job id.
    pub job: String,
    /// `awaiting_upload`, `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Which delivery of the job runs or ran (0 before the first).
    pub attempt: u32,
    /// The stage a worker reports (`denoise`, `decode` ...).
    pub stage: Option<String>,
    /// Steps done in that stage.
    pub step: Option<u32>,
    /// Steps of that stage.
    pub total: Option<u32>,
    /// `step / total`, 0 to 1.
    pub progress: Option<f64>,
    /// Seconds left, as the worker estimates them.
    pub eta_secs: Option<f64>,
    /// Why the job failed or was cancelled.
    pub error: Option<String>,
    /// Whether a cancellation was asked for.
    pub cancel_requested: bool,
    /// When the job was recorded.
    pub created_at: Option<DateTime<Utc>>,
    /// When its state last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// Seconds per stage (once finished).
    pub timings: BTreeMap<String, f64>,
    /// The video (once succeeded).
    pub video: Option<VideoView>,
}

/// A finished job's video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoView {
    /// A signed GET link (`null` on a store that cannot sign: a local folder).
    pub url: Option<String>,
    /// When the link stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// The object's key in the output store.
    pub key: String,
    /// SHA-256 of the MP4, as the manifest records it.
    pub sha256: Option<String>,
    /// Its size in bytes.
    pub bytes: Option<u64>,
}

/// The state name of a board phase.
pub(crate) fn phase_name(phase: JobPhase) -> String {
    phase.to_string()
}

impl JobView {
    /// A job known only by its board entry.
    pub(crate) fn from_state(job: &str, state: &JobState) -> Self {
        let progress = match (state.step, state.total) {
            (Some(step), Some(total)) if total > 0 => {
                Some((f64::from(step) / f64::from(total)).clamp(0.0, 1.0))
            }
            _ => None,
        };
        Self {
            job: job.to_owned(),
            state: phase_name(state.state),
            attempt: state.attempt,
            stage: state.stage.clone(),
            step: state.step,
            total: state.total,
            progress,
            eta_secs: state.eta_secs.filter(|eta| eta.is_finite()),
            error: state.error.clone(),
            cancel_requested: state.cancel_requested,
            created_at: None,
            updated_at: Some(state.updated_at),
            timings: BTreeMap::new(),
            video: None,
        }
    }

    /// A job whose inputs the client has not finished uploading.
    pub(crate) fn awaiting_upload(job: &str, created_at: DateTime<Utc>) -> Self {
        Self {
            job: job.to_owned(),
            state: "awaiting_upload".to_owned(),
            attempt: 0,
            stage: None,
            step: None,
            total: None,
            progress: None,
            eta_secs: None,
            error: None,
            cancel_requested: false,
            created_at: Some(created_at),
            updated_at: Some(created_at),
            timings: BTreeMap::new(),
            video: None,
        }
    }

    /// Whether nothing will change the job any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// One page of `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The tenant's jobs, by id.
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page (`null`: this was the last).
    pub next: Option<String>,
}

/// `POST /v1/uploads`: presigned URLs to upload a job's inputs straight to the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The portrait's file name (its extension says the format: png, jpg, jpeg, webp).
    pub image: String,
    /// The speech's file name (wav, mp3, flac, m4a, ogg).
    pub audio: String,
    /// The job id to use (letters, digits, `-`, `_`, `.`); the server picks one if absent.
    #[serde(default)]
    pub job: Option<String>,
    /// Start the job as soon as both files are in the bucket (an upload-complete hook or a
    /// bucket notification), with these parameters, instead of waiting for `POST /v1/jobs`.
    #[serde(default)]
    pub start_on_upload: bool,
    /// The generation parameters, for `start_on_upload` (checked now).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
}

/// One presigned upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignedUpload {
    /// The key the file goes to.
    pub key: String,
    /// `PUT` the file's bytes here.
    pub url: String,
    /// The HTTP method (`PUT`).
    pub method: String,
    /// The content type to send.
    pub content_type: String,
}

/// The answer to `POST /v1/uploads`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    /// The job the uploads belong to.
    pub job: String,
    /// Where to upload the portrait.
    pub image: SignedUpload,
    /// Where to upload the speech.
    pub audio: SignedUpload,
    /// When the URLs stop working.
    pub expires_at: DateTime<Utc>,
    /// Whether the job starts by itself once both files are there.
    pub start_on_upload: bool,
}

/// `POST /v1/jobs` as JSON: start a job whose inputs were uploaded to presigned URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The job id `POST /v1/uploads` answered.
    pub job: String,
    /// The generation parameters (see `GenerationParams`; unknown names are refused).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
}

/// `POST /v1/hooks/upload-complete`: the client says its uploads are done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadComplete {
    /// The job (from `POST /v1/uploads` with `start_on_upload`).
    pub job: String,
}

/// The record of a presigned upload, `outputs/{tenant}/{job}/upload.json`: it claims the job
/// id and keeps what the job starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UploadSession {
    pub schema_version: u32,
    pub created_at: DateTime<Utc>,
    pub image_ext: String,
    pub audio_ext: String,
    pub start_on_upload: bool,
    #[serde(default)]
    pub parameters: serde_json::Value,
}

/// The name of the upload record among a job's outputs.
pub(crate) const UPLOAD_RECORD: &str = "upload.json";
