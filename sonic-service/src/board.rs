//! The job board: one JetStream KV entry per job, written with compare-and-set.

use std::fmt;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sonic_storage::{JobId, JobRef, TenantId};

use crate::config::{decode_token, encode_token};
use crate::error::{Result, ServiceError};

/// How many times [`JobBoard::request_cancel`] retries when the entry changes under it.
const CANCEL_RETRIES: usize = 32;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Submitted, not yet taken by a worker (or handed back, or waiting for a retry).
    Queued,
    /// A worker holds it.
    Running,
    /// Done: the video exists.
    Succeeded,
    /// Given up for good.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobPhase {
    /// `true` for `Succeeded`, `Failed` and `Cancelled`: nothing will change the job any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled
        )
    }
}

impl fmt::Display for JobPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobPhase::Queued => "queued",
            JobPhase::Running => "running",
            JobPhase::Succeeded => "succeeded",
            JobPhase::Failed => "failed",
            JobPhase::Cancelled => "cancelled",
        })
    }
}

/// One job's entry on the board, stored as JSON. Absent optional fields read as `None`
/// (`false` for `cancel_requested`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Where the job is.
    pub state: JobPhase,
    /// The attempt (delivery count) that wrote this entry; 0 before any worker took it.
    #[serde(default)]
    pub attempt: u32,
    /// The worker that holds (or last held) the job.
    #[serde(default)]
    pub worker: Option<String>,
    /// Until when that worker's lease runs, unless renewed.
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// The stage the job is in (`download`, `denoise`, `encode`, `upload` ...).
    #[serde(default)]
    pub stage: Option<String>,
    /// Steps done in the stage.
    #[serde(default)]
    pub step: Option<u32>,
    /// Steps in the stage.
    #[serde(default)]
    pub total: Option<u32>,
    /// Estimated seconds left.
    #[serde(default)]
    pub eta_secs: Option<f64>,
    /// When this entry was written.
    pub updated_at: DateTime<Utc>,
    /// What went wrong (for `Failed`, or the last transient error).
    #[serde(default)]
    pub error: Option<String>,
    /// Someone asked for the job to stop ([`JobBoard::request_cancel`]); the worker stops at
    /// its next window and records `Cancelled`.
    #[serde(default)]
    pub cancel_requested: bool,
}

impl JobState {
    /// A freshly submitted job: `Queued`, attempt 0, written now.
    pub fn queued() -> Self {
        Self {
            state: JobPhase::Queued,
            attempt: 0,
            worker: None,
            lease_until: None,
            stage: None,
            step: None,
            total: None,
            eta_secs: None,
            updated_at: Utc::now(),
            error: None,
            cancel_requested: false,
        }
    }

    /// `true` if nothing will change the job any more.
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }

    /// This state moved to `phase` with `error`, written now, without a lease or progress
    /// (attempt and worker kept): how a delivery leaves the job when it ends or hands it back.
    pub fn settled(self, phase: JobPhase, error: Option<String>) -> Self {
        Self {
            state: phase,
            lease_until: None,
            stage: None,
            step: None,
            total: None,
            eta_secs: None,
            updated_at: Utc::now(),
            error,
            ..self
        }
    }

    /// Sets `updated_at` to now.
    pub fn touch(&mut self) {
        self.updated_at = Utc::now();
    }

    fn to_json(&self) -> Result<bytes::Bytes> {
        serde_json::to_vec(self)
            .map(bytes::Bytes::from)
            .map_err(|source| ServiceError::Malformed {
                what: "job state",
                source,
            })
    }

    fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| ServiceError::Malformed {
            what: "job state",
            source,
        })
    }
}

/// One entry of [`JobBoard::list`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobEntry {
    /// The job.
    pub job: JobRef,
    /// Its state.
    pub state: JobState,
    /// The revision to pass to [`JobBoard::update`].
    pub revision: u64,
}

