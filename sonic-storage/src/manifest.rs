//! The job manifest: the JSON record written beside a job's outputs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{JobId, JobRef, TenantId};
use crate::key::ObjectKey;
use crate::object::Sha256Digest;

/// The manifest format version this crate writes.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Recorded, not started.
    Created,
    /// A worker is generating.
    Running,
    /// The outputs are written.
    Succeeded,
    /// The job stopped with an error (see [`JobManifest::error`]).
    Failed,
    /// The job was cancelled before it finished ([`JobManifest::error`] says where).
    Cancelled,
}

/// One object a job read or wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ObjectRecord {
    /// What the object is to the job: `image`, `audio`, `video` ...
    pub role: String,
    /// The store's URL (inputs and outputs may live in different stores).
    pub store: String,
    /// The key in that store.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    /// The store's entity tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// The store's version id (versioned buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobFailure {
    /// The error's message.
    pub message: String,
    /// The messages of its sources, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

impl JobFailure {
    /// A failure with just a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// Records an error and its chain of sources.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        Self {
            message: error.to_string(),
            causes,
        }
    }
}

/// The record of one job, stored as JSON at `outputs/{tenant}/{job}/manifest.json`
/// ([`Storage::write_manifest`](crate::Storage::write_manifest)).
///
/// It says who asked for what, with which parameters and weights, what was read and written
/// (key, size, SHA-256, entity tag), how long each stage took and how the job ended.
///
/// ```
/// # use sonic_storage::{JobManifest, JobRef, JobStatus};
/// let mut manifest = JobManifest::new(JobRef::parse("acme", "j1")?);
/// manifest.parameters = serde_json::json!({ "steps": 25, "fps": 25, "dynamic_scale": 1.0 });
/// manifest.seed = Some(42);
/// manifest.mark_running();
/// manifest.record_timing("unet", std::time::Duration::from_millis(31_500));
/// manifest.mark_succeeded();
/// assert_eq!(manifest.status, JobStatus::Succeeded);
/// assert_eq!(manifest.timings["unet"], 31.5);
/// # Ok::<(), sonic_storage::StorageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobManifest {
    /// The format version ([`MANIFEST_SCHEMA_VERSION`] when written by this crate).
    pub schema_version: u32,
    /// The tenant.
    pub tenant: TenantId,
    /// The job.
    pub job: JobId,
    /// Where the job is.
    pub status: JobStatus,
    /// When the job was recorded.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Every object the job read.
    #[serde(default)]
    pub inputs: Vec<ObjectRecord>,
    /// Every object the job wrote.
    #[serde(default)]
    pub outputs: Vec<ObjectRecord>,
    /// The generation parameters, as the caller gave them.
    #[serde(default)]
    pub parameters: serde_json::Value,
    /// The random seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// SHA-256 of every checkpoint used, by name (`unet`, `audio2token` ...).
    #[serde(default)]
    pub checkpoints: BTreeMap<String, Sha256Digest>,
    /// Seconds spent per stage, by stage name.
    #[serde(default)]
    pub timings: BTreeMap<String, f64>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
}

impl JobManifest {
    /// A manifest for a job created now, in status [`JobStatus::Created`].
    pub fn new(job: JobRef) -> Self {
        Self {
            schema_version: MANIFEST_SCHEMA_VERSION,
            tenant: job.tenant,
            job: job.job,
            status: JobStatus::Created,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            parameters: serde_json::Value::Null,
            seed: None,
            checkpoints: BTreeMap::new(),
            timings: BTreeMap::new(),
            error: None,
        }
    }

    /// The job this manifest describes.
    pub fn job_ref(&self) -> JobRef {
        JobRef::new(self.tenant.clone(), self.job.clone())
    }

    /// Status [`JobStatus::Running`], started now.
    pub fn mark_running(&mut self) {
        self.status = JobStatus::Running;
        self.started_at = Some(Utc::now());
    }

    /// Status [`JobStatus::Succeeded`], finished now.
    pub fn mark_succeeded(&mut self) {
        self.status = JobStatus::Succeeded;
        self.finished_at = Some(Utc::now());
        self.error = None;
    }

    /// Status [`JobStatus::Failed`] with `failure`, finished now.
    pub fn mark_failed(&mut self, failure: JobFailure) {
        self.status = JobStatus::Failed;
        self.finished_at = Some(Utc::now());
        self.error = Some(failure);
    }

    /// Status [`JobStatus::Cancelled`], `failure` saying where, finished now.
    pub fn mark_cancelled(&mut self, failure: JobFailure) {
        self.status = JobStatus::Cancelled;
        self.finished_at = Some(Utc::now());
        self.error = Some(failure);
    }

    /// Adds `elapsed` to the time recorded for `stage`.
    pub fn record_timing(&mut self, stage: impl Into<String>, elapsed: Duration) {
        *self.timings.entry(stage.into()).or_default() += elapsed.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let mut m = JobManifest::new(JobRef::parse("acme", "j1").unwrap());
        m.checkpoints
            .insert("unet".into(), Sha256Digest::of(b"weights"));
        m.mark_failed(JobFailure::new("out of memory"));
        let value = serde_json::to_value(&m).unwrap();
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["tenant"], "acme");
        assert_eq!(value["job"], "j1");
        assert_eq!(value["status"], "failed");
        assert_eq!(value["error"]["message"], "out of memory");
        assert_eq!(
            value["checkpoints"]["unet"],
            Sha256Digest::of(b"weights").to_hex()
        );
        assert!(value.get("started_at").is_none());
        let back: JobManifest = serde_json::from_value(value).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn failure_keeps_the_chain() {
        let io = std::io::Error::other("disk full");
        let err = crate::StorageError::Io {
            path: "/tmp/x".into(),
            source: io,
        };
        let failure = JobFailure::from_error(&err);
        assert_eq!(failure.message, "local file `/tmp/x`");
        assert_eq!(failure.causes, vec!["disk full".to_owned()]);
    }
}
