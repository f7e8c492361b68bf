//! The worker loop: take one job when idle, run a handler on it under a lease, settle it.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sonic_storage::{JobId, JobRef, TenantId};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{BoxError, Result, ServiceError};
use crate::message::{JobMessage, SCHEMA_VERSION};
use crate::metrics::Metrics;
use crate::queue::Queue;

/// The longest pause between retries after the loop itself fails (fetch or acknowledgement).
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// How a handler's run ended, if not in success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Retrying cannot help (bad input, bad parameters, no face): the message is terminated at
    /// once and never redelivered.
    #[error("permanent failure: {}", error_chain(.0.as_ref()))]
    Permanent(BoxError),
    /// Retrying may help (store unreachable): the message is handed back with a delay
    /// ([`QueueConfig::retry_delay`](crate::QueueConfig::retry_delay)); on the last allowed
    /// delivery a [`FailureAdvisory`] is published and the message terminated.
    #[error("transient failure: {}", error_chain(.0.as_ref()))]
    Transient(BoxError),
    /// The job was cancelled on request: the message is terminated.
    #[error("cancelled")]
    Cancelled,
}

impl JobError {
    /// A [`JobError::Permanent`].
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        JobError::Permanent(error.into())
    }

    /// A [`JobError::Transient`].
    pub fn transient(error: impl Into<BoxError>) -> Self {
        JobError::Transient(error.into())
    }
}

/// `error: source: source ...`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let next_text = next.to_string();
        if !text.ends_with(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        source = next.source();
    }
    text
}

