//! The error type of every fallible operation of this crate.

use sonic_storage::{JobRef, StorageError};

/// `Result` with [`ServiceError`] as the default error.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A boxed error from the NATS client (connection, JetStream API, KV).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while submitting, tracking or working on jobs.
///
/// Each variant says what was refused or which operation failed, and where (the field of the
/// message, the job, the NATS operation); the underlying error is kept as the
/// [source](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A document (a job message, a job state, an advisory) is not the JSON it should be: not
    /// JSON at all, a missing field, a field of the wrong type, an unknown field.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being decoded (`"job message"`, `"job state"` ...).
        what: &'static str,
        /// The JSON error (it carries the line and column, or the field).
        #[source]
        source: serde_json::Error,
    },

    /// A document declares a schema version this build does not read (or none at all).
    #[error("{what} has schema_version {found}; this build reads version {supported}")]
    UnsupportedSchemaVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version found in the document (as written, e.g. `2`, `"1"`, `null`).
        found: String,
        /// The only version this build reads.
        supported: u32,
    },

    /// A field of a job message holds an invalid id or object key (a key that would leave its
    /// store's prefix, an id with a `/` ...).
    #[error("invalid `{field}` in the job message: {source}")]
    InvalidField {
        /// The field's path in the message (`"tenant"`, `"inputs.image.key"` ...).
        field: &'static str,
        /// Why sonic-storage refused it.
        #[source]
        source: StorageError,
    },

    /// A field of a job message breaks a rule of the message itself (a URL that is not
    /// `http(s)`, a deadline before the submission time ...).
    #[error("invalid `{field}` in the job message: {reason}")]
    InvalidMessage {
        /// The field's path in the message.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A [`QueueConfig`](crate::QueueConfig) value is unusable.
    #[error("invalid queue configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A NATS or JetStream operation failed (connection refused, timeout, an API error from
    /// the server ...).
    #[error("NATS: {operation} failed: {source}")]
    Nats {
        /// What was being done (`"connect to nats://127.0.0.1:4222"`, `"create stream SONIC_JOBS"` ...).
        operation: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// A compare-and-set write of a job's board entry was refused: the entry changed since
    /// `expected_revision` was read (another worker, a cancel request, a newer attempt).
    #[error(
        "job {job}: board entry changed since revision {expected_revision} (stale write refused)"
    )]
    Stale {
        /// The job.
        job: JobRef,
        /// The revision the writer expected to replace.
        expected_revision: u64,
    },

    /// [`submit_job`](crate::submit_job): the job exists and finished; nothing was changed.
    #[error("job {job} exists and ended ({status}); nothing was changed (choose another job id)")]
    Finished {
        /// The job.
        job: JobRef,
        /// Its manifest's status.
        status: sonic_storage::JobStatus,
    },

    /// The job store failed.
    #[error("the store of job {job}")]
    Storage {
        /// The job.
        job: JobRef,
        /// The store's error.
        #[source]
        source: Box<sonic_storage::StorageError>,
    },

    /// [`JobBoard::create`](crate::JobBoard::create) found an entry for the job already.
    #[error("job {job} is already on the board")]
    AlreadyExists {
        /// The job.
        job: JobRef,
    },

    /// The job has no entry on the board.
    #[error("job {job} is not on the board")]
    NotFound {
        /// The job.
        job: JobRef,
    },

    /// [`Lease::renew`](crate::Lease::renew) was called after the lease ran out, or after the
    /// worker settled the delivery or handed it back: the queue may have handed the job to
    /// another worker already, so this attempt should stop.
    #[error("job {job}: the lease of attempt {attempt} is over (since {expired_at})")]
    LeaseExpired {
        /// The job.
        job: JobRef,
        /// The attempt that held the lease.
        attempt: u32,
        /// When it ran out (local estimate, never later than the server's) or was released.
        expired_at: chrono::DateTime<chrono::Utc>,
    },
}

impl ServiceError {
    /// A [`ServiceError::Nats`] for `operation`.
    pub(crate) fn nats(operation: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ServiceError::Nats {
            operation: operation.into(),
            source: source.into(),
        }
    }
}
