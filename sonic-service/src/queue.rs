//! The connection to the queue: stream, consumer, advisory stream and job board, and the
//! submitter.

use std::fmt;
use std::sync::Arc;

use async_nats::jetstream::{self, consumer, stream};

use crate::board::JobBoard;
use crate::config::QueueConfig;
use crate::error::{Result, ServiceError};
use crate::message::JobMessage;

/// A connection to the job queue, shared by submitters, job boards and workers (cloning is
/// cheap: it shares one NATS connection).
///
/// [`Queue::connect`] creates or updates, idempotently, everything the service needs: the job
/// stream (work-queue retention), its durable pull consumer, the advisory stream and the job
/// board's KV bucket. Many processes may connect at once with the same configuration.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    config: QueueConfig,
    consumer: consumer::PullConsumer,
    board: JobBoard,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to the NATS server(s) at `url` (`nats://host:4222`, several separated by
    /// commas) and sets up the stream, the consumer, the advisory stream and the job board.
    ///
    /// To connect with credentials or TLS, build the client yourself and use
    /// [`Queue::with_client`].
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name("sonic-service")
            .connection_timeout(config.request_timeout)
            .request_timeout(Some(config.request_timeout))
            .connect(url)
            .await
            .map_err(|err| ServiceError::nats(format!("connect to {url}"), err))?;
        Self::with_client(client, config).await
    }

    /// Like [`Queue::connect`], on a client you connected yourself.
    pub async fn with_client(client: async_nats::Client, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.request_timeout);

        let stream_config = stream::Config {
            name: config.stream.clone(),
            description: Some("sonic jobs (one message per job)".to_owned()),
            subjects: vec![config.stream_subjects()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: config.storage,
            num_replicas: config.replicas,
            duplicate_window: config.duplicate_window,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let info = jetstream
            .create_or_update_stream(stream_config)
            .await
            .map_err(|err| {
                ServiceError::nats(format!("create or update stream {}", config.stream), err)
            })?;
        if info.config.retention != stream::RetentionPolicy::WorkQueue {
            return Err(ServiceError::InvalidConfig {
                field: "stream",
                reason: format!(
                    "stream {} exists with {:?} retention; the queue needs work-queue retention",
                    config.stream, info.config.retention
                ),
            });
        }

        if let Some(advisories) = &config.advisory_stream {
            jetstream
                .create_or_update_stream(stream::Config {
                    name: advisories.clone(),
                    description: Some("sonic jobs that failed for good".to_owned()),
                    subjects: vec![config.advisory_subject.clone()],
                    retention: stream::RetentionPolicy::Limits,
                    storage: config.storage,
                    num_replicas: config.replicas,
                    max_age: config.advisory_max_age,
                    duplicate_window: config.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(|err| {
                    ServiceError::nats(format!("create or update stream {advisories}"), err)
                })?;
        }

        if let Some(exhausted) = &config.exhausted_stream {
            jetstream
                .create_or_update_stream(stream::Config {
                    name: exhausted.clone(),
                    description: Some(
                        "the server's advisories for sonic jobs that ran out of deliveries"
                            .to_owned(),
                    ),
                    subjects: vec![config.max_deliveries_subject()],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: config.storage,
                    num_replicas: config.replicas,
                    max_age: config.advisory_max_age,
                    ..Default::default()
                })
                .await
                .map_err(|err| {
                    ServiceError::nats(format!("create or update stream {exhausted}"), err)
                })?;
        }

        let consumer = jetstream
            .create_consumer_on_stream(
                consumer::pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    description: Some("sonic workers".to_owned()),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: i64::from(config.max_deliveries),
                    filter_subject: config.stream_subjects(),
                    replay_policy: consumer::ReplayPolicy::Instant,
                    num_replicas: config.replicas,
                    ..Default::default()
                },
                config.stream.as_str(),
            )
            .await
            .map_err(|err| {
                ServiceError::nats(
                    format!(
                        "create or update consumer {} on stream {}",
                        config.consumer, config.stream
                    ),
                    err,
                )
            })?;

        // The bucket's stream, as async-nats's `create_key_value` would make it. (That call
        // first reads the account info, whose 2.10+ fields a 2.9 server does not send.)
        let bucket_stream = format!("KV_{}", config.board_bucket);
        jetstream
            .create_or_update_stream(stream::Config {
                name: bucket_stream.clone(),
                description: Some("sonic job states (one entry per job)".to_owned()),
                subjects: vec![format!("$KV.{}.>", config.board_bucket)],
                max_messages_per_subject: config.board_history,
                storage: config.storage,
                num_replicas: config.replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|err| {
                ServiceError::nats(format!("create or update stream {bucket_stream}"), err)
            })?;
        let store = jetstream
            .get_key_value(config.board_bucket.as_str())
            .await
            .map_err(|err| {
                ServiceError::nats(format!("open KV bucket {}", config.board_bucket), err)
            })?;

        tracing::debug!(
            stream = %config.stream,
            consumer = %config.consumer,
            bucket = %config.board_bucket,
            "queue ready"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                jetstream,
                board: JobBoard::new(store),
                config,
                consumer,
            }),
        })
    }

    /// The configuration the queue was set up with.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context (its timeout is [`QueueConfig::request_timeout`]).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    /// A submitter on this queue.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            queue: self.clone(),
        }
    }

    /// The job board of this queue.
    pub fn board(&self) -> &JobBoard {
        &self.inner.board
    }

    pub(crate) fn consumer(&self) -> &consumer::PullConsumer {
        &self.inner.consumer
    }
}

/// What [`Submitter::submit`] got back from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Submitted {
    /// The job's stream sequence (for a duplicate, the sequence of the first submission).
    pub sequence: u64,
    /// `true` if the stream had this job already (same `Nats-Msg-Id` within the duplicate
    /// window): nothing new was queued.
    pub duplicate: bool,
}

/// Puts jobs on the queue.
#[derive(Clone, Debug)]
pub struct Submitter {
    queue: Queue,
}

impl Submitter {
    /// Publishes `message` on its tenant's subject with `Nats-Msg-Id: {tenant}/{job}` and waits
    /// until the stream has stored it. Submitting the same job again within the duplicate
    /// window queues nothing and answers `duplicate: true`.
    pub async fn submit(&self, message: &JobMessage) -> Result<Submitted> {
        let config = self.queue.config();
        let payload = message.to_json()?;
        let subject = config.subject_for(&message.tenant);
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(message.message_id())
            .expected_stream(config.stream.as_str());
        let operation = || format!("submit job {} on {subject}", message.job_ref());
        let ack = self
            .queue
            .jetstream()
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|err| ServiceError::nats(operation(), err))?
            .await
            .map_err(|err| ServiceError::nats(operation(), err))?;
        tracing::debug!(
            tenant = %message.tenant,
            job = %message.job,
            sequence = ack.sequence,
            duplicate = ack.duplicate,
            "job submitted"
        );
        Ok(Submitted {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}