/// What a worker does with a job.
///
/// Implement it with an `async fn`:
///
/// ```
/// use sonic_service::{JobDelivery, JobError, JobHandler, Lease};
///
/// struct Render;
///
/// impl JobHandler for Render {
///     async fn run(&self, delivery: &JobDelivery, lease: &Lease) -> Result<(), JobError> {
///         for _step in 0..25 {
///             // ... one denoising step ...
///             lease.renew().await.map_err(JobError::transient)?;
///         }
///         let _ = delivery.message();
///         Ok(())
///     }
/// }
/// ```
///
/// Returning `Ok` acknowledges the message; see [`JobError`] for the rest. The handler should
/// call [`Lease::renew`] as work advances (at least once per
/// [`QueueConfig::ack_wait`](crate::QueueConfig::ack_wait)), and may watch
/// [`Lease::stopping`] to finish early when the worker is asked to stop. If the worker stops
/// with the job in hand and the grace period runs out, the handler's future is dropped: work it
/// spawned elsewhere is not stopped by that, and must not commit results without checking the
/// job store: from the hand-back on, [`Lease::renew`] refuses. Then
/// [`handed_back`](JobHandler::handed_back) is called, so the handler can release the job's
/// record for the next worker.
pub trait JobHandler: Send + Sync {
    /// Runs one delivery of a job.
    fn run(
        &self,
        delivery: &JobDelivery,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called after a stopping worker handed this delivery back to the queue (the lease is
    /// released; another worker may have it already). Default: nothing.
    fn handed_back(
        &self,
        delivery: &JobDelivery,
        lease: &Lease,
    ) -> impl Future<Output = ()> + Send {
        let _ = (delivery, lease);
        async {}
    }
}

impl<H: JobHandler> JobHandler for Arc<H> {
    fn run(
        &self,
        delivery: &JobDelivery,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        (**self).run(delivery, lease)
    }

    fn handed_back(
        &self,
        delivery: &JobDelivery,
        lease: &Lease,
    ) -> impl Future<Output = ()> + Send {
        (**self).handed_back(delivery, lease)
    }
}

/// One delivery of a job: the decoded message and where it stands among its deliveries.
#[derive(Debug, Clone)]
pub struct JobDelivery {
    message: JobMessage,
    attempt: u32,
    max_deliveries: u32,
    stream_sequence: u64,
    published: DateTime<Utc>,
}

impl JobDelivery {
    /// The job message.
    pub fn message(&self) -> &JobMessage {
        &self.message
    }

    /// The job.
    pub fn job(&self) -> JobRef {
        self.message.job_ref()
    }

    /// The attempt number: the server's delivery count of this message, from 1. A `Nak`, an
    /// ack wait that ran out and a hand-back each count.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `true` if the message was delivered before (to this or another worker).
    pub fn is_redelivery(&self) -> bool {
        self.attempt > 1
    }

    /// `true` if this is the last delivery the queue allows
    /// ([`QueueConfig::max_deliveries`](crate::QueueConfig::max_deliveries)).
    pub fn is_final_attempt(&self) -> bool {
        self.attempt >= self.max_deliveries
    }

    /// The deliveries the queue allows.
    pub fn max_deliveries(&self) -> u32 {
        self.max_deliveries
    }

    /// The message's stream sequence (the same for every delivery of it).
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// When the stream stored the message.
    pub fn published(&self) -> DateTime<Utc> {
        self.published
    }
}

/// The worker's hold on one delivery: the server redelivers the message to someone else
/// unless the lease is renewed within each ack wait.
#[derive(Clone)]
pub struct Lease {
    inner: Arc<LeaseInner>,
}

struct LeaseInner {
    message: jetstream::Message,
    job: JobRef,
    attempt: u32,
    worker: String,
    ack_wait: Duration,
    /// The lease's end: monotonic (for checks) and wall clock (for job records).
    expires: Mutex<(Instant, DateTime<Utc>)>,
    stopping: CancellationToken,
    /// Set once the delivery is settled or handed back: no renewal after that.
    released: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("job", &self.inner.job)
            .field("attempt", &self.inner.attempt)
            .field("worker", &self.inner.worker)
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

fn wall_clock_after(duration: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl Lease {
    fn new(
        message: jetstream::Message,
        job: JobRef,
        attempt: u32,
        worker: String,
        ack_wait: Duration,
        stopping: CancellationToken,
    ) -> Self {
        // The server started the ack wait when it sent the message, a little before now.
        let expires = (Instant::now() + ack_wait, wall_clock_after(ack_wait));
        Self {
            inner: Arc::new(LeaseInner {
                message,
                job,
                attempt,
                worker,
                ack_wait,
                expires: Mutex::new(expires),
                stopping,
                released: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn expires(&self) -> (Instant, DateTime<Utc>) {
        *self
            .inner
            .expires
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Extends the lease by another ack wait (`AckKind::Progress`, confirmed by the server) and
    /// returns its new end. After the lease ran out it refuses with
    /// [`ServiceError::LeaseExpired`] and sends nothing: the job may belong to another attempt
    /// by now, so this one should stop.
    pub async fn renew(&self) -> Result<DateTime<Utc>> {
        let (deadline, expired_at) = self.expires();
        let sent = Instant::now();
        if sent >= deadline || self.is_released() {
            return Err(ServiceError::LeaseExpired {
                job: self.inner.job.clone(),
                attempt: self.inner.attempt,
                expired_at: if sent >= deadline {
                    expired_at
                } else {
                    Utc::now()
                },
            });
        }
        let wall = wall_clock_after(self.inner.ack_wait);
        self.inner
            .message
            .double_ack_with(AckKind::Progress)
            .await
            .map_err(|err| {
                ServiceError::nats(format!("renew the lease of job {}", self.inner.job), err)
            })?;
        let renewed = (sent + self.inner.ack_wait, wall);
        *self
            .inner
            .expires
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
        tracing::trace!(job = %self.inner.job, until = %renewed.1, "lease renewed");
        Ok(renewed.1)
    }

    /// Renews the lease if a quarter of the ack wait has passed since it was last renewed;
    /// otherwise only checks it (refused, like [`Lease::renew`], once it ran out or was
    /// released). Returns its end. Cheap enough to call on every progress report.
    pub async fn keep_alive(&self) -> Result<DateTime<Utc>> {
        let (deadline, expired_at) = self.expires();
        let now = Instant::now();
        if now >= deadline || self.is_released() {
            return self.renew().await;
        }
        if deadline.saturating_duration_since(now) > self.inner.ack_wait.mul_f64(0.75) {
            return Ok(expired_at);
        }
        self.renew().await
    }

    /// When the lease runs out unless renewed (a local estimate, never later than the
    /// server's): the `lease_until` of the job's board entry.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires().1
    }

    /// `true` once the worker settled the delivery or handed it back: renewals are refused.
    pub fn is_released(&self) -> bool {
        self.inner
            .released
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn release(&self) {
        self.inner
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `true` once the lease has run out.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires().0
    }

    /// The job.
    pub fn job(&self) -> &JobRef {
        &self.inner.job
    }

    /// The attempt that holds the lease.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The worker that holds it.
    pub fn worker(&self) -> &str {
        &self.inner.worker
    }

    /// Cancelled when the worker is asked to stop: a handler that can stop early (between
    /// denoising steps) may return; the worker hands the job back.
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }
}

/// Fetches at most one message from `consumer`, waiting up to `wait`; `what` names the
/// operation in errors.
pub(crate) async fn fetch_one(
    consumer: &jetstream::consumer::PullConsumer,
    wait: Duration,
    what: &str,
) -> Result<Option<jetstream::Message>> {
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(wait)
        .messages()
        .await
        .map_err(|err| ServiceError::nats(what, err))?;
    match batch.next().await {
        None => Ok(None),
        Some(Err(err)) => Err(ServiceError::nats(what, err)),
        Some(Ok(message)) => Ok(Some(message)),
    }
}

/// Publishes `advisory` on the queue's advisory subject; with an advisory stream, returns once
/// the stream stored it (deduplicated by the job message's stream sequence).
pub(crate) async fn store_advisory(queue: &Queue, advisory: &FailureAdvisory) -> Result<()> {
    let config = queue.config();
    let payload = serde_json::to_vec(advisory).map_err(|source| ServiceError::Malformed {
        what: "failure advisory",
        source,
    })?;
    let operation = || format!("publish an advisory on {}", config.advisory_subject);
    if config.advisory_stream.is_some() {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(format!("{}/{}", config.stream, advisory.stream_sequence));
        queue
            .jetstream()
            .send_publish(config.advisory_subject.clone(), publish)
            .await
            .map_err(|err| ServiceError::nats(operation(), err))?
            .await
            .map_err(|err| ServiceError::nats(operation(), err))?;
    } else {
        let client = queue.client();
        client
            .publish(config.advisory_subject.clone(), payload.into())
            .await
            .map_err(|err| ServiceError::nats(operation(), err))?;
        client
            .flush()
            .await
            .map_err(|err| ServiceError::nats(operation(), err))?;
    }
    Ok(())
}

/// Why a job was given up, in a [`FailureAdvisory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdvisoryKind {
    /// It failed transiently on every delivery the queue allows.
    Exhausted,
    /// Its message could not be read (not JSON, wrong schema version, invalid ids or keys).
    Poison,
}

/// Published (JSON) on [`QueueConfig::advisory_subject`](crate::QueueConfig::advisory_subject)
/// when a job is given up: it exhausted its deliveries, or its message is poison. The message
/// is terminated right after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailureAdvisory {
    /// The advisory's schema version (1).
    pub schema_version: u32,
    /// Why the job was given up.
    pub kind: AdvisoryKind,
    /// The tenant (for poison, from the subject, if it names one).
    pub tenant: Option<TenantId>,
    /// The job (for poison, from the `Nats-Msg-Id`, if it names one).
    pub job: Option<JobId>,
    /// Deliveries of the message, this one included.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// The message's stream sequence.
    pub stream_sequence: u64,
    /// The worker that gave up.
    pub worker: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl FailureAdvisory {
    /// Decodes an advisory.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| ServiceError::Malformed {
            what: "failure advisory",
            source,
        })
    }
}

/// What the worker did with the delivery, in a [`JobOutcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// The handler succeeded; the message was acknowledged (synchronously).
    Succeeded,
    /// The handler failed permanently; the message was terminated.
    Failed {
        /// The error.
        error: String,
    },
    /// The handler failed transiently; the message was handed back for a later attempt.
    Retrying {
        /// When the next delivery may come.
        delay: Duration,
        /// The error.
        error: String,
    },
    /// The handler failed transiently on the last delivery allowed; an advisory was published
    /// and the message terminated.
    Exhausted {
        /// The error.
        error: String,
    },
    /// The handler returned [`JobError::Cancelled`]; the message was terminated.
    Cancelled,
    /// The message could not be read; an advisory was published and the message terminated.
    Poison {
        /// Why it could not be read.
        reason: String,
    },
    /// The worker was stopping: the message was handed back (`Nak` without delay) for another
    /// worker to take at once.
    HandedBack,
}

/// What [`Worker::run_once`] did with one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobOutcome {
    /// The job (`None` for a poison message that names none).
    pub job: Option<JobRef>,
    /// The message's stream sequence.
    pub stream_sequence: u64,
    /// The delivery count.
    pub attempt: u32,
    /// What was done.
    pub disposition: Disposition,
}

/// Counts of what a [`Worker::run`] loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Deliveries taken.
    pub deliveries: u64,
    /// Jobs acknowledged.
    pub succeeded: u64,
    /// Jobs terminated after a permanent failure.
    pub failed: u64,
    /// Deliveries handed back after a transient failure.
    pub retried: u64,
    /// Jobs given up after their last delivery.
    pub exhausted: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Poison messages terminated.
    pub poison: u64,
    /// Deliveries handed back while stopping.
    pub handed_back: u64,
    /// Failures of the loop itself (fetching, acknowledging, publishing advisories).
    pub errors: u64,
}

impl WorkerStats {
    fn record(&mut self, outcome: &JobOutcome) {
        self.deliveries += 1;
        let counter = match outcome.disposition {
            Disposition::Succeeded => &mut self.succeeded,
            Disposition::Failed { .. } => &mut self.failed,
            Disposition::Retrying { .. } => &mut self.retried,
            Disposition::Exhausted { .. } => &mut self.exhausted,
            Disposition::Cancelled => &mut self.cancelled,
            Disposition::Poison { .. } => &mut self.poison,
            Disposition::HandedBack => &mut self.handed_back,
        };
        *counter += 1;
    }
}

/// A worker: takes one job at a time from the queue's shared consumer, only when idle, and
/// runs a [`JobHandler`] on it.
///
/// For each delivery: the message is decoded (poison → advisory, `Term`); the handler runs in a
/// `job` tracing span (tenant, job, attempt, sequence, worker) with a [`Lease`]; then:
///
/// | handler result                 | message                                         |
/// |--------------------------------|-------------------------------------------------|
/// | `Ok(())`                       | acknowledged, synchronously (`AckSync`)         |
/// | `Permanent`                    | `Term`                                          |
/// | `Transient`, attempts left     | `Nak` with [`retry_delay`](crate::QueueConfig::retry_delay) |
/// | `Transient`, last attempt      | advisory published, then `Term`                 |
/// | `Cancelled`                    | `Term`                                          |
/// | worker stopping, grace over    | `Nak` without delay (another worker takes it)   |
///
/// The queue layer writes nothing to the [`JobBoard`](crate::JobBoard) or the job store: the
/// handler owns the job's record. One worker runs one job at a time; run one worker per
/// device.
pub struct Worker<H> {
    queue: Queue,
    handler: H,
    name: String,
    grace: Duration,
    metrics: Option<Metrics>,
}

impl<H> fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

enum Settle {
    Ack,
    Term,
    Nak(Option<Duration>),
}

impl<H: JobHandler> Worker<H> {
    /// A worker named `name` (shown in job records, advisories and traces: make it unique,
    /// e.g. `host/pid/cuda:0`) on `queue`. Its grace period is zero: when stopped, it hands the
    /// job in hand back at once.
    pub fn new(queue: &Queue, name: impl Into<String>, handler: H) -> Self {
        Self {
            queue: queue.clone(),
            handler,
            name: name.into(),
            grace: Duration::ZERO,
            metrics: None,
        }
    }

