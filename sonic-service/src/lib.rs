//! # sonic-service
//!
//! The queue layer of the sonic job service, on NATS JetStream: the job message, a submitter,
//! a job board (JetStream KV) and a worker loop that is generic over what a job does.
//!
//! ```text
//! back end ── Submitter::submit ──▶ stream SONIC_JOBS (work queue, dedup by Nats-Msg-Id)
//!                                        │ durable pull consumer `workers`, explicit ack
//!                                        ▼
//!                     Worker (one per device) ── JobHandler::run(delivery, lease)
//!                           │ Ok → AckSync   Permanent → Term   Transient → Nak(delay)
//!                           │ last attempt / poison → advisory on sonic.advisories.failed, Term
//!                           ▼
//!                     JobBoard (KV sonic_jobs): state, attempt, worker, lease, progress,
//!                     written with compare-and-set by the handler
//! ```
//!
//! - [`JobMessage`]: the versioned JSON schema of a job (tenant, job, the two inputs as object
//!   keys or signed URLs, opaque parameters, deadline, submission time), validated on decode.
//! - [`Queue::connect`]: creates or updates the stream, its consumer, the advisory stream and
//!   the KV bucket (idempotent). [`QueueConfig`] documents every default.
//! - [`Submitter::submit`]: publishes a job once; a repeated submission within the duplicate
//!   window is reported as [`Submitted::duplicate`].
//! - [`JobBoard`]: one KV entry per job ([`JobState`]), `create` / `get` / compare-and-set
//!   `update` (a stale revision is [`ServiceError::Stale`]) / `list` / `watch` /
//!   `request_cancel`.
//! - [`Worker`] and [`JobHandler`]: fetch one job only when idle, run it under a [`Lease`]
//!   renewed with `AckKind::Progress`, settle it by the handler's [`JobError`], stop gracefully
//!   on a [`CancellationToken`].
//!
//! ## What the queue guarantees, and what it does not
//!
//! JetStream delivers a job at least once: it redelivers when the ack wait runs out (a crashed
//! or hung worker), not when a worker disconnects; a late acknowledgement of an old attempt
//! may land on a newer delivery. So the *store* decides which attempt wins: handlers write the
//! job's record with compare-and-set ([`JobBoard::update`]) and its video create-only.
//!
//! A job whose last allowed delivery times out (its worker hung or died) is not redelivered;
//! the server publishes `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}` for it,
//! and a [`Reaper`] (run one in every worker process) records it failed and publishes its
//! [`FailureAdvisory`].
//!
//! Writes are fenced: [`PipelineHandler`] asks, before each manifest write and the video
//! upload, that its lease still holds ([`Lease::keep_alive`]) and that the board still names
//! it, so a worker paused past its lease writes nothing when it resumes. [`Metrics`] counts
//! what the workers of a process do, in Prometheus' text format.
//!
//! Rolling upgrades: a worker terminates a message of a schema version it does not read (as
//! poison), so upgrade workers before submitters.
//!
//! ## Cargo features
//!
//! - `testing`: `testing::NatsServer`, a throw-away `nats-server -js` for tests.
#![deny(missing_docs)]

mod board;
mod config;
mod download;
mod error;
mod message;
pub mod metrics;
mod queue;
mod reaper;
mod render;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use board::{JobBoard, JobEntry, JobPhase, JobState};
pub use config::QueueConfig;
pub use download::{DownloadError, MAX_DOWNLOAD_BYTES};
pub use error::{BoxError, Result, ServiceError};
pub use message::{InputRef, InputUrl, JobInputs, JobMessage, MAX_URL_LEN, SCHEMA_VERSION};
pub use metrics::Metrics;
pub use queue::{Queue, Submitted, Submitter};
pub use reaper::{Reaped, Reaper};
pub use render::{
    PipelineHandler, Submission, UploadInput, UrlInputs, record_failure, submit_job,
    submit_stored_job,
};
pub use worker::{
    AdvisoryKind, Disposition, FailureAdvisory, JobDelivery, JobError, JobHandler, JobOutcome,
    Lease, Worker, WorkerStats,
};

/// The NATS client this crate is built on, re-exported so callers can build their own
/// [`Client`](async_nats::Client) (credentials, TLS) for [`Queue::with_client`] and name its
/// types ([`StorageType`](async_nats::jetstream::stream::StorageType)).
pub use async_nats;
/// The ids and keys of the job store.
pub use sonic_storage::{JobId, JobRef, ObjectKey, TenantId};
/// The stop signal of [`Worker::run`].
pub use tokio_util::sync::CancellationToken;