/// The job board: a JetStream KV bucket (default `sonic_jobs`) with one entry per job.
///
/// **Keys.** `{tenant}.{job}`, with every `.` inside an id written `=` (see
/// [`JobBoard::key_for`]): KV keys allow `[-/_=.A-Za-z0-9]` and use `.` to separate tokens,
/// ids allow `[-_.A-Za-z0-9]` and never contain `=`, so the encoding is injective, reversible
/// ([`JobBoard::parse_key`]) and every key has exactly two tokens (tenant `a.b`, job `c` is
/// `a=b.c`; tenant `a`, job `b.c` is `a.b=c`).
///
/// **Writes.** [`JobBoard::create`] only creates; [`JobBoard::update`] is a compare-and-set on
/// the revision read with [`JobBoard::get`]: if anything wrote the entry since, the write is
/// refused with [`ServiceError::Stale`]. That is how a stale worker (paused past its lease)
/// is kept from overwriting a newer attempt's state.
///
/// **Cancellation.** [`JobBoard::request_cancel`] sets `cancel_requested` in the entry itself
/// (a compare-and-set, retried on conflict), so the request and the worker's progress writes
/// are ordered: a worker whose next progress write fails with `Stale` re-reads the entry and
/// sees the request.
#[derive(Clone)]
pub struct JobBoard {
    store: kv::Store,
}

impl fmt::Debug for JobBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobBoard").finish_non_exhaustive()
    }
}

impl JobBoard {
    pub(crate) fn new(store: kv::Store) -> Self {
        Self { store }
    }

    /// The KV key of `job` (see the type's documentation).
    pub fn key_for(job: &JobRef) -> String {
        format!(
            "{}.{}",
            encode_token(job.tenant.as_str()),
            encode_token(job.job.as_str())
        )
    }

    /// The job a KV key names, if it is a key this board writes.
    pub fn parse_key(key: &str) -> Option<JobRef> {
        let (tenant, job) = key.split_once('.')?;
        if job.contains('.') {
            return None;
        }
        let job = JobRef::new(
            TenantId::new(decode_token(tenant)).ok()?,
            JobId::new(decode_token(job)).ok()?,
        );
        (Self::key_for(&job) == key).then_some(job)
    }

    fn nats(job: &JobRef, what: &str, err: impl Into<crate::error::BoxError>) -> ServiceError {
        ServiceError::nats(format!("{what} board entry of job {job}"), err)
    }