    /// Counts what this worker does into `metrics` (one more device).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.add_device();
        self.metrics = Some(metrics);
        self
    }

    /// How long a stopping worker lets the job in hand run before it hands it back.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Takes and settles jobs until `shutdown` is cancelled, then returns what it did.
    ///
    /// Once `shutdown` is cancelled it fetches nothing more; the job in hand gets the grace
    /// period and is then handed back. A pull request already waiting at the server is let
    /// run out (at most [`fetch_wait`](crate::QueueConfig::fetch_wait)) and whatever it
    /// brings is handed back at once, so no delivery is left to time out. Failures of the loop
    /// itself (the server unreachable ...) are logged and retried with a backoff.
    pub async fn run(&self, shutdown: CancellationToken) -> WorkerStats {
        let mut stats = WorkerStats::default();
        let mut backoff = Duration::from_millis(100);
        tracing::info!(worker = %self.name, "worker started");
        while !shutdown.is_cancelled() {
            match self.run_once(&shutdown).await {
                Ok(Some(outcome)) => {
                    stats.record(&outcome);
                    backoff = Duration::from_millis(100);
                }
                Ok(None) => backoff = Duration::from_millis(100),
                Err(err) => {
                    stats.errors += 1;
                    tracing::warn!(worker = %self.name, error = %err, "worker loop error; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(MAX_ERROR_BACKOFF);
                }
            }
        }
        tracing::info!(worker = %self.name, ?stats, "worker stopped");
        stats
    }

    /// Takes at most one job (waiting up to [`fetch_wait`](crate::QueueConfig::fetch_wait)),
    /// runs it and settles it. `Ok(None)`: no job came, or `shutdown` was cancelled before the
    /// fetch.
    pub async fn run_once(&self, shutdown: &CancellationToken) -> Result<Option<JobOutcome>> {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let config = self.queue.config();
        let what = format!("fetch a job from consumer {}", config.consumer);
        let Some(message) = fetch_one(self.queue.consumer(), config.fetch_wait, &what).await?
        else {
            return Ok(None);
        };
        self.handle(message, shutdown).await.map(Some)
    }

    async fn handle(
        &self,
        message: jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Result<JobOutcome> {
        let config = self.queue.config();
        let info = message
            .info()
            .map_err(|err| ServiceError::nats("read the delivery's metadata", err))?;
        let attempt = u32::try_from(info.delivered.max(0)).unwrap_or(u32::MAX);
        let stream_sequence = info.stream_sequence;
        let published = info.published;

        let decoded = JobMessage::from_json(&message.payload).and_then(|decoded| {
            match config.tenant_of_subject(message.subject.as_str()) {
                Some(tenant) if tenant == decoded.tenant => Ok(decoded),
                _ => Err(ServiceError::InvalidMessage {
                    field: "tenant",
                    reason: format!(
                        "the message names tenant {} but was published on {}",
                        decoded.tenant, message.subject
                    ),
                }),
            }
        });
        let job_message = match decoded {
            Ok(job_message) => job_message,
            Err(err) => return self.poison(&message, attempt, stream_sequence, err).await,
        };
        let job = job_message.job_ref();
        let span = tracing::info_span!(
            "job",
            tenant = %job.tenant,
            job = %job.job,
            attempt,
            sequence = stream_sequence,
            worker = %self.name,
        );
        let outcome = |disposition| JobOutcome {
            job: Some(job.clone()),
            stream_sequence,
            attempt,
            disposition,
        };

        if shutdown.is_cancelled() {
            // Fetched while stopping: hand it back untouched.
            self.settle(&message, &job, Settle::Nak(None))
                .instrument(span.clone())
                .await?;
            span.in_scope(|| tracing::info!("stopping: job handed back before it started"));
            if let Some(metrics) = &self.metrics {
                metrics.delivery_settled(&Disposition::HandedBack);
            }
            return Ok(outcome(Disposition::HandedBack));
        }

        let delivery = JobDelivery {
            message: job_message,
            attempt,
            max_deliveries: config.max_deliveries,
            stream_sequence,
            published,
        };
        let lease = Lease::new(
            message.clone(),
            job.clone(),
            attempt,
            self.name.clone(),
            config.ack_wait,
            shutdown.clone(),
        );
        span.in_scope(|| {
            tracing::info!(redelivery = delivery.is_redelivery(), "job started");
        });
        let started = std::time::Instant::now();
        let _busy = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.job_started(attempt));

        let grace = self.grace;
        let result = {
            let run = self.handler.run(&delivery, &lease).instrument(span.clone());
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => Some(result),
                () = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(grace).await;
                } => None,
            }
        };

