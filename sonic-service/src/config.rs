//! The queue's configuration: stream, consumer, advisories and job board.

use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use sonic_storage::TenantId;

use crate::error::{Result, ServiceError};

/// Where jobs are queued and how they are delivered.
///
/// [`QueueConfig::default`] is the production shape on one server; every value is documented
/// with its default. The stream always has work-queue retention (a message is removed once
/// acknowledged or terminated) and the consumer always acknowledges explicitly: the delivery
/// guarantees of [`Worker`](crate::Worker) rest on both, so neither is configurable.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The JetStream stream of jobs. Default `SONIC_JOBS`.
    pub stream: String,
    /// Subjects are `{subject_prefix}.{tenant}`; the stream takes `{subject_prefix}.>`.
    /// Default `sonic.jobs`. See [`QueueConfig::subject_for`].
    pub subject_prefix: String,
    /// The stream's (and the job board's) storage. Default [`StorageType::File`]: jobs survive
    /// a server restart.
    pub storage: StorageType,
    /// How long the stream remembers a `Nats-Msg-Id`: a job submitted again within this window
    /// is one job ([`Submitted::duplicate`](crate::Submitted::duplicate)). Default 10 minutes.
    /// Later re-submissions are new messages; the job store's create-only video is what keeps
    /// them from producing a second video.
    pub duplicate_window: Duration,
    /// Replicas of the stream, the advisory stream and the job board. Default 1 (one server);
    /// use 3 in production, on a 3-node cluster.
    pub replicas: usize,
    /// The durable pull consumer every worker shares. Default `workers`.
    pub consumer: String,
    /// How long a delivery stays leased to its worker without a
    /// [`Lease::renew`](crate::Lease::renew) before the server redelivers it. Default 60 s.
    /// A hung handler loses its job this long after its last renewal.
    pub ack_wait: Duration,
    /// Deliveries of one job before it is given up (the consumer's `max_deliver`). Default 5.
    /// A transient failure on the last attempt publishes a
    /// [`FailureAdvisory`](crate::FailureAdvisory) and terminates the message.
    pub max_deliveries: u32,
    /// How long a transiently failed job waits before its next delivery (`Nak` delay).
    /// Default 10 s.
    pub retry_delay: Duration,
    /// How long an idle worker's pull request waits for a job before it asks again. Default
    /// 5 s. A stopping worker lets its pending pull request run out (at most this long) and
    /// hands back whatever it brings.
    pub fetch_wait: Duration,
    /// The subject of [`FailureAdvisory`](crate::FailureAdvisory) messages: jobs that exhausted
    /// their deliveries and poison messages. Default `sonic.advisories.failed`. Must not fall
    /// under `subject_prefix`.
    pub advisory_subject: String,
    /// A stream that keeps the advisories (limits retention), so that none is lost when
    /// nobody is subscribed; the worker terminates a message only once its advisory is stored.
    /// Default `Some("SONIC_ADVISORIES")`; `None` publishes them on core NATS only.
    pub advisory_stream: Option<String>,
    /// How long the advisory stream keeps an advisory. Default 7 days.
    pub advisory_max_age: Duration,
    /// A work-queue stream that keeps the server's own advisory for a job whose last delivery
    /// ran out of time (its worker hung or died), on
    /// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}`: no worker is left to
    /// record that failure, so a [`Reaper`](crate::Reaper) does (failed board entry and
    /// manifest, a [`FailureAdvisory`](crate::FailureAdvisory)). Default
    /// `Some("SONIC_EXHAUSTED")`; `None`: such jobs stay `running` on the board.
    pub exhausted_stream: Option<String>,
    /// The JetStream KV bucket of job states ([`JobBoard`](crate::JobBoard)). Default
    /// `sonic_jobs`.
    pub board_bucket: String,
    /// Revisions the board keeps per job. Default 5.
    pub board_history: i64,
    /// Timeout of each JetStream API request, publish acknowledgement and synchronous
    /// acknowledgement. Default 5 s.
    pub request_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            stream: "SONIC_JOBS".to_owned(),
            subject_prefix: "sonic.jobs".to_owned(),
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(10 * 60),
            replicas: 1,
            consumer: "workers".to_owned(),
            ack_wait: Duration::from_secs(60),
            max_deliveries: 5,
            retry_delay: Duration::from_secs(10),
            fetch_wait: Duration::from_secs(5),
            advisory_subject: "sonic.advisories.failed".to_owned(),
            advisory_stream: Some("SONIC_ADVISORIES".to_owned()),
            advisory_max_age: Duration::from_secs(7 * 24 * 3600),
            exhausted_stream: Some("SONIC_EXHAUSTED".to_owned()),
            board_bucket: "sonic_jobs".to_owned(),
            board_history: 5,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Writes an id as one subject (or KV key) token: `.` separates tokens in NATS, and ids may
/// contain `.`, so each `.` is written `=`. Ids never contain `=`, so the mapping is injective
/// and [`decode_token`] reverses it.
pub(crate) fn encode_token(id: &str) -> String {
    id.replace('.', "=")
}

/// Reverses [`encode_token`].
pub(crate) fn decode_token(token: &str) -> String {
    token.replace('=', ".")
}

