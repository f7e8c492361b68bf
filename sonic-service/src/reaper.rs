//! The [`Reaper`]: records the jobs whose last delivery ran out of time.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use serde::Deserialize;
use sonic::storage::{Storage, StorageError};
use tokio_util::sync::CancellationToken;

use crate::board::{JobPhase, JobState};
use crate::error::{Result, ServiceError};
use crate::message::JobMessage;
use crate::queue::Queue;
use crate::worker::{AdvisoryKind, FailureAdvisory, fetch_one, store_advisory};
use crate::{JobRef, SCHEMA_VERSION};

/// The durable consumer the reapers share on the exhausted stream.
const CONSUMER: &str = "reaper";
/// How long a failed step waits before the advisory is handled again.
const RETRY: Duration = Duration::from_secs(2);

/// The part of the server's `io.nats.jetstream.advisory.v1.max_deliver` advisory we read.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// What [`Reaper::run_once`] did with one server advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reaped {
    /// The job was recorded `failed` and a [`FailureAdvisory`] published.
    Failed {
        /// The job.
        job: JobRef,
        /// Its deliveries.
        deliveries: u64,
    },
    /// The job had finished (its worker settled it late, or another reaper did it): nothing
    /// to record.
    Finished {
        /// The job.
        job: JobRef,
    },
    /// The job's message is gone from the stream (acknowledged late, or deleted already).
    Gone {
        /// Its stream sequence.
        stream_sequence: u64,
    },
}

/// Records the jobs whose last delivery ran out of time.
///
/// A worker that fails a job on its last delivery records the failure itself (board, manifest,
/// [`FailureAdvisory`]). A worker that hangs or dies on the last delivery cannot, and the server
/// does not redeliver the job: it publishes its own advisory,
/// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}`, kept by the queue's
/// [`exhausted_stream`](crate::QueueConfig::exhausted_stream). A reaper (every worker process
/// runs one; they share one durable consumer, so each advisory is handled once) reads it and:
///
/// 1. reads the job's message from the job stream (by the advisory's sequence);
/// 2. marks the board entry `failed` (compare-and-set; a job that finished is left as it is);
/// 3. marks the manifest `failed` (if the store has one and it did not succeed);
/// 4. publishes a [`FailureAdvisory`] (`exhausted`) on the queue's advisory subject;
/// 5. deletes the message from the job stream (a work queue keeps an unacknowledged message
///    for ever) and acknowledges the server's advisory.
///
/// A step that fails hands the advisory back for a retry; every step can be repeated.
///
/// The server gives a job up when it would deliver it again, that is when some worker asks for
/// a job after the last delivery's ack wait ran out: with every worker hung, the advisory waits
/// for the next one that is not.
#[derive(Debug, Clone)]
pub struct Reaper {
    queue: Queue,
    storage: Option<Storage>,
    name: String,
    /// The shared durable consumer, created (or updated) once, on first use.
    consumer: std::sync::Arc<tokio::sync::OnceCell<jetstream::consumer::PullConsumer>>,
}

impl Reaper {
    /// A reaper on `queue`, recording failures in `storage`'s manifests too (`None`: the board
    /// only), named `name` in its advisories.
    pub fn new(queue: &Queue, storage: Option<Storage>, name: impl Into<String>) -> Self {
        Self {
            queue: queue.clone(),
            storage,
            name: name.into(),
            consumer: Default::default(),
        }
    }

    async fn consumer(&self) -> Result<&jetstream::consumer::PullConsumer> {
        self.consumer
            .get_or_try_init(|| self.create_consumer())
            .await
    }

