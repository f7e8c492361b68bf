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

impl JobStatus {
    /// The status as the manifest spells it: `created`, `running`, `succeeded`, `failed`,
    /// `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Which run of the job wrote this record: 1 for the first, one more for each resumed run
    /// (manifests written before this field read as 1).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
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
    /// What the user should know about the result, in words (for example that the audio was
    /// cut at the longest duration a job takes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn first_attempt() -> u32 {
    1
}

impl JobManifest {
    /// A manifest for a job created now, in status [`JobStatus::Created`].
    pub fn new(job: JobRef) -> Self {
        Self {
            schema_version: MANIFEST_SCHEMA_VERSION,
            tenant: job.tenant,
            job: job.job,
            status: JobStatus::Created,
            attempt: 1,
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
            warnings: Vec::new(),
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

    /// Starts the next run of a job that did not succeed (it was left `running` by a process
    /// that died, failed, or was cancelled): [`JobManifest::attempt`] counts up, the status is
    /// [`JobStatus::Running`], started now, and the previous run's error, outputs, timings and
    /// warnings are cleared (the inputs, parameters and creation time stay).
    pub fn mark_resumed(&mut self) {
        self.attempt = self.attempt.saturating_add(1);
        self.error = None;
        self.finished_at = None;
        self.outputs.clear();
        self.timings.clear();
        self.warnings.clear();
        self.mark_running();
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

    fn any_float() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        NORMAL | SUBNORMAL | ZERO | POSITIVE | NEGATIVE
    }

    fn any_time() -> impl proptest::strategy::Strategy<Value = DateTime<Utc>> {
        use proptest::strategy::Strategy;
        (0i64..4_102_444_800, 0u32..1_000_000_000)
            .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
    }

    fn any_record() -> impl proptest::strategy::Strategy<Value = ObjectRecord> {
        use proptest::prelude::*;
        (
            "\\PC{0,12}",
            "\\PC{0,24}",
            "[a-z0-9._-]{1,8}(/[a-z0-9_-]{1,8}){0,3}",
            any::<u64>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of("\\PC{0,20}"),
            proptest::option::of("\\PC{0,20}"),
            proptest::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
        )
            .prop_filter_map(
                "a valid key",
                |(role, store, key, size, sha, e_tag, version, content_type)| {
                    Some(ObjectRecord {
                        role,
                        store,
                        key: ObjectKey::new(key).ok()?,
                        size,
                        sha256: sha.map(Sha256Digest),
                        e_tag,
                        version,
                        content_type,
                    })
                },
            )
    }

    proptest::proptest! {
        /// Every field of a random manifest reads back bit-identical, floats included (the
        /// timings and float parameters: serde_json's `float_roundtrip`).
        #[test]
        fn every_field_reads_back_bit_identically(
            status in 0usize..5,
            attempt in 1u32..,
            created_at in any_time(),
            started_at in proptest::option::of(any_time()),
            finished_at in proptest::option::of(any_time()),
            inputs in proptest::collection::vec(any_record(), 0..3),
            outputs in proptest::collection::vec(any_record(), 0..3),
            parameters in proptest::collection::btree_map("[a-z_]{1,10}", any_float(), 0..6),
            seed in proptest::option::of(proptest::prelude::any::<u64>()),
            checkpoints in proptest::collection::btree_map("[a-z0-9_]{1,10}", proptest::prelude::any::<[u8; 32]>(), 0..4),
            timings in proptest::collection::btree_map("\\PC{1,10}", any_float(), 0..6),
            error in proptest::option::of(("\\PC{0,40}", proptest::collection::vec("\\PC{0,20}", 0..3))),
            warnings in proptest::collection::vec("\\PC{0,40}", 0..3),
        ) {
            let mut written = JobManifest::new(JobRef::parse("tenant-1", "job.2_x").unwrap());
            written.status = [
                JobStatus::Created,
                JobStatus::Running,
                JobStatus::Succeeded,
                JobStatus::Failed,
                JobStatus::Cancelled,
            ][status];
            written.attempt = attempt;
            written.created_at = created_at;
            written.started_at = started_at;
            written.finished_at = finished_at;
            written.inputs = inputs;
            written.outputs = outputs;
            written.parameters = serde_json::to_value(&parameters).unwrap();
            written.seed = seed;
            written.checkpoints = checkpoints.into_iter().map(|(k, v)| (k, Sha256Digest(v))).collect();
            written.timings = timings;
            written.error = error.map(|(message, causes)| JobFailure { message, causes });
            written.warnings = warnings;

            let json = serde_json::to_vec_pretty(&written).unwrap();
            let read: JobManifest = serde_json::from_slice(&json).unwrap();
            for (stage, value) in &written.timings {
                proptest::prop_assert_eq!(value.to_bits(), read.timings[stage].to_bits());
            }
            for (name, value) in &parameters {
                proptest::prop_assert_eq!(
                    value.to_bits(),
                    read.parameters[name].as_f64().unwrap().to_bits(),
                    "{}", name
                );
            }
            proptest::prop_assert_eq!(&read, &written);
            // And writing it again gives the same bytes.
            proptest::prop_assert_eq!(serde_json::to_vec_pretty(&read).unwrap(), json);
        }
    }
}