        let (settle, disposition) = match result {
            None => (Settle::Nak(None), Disposition::HandedBack),
            Some(Ok(())) => (Settle::Ack, Disposition::Succeeded),
            Some(Err(JobError::Cancelled)) => (Settle::Term, Disposition::Cancelled),
            Some(Err(JobError::Permanent(error))) => (
                Settle::Term,
                Disposition::Failed {
                    error: error_chain(error.as_ref()),
                },
            ),
            Some(Err(JobError::Transient(error))) => {
                let error = error_chain(error.as_ref());
                if attempt >= config.max_deliveries {
                    let advisory = self.advisory(
                        AdvisoryKind::Exhausted,
                        Some(job.tenant.clone()),
                        Some(job.job.clone()),
                        attempt,
                        stream_sequence,
                        error.clone(),
                    );
                    self.publish_advisory(&message, &advisory, attempt)
                        .instrument(span.clone())
                        .await?;
                    (Settle::Term, Disposition::Exhausted { error })
                } else {
                    (
                        Settle::Nak(Some(config.retry_delay)),
                        Disposition::Retrying {
                            delay: config.retry_delay,
                            error,
                        },
                    )
                }
            }
        };
        // Whatever the handler left running may not renew (nor, through its write checks,
        // write) from here on.
        lease.release();
        let settled = self
            .settle(&message, &job, settle)
            .instrument(span.clone())
            .await;
        if disposition == Disposition::HandedBack && settled.is_ok() {
            self.handler
                .handed_back(&delivery, &lease)
                .instrument(span.clone())
                .await;
        }
        if let Some(metrics) = &self.metrics {
            metrics.job_settled(&disposition, started.elapsed());
        }
        settled?;
        span.in_scope(|| match &disposition {
            Disposition::Succeeded => tracing::info!("job succeeded"),
            Disposition::Failed { error } => tracing::warn!(%error, "job failed for good"),
            Disposition::Retrying { delay, error } => {
                tracing::warn!(%error, ?delay, "job failed; it will be retried");
            }
            Disposition::Exhausted { error } => {
                tracing::error!(%error, "job failed on its last attempt; advisory published");
            }
            Disposition::Cancelled => tracing::info!("job cancelled"),
            Disposition::HandedBack => tracing::info!("stopping: job handed back"),
            Disposition::Poison { .. } => {}
        });
        Ok(outcome(disposition))
    }

    /// Acknowledges, terminates or hands back the delivery, and waits for the server to
    /// confirm.
    async fn settle(
        &self,
        message: &jetstream::Message,
        job: &JobRef,
        settle: Settle,
    ) -> Result<()> {
        let (kind, what) = match settle {
            Settle::Ack => (AckKind::Ack, "acknowledge"),
            Settle::Term => (AckKind::Term, "terminate"),
            Settle::Nak(delay) => (AckKind::Nak(delay), "hand back"),
        };
        message
            .double_ack_with(kind)
            .await
            .map_err(|err| ServiceError::nats(format!("{what} job {job}"), err))
    }

    fn advisory(
        &self,
        kind: AdvisoryKind,
        tenant: Option<TenantId>,
        job: Option<JobId>,
        attempts: u32,
        stream_sequence: u64,
        error: String,
    ) -> FailureAdvisory {
        FailureAdvisory {
            schema_version: SCHEMA_VERSION,
            kind,
            tenant,
            job,
            attempts,
            error,
            stream_sequence,
            worker: self.name.clone(),
            at: Utc::now(),
        }
    }

    /// Publishes an advisory (stored by the advisory stream, if there is one, before this
    /// returns). If that fails and the queue allows another delivery, the message is handed
    /// back for a retry; on the last delivery it is terminated anyway (the failure is logged).
    async fn publish_advisory(
        &self,
        message: &jetstream::Message,
        advisory: &FailureAdvisory,
        attempt: u32,
    ) -> Result<()> {
        let config = self.queue.config();
        let result = store_advisory(&self.queue, advisory).await;
        if let Err(err) = result {
            let (settle, what) = if attempt < config.max_deliveries {
                (
                    AckKind::Nak(Some(config.retry_delay)),
                    "handed back for a retry",
                )
            } else {
                (AckKind::Term, "terminated without its advisory")
            };
            tracing::error!(error = %err, "could not publish the failure advisory; message {what}");
            if let Err(settle_err) = message.double_ack_with(settle).await {
                tracing::warn!(error = %settle_err, "could not settle the message either");
            }
            return Err(err);
        }
        Ok(())
    }

    /// A message that cannot be read: advisory, then `Term`.
    async fn poison(
        &self,
        message: &jetstream::Message,
        attempt: u32,
        stream_sequence: u64,
        error: ServiceError,
    ) -> Result<JobOutcome> {
        let config = self.queue.config();
        let tenant = config.tenant_of_subject(message.subject.as_str());
        let named = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .and_then(|id| {
                id.as_str()
                    .split_once('/')
                    .map(|(t, j)| (t.to_owned(), j.to_owned()))
            })
            .and_then(|(t, j)| JobRef::parse(&t, &j).ok());
        let job = named.as_ref().map(|job| job.job.clone());
        let span = tracing::info_span!(
            "job",
            tenant = tenant.as_ref().map(|t| t.as_str()),
            job = job.as_ref().map(|j| j.as_str()),
            attempt,
            sequence = stream_sequence,
            worker = %self.name,
        );
        let reason = error_chain(&error);
        span.in_scope(|| tracing::error!(%reason, "poison message: terminating it"));
        let advisory = self.advisory(
            AdvisoryKind::Poison,
            tenant,
            job,
            attempt,
            stream_sequence,
            reason.clone(),
        );
        self.publish_advisory(message, &advisory, attempt)
            .instrument(span.clone())
            .await?;
        let shown = named
            .clone()
            .map_or_else(|| format!("#{stream_sequence}"), |j| j.to_string());
        message
            .double_ack_with(AckKind::Term)
            .instrument(span)
            .await
            .map_err(|err| ServiceError::nats(format!("terminate poison message {shown}"), err))?;
        if let Some(metrics) = &self.metrics {
            metrics.delivery_settled(&Disposition::Poison {
                reason: String::new(),
            });
        }
        Ok(JobOutcome {
            job: named,
            stream_sequence,
            attempt,
            disposition: Disposition::Poison { reason },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chains_read_whole() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&err), "outer: inner");
        let job = JobError::transient(err);
        assert_eq!(job.to_string(), "transient failure: outer: inner");
        assert_eq!(
            JobError::permanent("no face").to_string(),
            "permanent failure: no face"
        );
    }

    #[test]
    fn advisory_json() {
        let advisory = FailureAdvisory {
            schema_version: 1,
            kind: AdvisoryKind::Exhausted,
            tenant: Some(TenantId::new("acme").unwrap()),
            job: Some(JobId::new("j1").unwrap()),
            attempts: 5,
            error: "store unreachable".into(),
            stream_sequence: 9,
            worker: "w0".into(),
            at: Utc::now(),
        };
        let json = serde_json::to_vec(&advisory).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""kind":"exhausted""#), "{text}");
        assert_eq!(FailureAdvisory::from_json(&json).unwrap(), advisory);
    }
}