    async fn create_consumer(&self) -> Result<jetstream::consumer::PullConsumer> {
        let Some(stream) = self.queue.config().exhausted_stream.clone() else {
            return Err(ServiceError::InvalidConfig {
                field: "exhausted_stream",
                reason: format!("is None: there is nothing for reaper {} to read", self.name),
            });
        };
        self.queue
            .jetstream()
            .create_consumer_on_stream(
                jetstream::consumer::pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    description: Some("sonic reapers".to_owned()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
                stream.as_str(),
            )
            .await
            .map_err(|err| {
                ServiceError::nats(
                    format!("create consumer {CONSUMER} on stream {stream}"),
                    err,
                )
            })
    }

    /// Handles the server's advisories until `shutdown` is cancelled. Failures are logged and
    /// retried.
    pub async fn run(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.run_once(&shutdown).await {
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(reaper = %self.name, error = %err, "reaper error; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Handles at most one advisory (waiting up to the queue's
    /// [`fetch_wait`](crate::QueueConfig::fetch_wait)).
    pub async fn run_once(&self, shutdown: &CancellationToken) -> Result<Option<Reaped>> {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let consumer = self.consumer().await?;
        let what = format!("fetch an advisory from consumer {CONSUMER}");
        let Some(message) = fetch_one(consumer, self.queue.config().fetch_wait, &what).await?
        else {
            return Ok(None);
        };
        let advisory: MaxDeliveries = match serde_json::from_slice(&message.payload) {
            Ok(advisory) => advisory,
            Err(source) => {
                tracing::error!(error = %source, "unreadable max-deliveries advisory: dropped");
                message
                    .double_ack_with(AckKind::Term)
                    .await
                    .map_err(|err| ServiceError::nats("terminate an unreadable advisory", err))?;
                return Ok(None);
            }
        };
        match self.reap(&advisory).await {
            Ok(reaped) => {
                message
                    .double_ack_with(AckKind::Ack)
                    .await
                    .map_err(|err| ServiceError::nats("acknowledge an advisory", err))?;
                Ok(Some(reaped))
            }
            Err(err) => {
                let _ = message.double_ack_with(AckKind::Nak(Some(RETRY))).await;
                Err(err)
            }
        }
    }

    async fn reap(&self, advisory: &MaxDeliveries) -> Result<Reaped> {
        let config = self.queue.config();
        let stream = self
            .queue
            .jetstream()
            .get_stream_no_info(config.stream.as_str())
            .await
            .map_err(|err| ServiceError::nats(format!("open stream {}", config.stream), err))?;
        let raw = match stream.get_raw_message(advisory.stream_seq).await {
            Ok(raw) => raw,
            Err(err) if err.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                return Ok(Reaped::Gone {
                    stream_sequence: advisory.stream_seq,
                });
            }
            Err(err) => {
                return Err(ServiceError::nats(
                    format!(
                        "read message {} of stream {}",
                        advisory.stream_seq, config.stream
                    ),
                    err,
                ));
            }
        };
        let job = match JobMessage::from_json(&raw.payload) {
            Ok(message) => message.job_ref(),
            Err(err) => {
                // A poison message that hung its worker: nothing to record but the advisory.
                tracing::error!(sequence = advisory.stream_seq, error = %err, "an unreadable job ran out of deliveries");
                self.delete(&stream, advisory.stream_seq).await?;
                return Ok(Reaped::Gone {
                    stream_sequence: advisory.stream_seq,
                });
            }
        };
        let span = tracing::info_span!("reap", tenant = %job.tenant, job = %job.job);
        let error = format!(
            "gave up after {} deliveries: the last one's lease ran out (its worker hung or died)",
            advisory.deliveries
        );

        // The board: failed, unless the job finished meanwhile.
        let finished = loop {
            let (state, revision) = match self.queue.board().get(&job).await {
                Ok(found) => found,
                Err(ServiceError::NotFound { .. }) => (JobState::queued(), 0),
                Err(err) => return Err(err),
            };
            if state.is_terminal() {
                break true;
            }
            let failed = state.settled(JobPhase::Failed, Some(error.clone()));
            let written = if revision == 0 {
                self.queue.board().create(&job, &failed).await
            } else {
                self.queue.board().update(&job, &failed, revision).await
            };
            match written {
                Ok(_) => break false,
                Err(ServiceError::Stale { .. } | ServiceError::AlreadyExists { .. }) => continue,
                Err(err) => return Err(err),
            }
        };
        if finished {
            span.in_scope(|| tracing::info!("ran out of deliveries but finished: nothing to do"));
            self.delete(&stream, advisory.stream_seq).await?;
            return Ok(Reaped::Finished { job });
        }

        // The manifest, if there is one and the job did not succeed.
        if let Some(storage) = &self.storage {
            match crate::render::record_failure(storage, &job, &error).await {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(err) => {
                    return Err(ServiceError::Storage {
                        job: job.clone(),
                        source: Box::new(err),
                    });
                }
            }
        }
        let published = FailureAdvisory {
            schema_version: SCHEMA_VERSION,
            kind: AdvisoryKind::Exhausted,
            tenant: Some(job.tenant.clone()),
            job: Some(job.job.clone()),
            attempts: u32::try_from(advisory.deliveries).unwrap_or(u32::MAX),
            error,
            stream_sequence: advisory.stream_seq,
            worker: self.name.clone(),
            at: Utc::now(),
        };
        store_advisory(&self.queue, &published).await?;
        self.delete(&stream, advisory.stream_seq).await?;
        span.in_scope(|| {
            tracing::error!(
                deliveries = advisory.deliveries,
                "job ran out of deliveries: recorded failed, advisory published"
            );
        });
        Ok(Reaped::Failed {
            job,
            deliveries: advisory.deliveries,
        })
    }

    async fn delete(&self, stream: &jetstream::stream::Stream<()>, sequence: u64) -> Result<()> {
        match stream.delete_message(sequence).await {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.kind(),
                    jetstream::stream::DeleteMessageErrorKind::JetStream(ref e)
                        if e.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(ServiceError::nats(
                format!(
                    "delete message {sequence} of stream {}",
                    self.queue.config().stream
                ),
                err,
            )),
        }
    }
}
