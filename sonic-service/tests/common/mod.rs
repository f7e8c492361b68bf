//! Shared helpers of the integration tests: short timings, a closure handler, bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use sonic_service::{
    FailureAdvisory, InputRef, JobDelivery, JobError, JobHandler, JobMessage, JobRef, Lease, Queue,
    QueueConfig,
};

/// Every wait of the tests is bounded by this (or less).
pub const WAIT: Duration = Duration::from_secs(20);

/// Short timings: a 1 s ack wait, quick retries and polls.
pub fn config() -> QueueConfig {
    QueueConfig {
        ack_wait: Duration::from_secs(1),
        max_deliveries: 3,
        retry_delay: Duration::from_millis(100),
        fetch_wait: Duration::from_millis(250),
        request_timeout: Duration::from_secs(5),
        ..QueueConfig::default()
    }
}

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

pub async fn connect(url: &str, config: QueueConfig) -> Queue {
    within("connect", WAIT, Queue::connect(url, config))
        .await
        .expect("connect to the test server")
}

pub fn job(tenant: &str, job: &str) -> JobMessage {
    let job = JobRef::parse(tenant, job).unwrap();
    let image = InputRef::key(format!("inputs/{}/{}/image.png", job.tenant, job.job)).unwrap();
    let audio = InputRef::url("https://other.example.com/speech.wav?X-Amz-Signature=abc").unwrap();
    JobMessage::new(job, image, audio).with_parameters(serde_json::json!({"inference_steps": 2}))
}

/// Messages stored in the job stream now.
pub async fn stream_messages(queue: &Queue) -> u64 {
    let mut stream = queue
        .jetstream()
        .get_stream(queue.config().stream.as_str())
        .await
        .expect("get the job stream");
    stream.info().await.expect("stream info").state.messages
}

/// A handler from a closure over owned copies of the delivery and the lease.
pub struct FnHandler<F>(pub F);

impl<F, Fut> JobHandler for FnHandler<F>
where
    F: Fn(JobDelivery, Lease) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), JobError>> + Send,
{
    fn run(
        &self,
        delivery: &JobDelivery,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        (self.0)(delivery.clone(), lease.clone())
    }
}

/// Subscribes to the advisory subject (core NATS).
pub async fn advisories(queue: &Queue) -> async_nats::Subscriber {
    queue
        .client()
        .subscribe(queue.config().advisory_subject.clone())
        .await
        .expect("subscribe to advisories")
}

/// The next advisory, within [`WAIT`].
pub async fn next_advisory(subscriber: &mut async_nats::Subscriber) -> FailureAdvisory {
    let message = within("an advisory", WAIT, subscriber.next())
        .await
        .expect("advisory subscription ended");
    FailureAdvisory::from_json(&message.payload).expect("decode the advisory")
}