    /// Creates the job's entry; [`ServiceError::AlreadyExists`] if it has one. Returns the new
    /// revision.
    pub async fn create(&self, job: &JobRef, state: &JobState) -> Result<u64> {
        match self
            .store
            .create(Self::key_for(job), state.to_json()?)
            .await
        {
            Ok(revision) => Ok(revision),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(ServiceError::AlreadyExists { job: job.clone() })
            }
            Err(err) => Err(Self::nats(job, "create", err)),
        }
    }

    /// The job's state and its revision; [`ServiceError::NotFound`] if it has no entry (or it
    /// was deleted).
    pub async fn get(&self, job: &JobRef) -> Result<(JobState, u64)> {
        match self
            .store
            .entry(Self::key_for(job))
            .await
            .map_err(|err| Self::nats(job, "read", err))?
        {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok((JobState::from_json(&entry.value)?, entry.revision))
            }
            _ => Err(ServiceError::NotFound { job: job.clone() }),
        }
    }

    /// Replaces the job's state if its revision is still `expected_revision`; otherwise
    /// [`ServiceError::Stale`] and nothing is written. Returns the new revision.
    pub async fn update(
        &self,
        job: &JobRef,
        state: &JobState,
        expected_revision: u64,
    ) -> Result<u64> {
        match self
            .store
            .update(Self::key_for(job), state.to_json()?, expected_revision)
            .await
        {
            Ok(revision) => Ok(revision),
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(ServiceError::Stale {
                    job: job.clone(),
                    expected_revision,
                })
            }
            Err(err) => Err(Self::nats(job, "update", err)),
        }
    }

    /// Every job of `tenant` on the board, in key order. (It reads the bucket's key list and
    /// then each of the tenant's entries; an entry deleted in between is left out.)
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<JobEntry>> {
        let prefix = format!("{}.", encode_token(tenant.as_str()));
        let keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|err| ServiceError::nats(format!("list board keys of {tenant}"), err))?
            .try_collect()
            .await
            .map_err(|err| ServiceError::nats(format!("list board keys of {tenant}"), err))?;
        let mut jobs: Vec<JobRef> = keys
            .iter()
            .filter(|key| key.starts_with(&prefix))
            .filter_map(|key| Self::parse_key(key))
            .filter(|job| &job.tenant == tenant)
            .collect();
        jobs.sort();
        jobs.dedup();
        let mut entries = Vec::with_capacity(jobs.len());
        for job in jobs {
            match self.get(&job).await {
                Ok((state, revision)) => entries.push(JobEntry {
                    job,
                    state,
                    revision,
                }),
                Err(ServiceError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(entries)
    }

    /// The job's state now (if it has an entry) and then at every change, with revisions.
    /// Deletions are skipped. The stream ends only if the connection does.
    pub async fn watch(&self, job: &JobRef) -> Result<BoxStream<'static, Result<(JobState, u64)>>> {
        let watch = self
            .store
            .watch_with_history(Self::key_for(job))
            .await
            .map_err(|err| Self::nats(job, "watch", err))?;
        let job = job.clone();
        Ok(watch
            .filter_map(move |entry| {
                let job = job.clone();
                async move {
                    match entry {
                        Ok(entry) if entry.operation == kv::Operation::Put => Some(
                            JobState::from_json(&entry.value).map(|state| (state, entry.revision)),
                        ),
                        Ok(_) => None,
                        Err(err) => Some(Err(Self::nats(&job, "watch", err))),
                    }
                }
            })
            .boxed())
    }

    /// Asks for the job to be cancelled: sets `cancel_requested` (and `updated_at`) with a
    /// compare-and-set, retried if the entry changes meanwhile. A job that is already terminal,
    /// or already asked, is left as it is. Returns the entry as it now stands: check
    /// [`JobState::is_terminal`] to tell "too late" from "requested".
    pub async fn request_cancel(&self, job: &JobRef) -> Result<(JobState, u64)> {
        let mut last_stale = None;
        for _ in 0..CANCEL_RETRIES {
            let (mut state, revision) = self.get(job).await?;
            if state.is_terminal() || state.cancel_requested {
                return Ok((state, revision));
            }
            state.cancel_requested = true;
            state.touch();
            match self.update(job, &state, revision).await {
                Ok(revision) => {
                    tracing::debug!(%job, revision, "cancellation requested");
                    return Ok((state, revision));
                }
                Err(err @ ServiceError::Stale { .. }) => last_stale = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_stale.unwrap_or(ServiceError::Stale {
            job: job.clone(),
            expected_revision: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_injective_and_reversible() {
        let pairs = [
            ("a.b", "c"),
            ("a", "b.c"),
            ("acme", "job-1"),
            ("x_y", "v1.2."),
        ];
        let mut keys = std::collections::HashSet::new();
        for (tenant, job) in pairs {
            let job = JobRef::parse(tenant, job).unwrap();
            let key = JobBoard::key_for(&job);
            assert_eq!(key.split('.').count(), 2, "{key}");
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)),
                "{key}"
            );
            assert_eq!(JobBoard::parse_key(&key), Some(job));
            assert!(keys.insert(key));
        }
        assert_eq!(
            JobBoard::key_for(&JobRef::parse("a.b", "c").unwrap()),
            "a=b.c"
        );
        assert_eq!(JobBoard::parse_key("a.b.c"), None);
        assert_eq!(JobBoard::parse_key("nodot"), None);
        assert_eq!(JobBoard::parse_key("a==b.c"), None);
    }

    #[test]
    fn state_json() {
        let mut state = JobState::queued();
        state.eta_secs = Some(1.144014537);
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""state":"queued""#), "{json}");
        let back = JobState::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, state);
        let minimal: JobState =
            serde_json::from_str(r#"{"state":"running","updated_at":"2026-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(minimal.state, JobPhase::Running);
        assert!(!minimal.cancel_requested);
        assert!(JobPhase::Cancelled.is_terminal() && !JobPhase::Queued.is_terminal());
    }
}
