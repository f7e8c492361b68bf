//! Jobs started by bucket notifications: S3-style object-created events published to NATS
//! (MinIO's NATS target; Aliyun OSS events through an event bridge).

use futures::StreamExt;
use sonic_service::CancellationToken;

use crate::api::Api;
use crate::notify::{job_input_of, parse_notification};

/// The queue group the servers' subscriptions share, so each event is handled once.
pub const EVENTS_QUEUE_GROUP: &str = "sonic-serve";

/// What handling one notification did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotificationOutcome {
    /// Jobs started (or found started).
    pub started: usize,
    /// Jobs still waiting for a file.
    pub waiting: usize,
    /// Objects that are no job input, or no start-on-upload job's.
    pub ignored: usize,
    /// Jobs refused (their files failed their checks; recorded failed) or not startable now.
    pub refused: usize,
}

impl Api {
    /// Handles one notification body: for each object created under
    /// `inputs/{tenant}/{job}/`, starts the job if it was created with `start_on_upload` and
    /// both files are in.
    ///
    /// # Errors
    /// A body of no known shape.
    pub async fn handle_notification(
        &self,
        body: &[u8],
    ) -> Result<NotificationOutcome, crate::notify::NotificationError> {
        let mut outcome = NotificationOutcome::default();
        for created in parse_notification(body)? {
            let Some((job, _kind)) = job_input_of(&created.key) else {
                outcome.ignored += 1;
                continue;
            };
            match self.start_uploaded(&job).await {
                Ok(view) if view.state == "awaiting_upload" => outcome.waiting += 1,
                Ok(_) => outcome.started += 1,
                Err(problem) if problem.status == 404 || problem.status == 409 => {
                    tracing::debug!(job = %job, %problem, "bucket event for no start-on-upload job");
                    outcome.ignored += 1;
                }
                Err(problem) => {
                    tracing::warn!(job = %job, %problem, "bucket event: job not started");
                    outcome.refused += 1;
                }
            }
        }
        Ok(outcome)
    }

    /// Subscribes to `subject` on the queue's NATS connection (queue group
    /// [`EVENTS_QUEUE_GROUP`]) and handles every notification until `stop`.
    ///
    /// # Errors
    /// The subscription cannot be made.
    pub async fn run_bucket_events(
        &self,
        subject: &str,
        stop: CancellationToken,
    ) -> Result<(), sonic_service::async_nats::SubscribeError> {
        let mut subscription = self
            .queue()
            .client()
            .queue_subscribe(subject.to_owned(), EVENTS_QUEUE_GROUP.to_owned())
            .await?;
        tracing::info!(subject, "following bucket notifications");
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => break,
                message = subscription.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            match self.handle_notification(&message.payload).await {
                Ok(outcome) => tracing::debug!(?outcome, "bucket notification"),
                Err(e) => tracing::warn!(error = %e, "bucket notification ignored"),
            }
        }
        let _ = subscription.unsubscribe().await;
        Ok(())
    }
}