impl QueueConfig {
    /// `{subject_prefix}.{tenant}`: the subject a tenant's jobs are published on, with every
    /// `.` of the tenant id written `=` so the tenant is a single token (`acme.prod` →
    /// `sonic.jobs.acme=prod`).
    pub fn subject_for(&self, tenant: &TenantId) -> String {
        format!("{}.{}", self.subject_prefix, encode_token(tenant.as_str()))
    }

    /// `{subject_prefix}.>`: the stream's subjects and the consumer's filter.
    pub fn stream_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// The subject of the server's advisory for a job of this queue's consumer that ran out of
    /// deliveries.
    pub fn max_deliveries_subject(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.stream, self.consumer
        )
    }

    /// The tenant a job subject names, if it is one of this queue's subjects.
    pub(crate) fn tenant_of_subject(&self, subject: &str) -> Option<TenantId> {
        let token = subject
            .strip_prefix(self.subject_prefix.as_str())?
            .strip_prefix('.')?;
        if token.contains('.') {
            return None;
        }
        TenantId::new(decode_token(token)).ok()
    }

    /// Checks every value (names, durations, counts).
    pub fn validate(&self) -> Result<()> {
        let refuse = |field: &'static str, reason: &str| {
            Err(ServiceError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        check_name("stream", &self.stream)?;
        check_name("consumer", &self.consumer)?;
        if let Some(stream) = &self.advisory_stream {
            check_name("advisory_stream", stream)?;
            if stream == &self.stream {
                return refuse("advisory_stream", "must differ from `stream`");
            }
        }
        if let Some(stream) = &self.exhausted_stream {
            check_name("exhausted_stream", stream)?;
            if stream == &self.stream || Some(stream) == self.advisory_stream.as_ref() {
                return refuse(
                    "exhausted_stream",
                    "must differ from `stream` and `advisory_stream`",
                );
            }
        }
        if self.board_bucket.is_empty()
            || !self
                .board_bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return refuse(
                "board_bucket",
                "must be non-empty ASCII letters, digits, `_` or `-`",
            );
        }
        check_subject("subject_prefix", &self.subject_prefix)?;
        check_subject("advisory_subject", &self.advisory_subject)?;
        if self.advisory_subject == self.subject_prefix
            || self
                .advisory_subject
                .starts_with(&format!("{}.", self.subject_prefix))
        {
            return refuse(
                "advisory_subject",
                "must not fall under `subject_prefix` (advisories are not jobs)",
            );
        }
        if self.ack_wait < Duration::from_millis(100) {
            return refuse("ack_wait", "must be at least 100 ms");
        }
        if self.max_deliveries == 0 || i64::from(self.max_deliveries) > i64::from(i32::MAX) {
            return refuse("max_deliveries", "must be at least 1");
        }
        if self.fetch_wait < Duration::from_millis(10) {
            return refuse("fetch_wait", "must be at least 10 ms");
        }
        if self.request_timeout.is_zero() {
            return refuse("request_timeout", "must be positive");
        }
        if self.replicas == 0 || self.replicas > 5 {
            return refuse("replicas", "must be 1 to 5");
        }
        if self.board_history < 1 || self.board_history > 64 {
            return refuse("board_history", "must be 1 to 64");
        }
        Ok(())
    }
}

/// Stream and consumer names: one subject token, no wildcards, no whitespace.
fn check_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ServiceError::InvalidConfig {
            field,
            reason: format!("{name:?} must be 1 to 255 ASCII letters, digits, `_` or `-`"),
        });
    }
    Ok(())
}

/// Subjects: non-empty `.`-separated tokens without wildcards or whitespace.
fn check_subject(field: &'static str, subject: &str) -> Result<()> {
    let ok = !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        });
    if !ok {
        return Err(ServiceError::InvalidConfig {
            field,
            reason: format!("{subject:?} is not a literal subject"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = QueueConfig::default();
        config.validate().unwrap();
        assert_eq!(config.stream_subjects(), "sonic.jobs.>");
        let tenant = TenantId::new("acme.prod").unwrap();
        assert_eq!(config.subject_for(&tenant), "sonic.jobs.acme=prod");
        assert_eq!(
            config.tenant_of_subject("sonic.jobs.acme=prod"),
            Some(tenant)
        );
        assert_eq!(config.tenant_of_subject("sonic.jobs.a.b"), None);
        assert_eq!(config.tenant_of_subject("other.acme"), None);
    }

    #[test]
    fn refuses_bad_values() {
        let bad = [
            QueueConfig {
                stream: "A.B".into(),
                ..Default::default()
            },
            QueueConfig {
                subject_prefix: "sonic.*".into(),
                ..Default::default()
            },
            QueueConfig {
                advisory_subject: "sonic.jobs.failed".into(),
                ..Default::default()
            },
            QueueConfig {
                max_deliveries: 0,
                ..Default::default()
            },
            QueueConfig {
                ack_wait: Duration::ZERO,
                ..Default::default()
            },
            QueueConfig {
                board_bucket: "a.b".into(),
                ..Default::default()
            },
            QueueConfig {
                advisory_stream: Some("SONIC_JOBS".into()),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ServiceError::InvalidConfig { .. })),
                "{config:?}"
            );
        }
    }
}
