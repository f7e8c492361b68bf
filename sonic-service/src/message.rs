//! The job message: what a submitter puts on the queue and a worker takes off it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sonic_storage::{JobId, JobRef, ObjectKey, TenantId};
use url::Url;

use crate::error::{Result, ServiceError};

/// The schema version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The longest input URL accepted, in bytes (signed URLs carry long query strings).
pub const MAX_URL_LEN: usize = 8192;

/// One job on the queue: who it is for, where its inputs are, and how to run it.
///
/// On the wire it is JSON, versioned by `schema_version` (see [`SCHEMA_VERSION`]):
///
/// ```json
/// {
///   "schema_version": 1,
///   "tenant": "acme",
///   "job": "job-0001",
///   "inputs": {
///     "image": { "key": "inputs/acme/job-0001/image.png" },
///     "audio": { "url": "https://other-bucket.example.com/speech.wav?X-Amz-Signature=..." }
///   },
///   "parameters": { "inference_steps": 25 },
///   "deadline": "2026-01-01T12:00:00Z",
///   "submitted_at": "2026-01-01T11:00:00Z"
/// }
/// ```
///
/// [`JobMessage::from_json`] checks the version first (any other, or none, is
/// [`ServiceError::UnsupportedSchemaVersion`]), then the shape (unknown fields are refused:
/// [`ServiceError::Malformed`]), then every id and key ([`ServiceError::InvalidField`], naming
/// the field) and the message's own rules ([`ServiceError::InvalidMessage`]). `parameters` and
/// `deadline` may be left out (`null`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobMessage {
    /// The tenant that owns the job.
    pub tenant: TenantId,
    /// The job.
    pub job: JobId,
    /// The portrait and the speech.
    pub inputs: JobInputs,
    /// How to run the job (inference steps, seed ...): opaque to the queue, read by the
    /// handler. `Null` when absent.
    pub parameters: serde_json::Value,
    /// When the result stops being useful, if ever. Enforcing it is the handler's business
    /// (see [`JobMessage::is_past_deadline`]).
    pub deadline: Option<DateTime<Utc>>,
    /// When the job was submitted.
    pub submitted_at: DateTime<Utc>,
}

/// The two inputs of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInputs {
    /// The portrait photo.
    pub image: InputRef,
    /// The speech recording.
    pub audio: InputRef,
}

/// Where one input is.
///
/// JSON: `{"key": "..."}` or `{"url": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputRef {
    /// An object of the job store's input bucket, under any key (not only
    /// `inputs/{tenant}/{job}/...`). [`ObjectKey`] guarantees it cannot leave the store's prefix.
    Key(ObjectKey),
    /// An object of another store, through a (signed) `http`/`https` URL.
    Url(InputUrl),
}

impl InputRef {
    /// An input by object key, validated (see [`ObjectKey`]).
    pub fn key(key: impl Into<String>) -> Result<Self> {
        ObjectKey::new(key)
            .map(InputRef::Key)
            .map_err(|source| ServiceError::InvalidField {
                field: "inputs.*.key",
                source,
            })
    }

    /// An input by URL, validated (see [`InputUrl`]).
    pub fn url(url: &str) -> Result<Self> {
        InputUrl::parse_field("inputs.*.url", url).map(InputRef::Url)
    }
}

impl From<ObjectKey> for InputRef {
    fn from(key: ObjectKey) -> Self {
        InputRef::Key(key)
    }
}

impl From<InputUrl> for InputRef {
    fn from(url: InputUrl) -> Self {
        InputRef::Url(url)
    }
}

/// A validated input URL: `http` or `https`, with a host, at most [`MAX_URL_LEN`] bytes, and no
/// user name or password in it (credentials belong in the signature, not in the authority).
///
/// Its `Debug` and `Display` leave out the query string, where signed URLs keep their
/// signature, so logging it leaks nothing; [`InputUrl::as_str`] gives the whole URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InputUrl(Url);

impl InputUrl {
    /// Validates `url`.
    pub fn parse(url: &str) -> Result<Self> {
        Self::parse_field("url", url)
    }

    fn parse_field(field: &'static str, url: &str) -> Result<Self> {
        let refuse = |reason: String| ServiceError::InvalidMessage { field, reason };
        if url.len() > MAX_URL_LEN {
            return Err(refuse(format!(
                "the URL is {} bytes long; the limit is {MAX_URL_LEN}",
                url.len()
            )));
        }
        let parsed = Url::parse(url).map_err(|err| refuse(format!("not a URL ({err})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refuse(format!(
                "scheme `{}` is not allowed; use http or https",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(refuse("the URL has no host".to_owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse(
                "the URL carries a user name or password; sign it instead".to_owned(),
            ));
        }
        Ok(Self(parsed))
    }

    /// The whole URL, signature included.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL without its query string and fragment (safe to log).
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        let had_query = url.query().is_some();
        url.set_query(None);
        url.set_fragment(None);
        if had_query {
            format!("{url}?…")
        } else {
            url.to_string()
        }
    }
}

impl fmt::Debug for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputUrl({:?})", self.redacted())
    }
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl JobMessage {
    /// A message for `job`, submitted now, with no parameters and no deadline.
    pub fn new(job: JobRef, image: InputRef, audio: InputRef) -> Self {
        Self {
            tenant: job.tenant,
            job: job.job,
            inputs: JobInputs { image, audio },
            parameters: serde_json::Value::Null,
            deadline: None,
            submitted_at: Utc::now(),
        }
    }

    /// Sets the parameters.
    pub fn with_parameters(mut self, parameters: serde_json::Value) -> Self {
        self.parameters = parameters;
        self
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: DateTime<Utc>) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The job this message is about.
    pub fn job_ref(&self) -> JobRef {
        JobRef::new(self.tenant.clone(), self.job.clone())
    }

    /// `{tenant}/{job}`: the `Nats-Msg-Id` of the submission, so the stream drops a repeated
    /// submission of the same job within its duplicate window. Ids never contain `/`, so this
    /// names exactly one job.
    pub fn message_id(&self) -> String {
        format!("{}/{}", self.tenant, self.job)
    }

    /// `true` if the message has a deadline and `now` is past it.
    pub fn is_past_deadline(&self, now: DateTime<Utc>) -> bool {
        self.deadline.is_some_and(|deadline| now > deadline)
    }

    /// Checks the rules that the field types do not already guarantee (a deadline not before
    /// the submission time).
    pub fn validate(&self) -> Result<()> {
        if let Some(deadline) = self.deadline
            && deadline < self.submitted_at
        {
            return Err(ServiceError::InvalidMessage {
                field: "deadline",
                reason: format!("{deadline} is before submitted_at {}", self.submitted_at),
            });
        }
        Ok(())
    }

    /// The message as JSON, at [`SCHEMA_VERSION`]. Validates first.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let wire = WireV1 {
            schema_version: SCHEMA_VERSION,
            tenant: self.tenant.as_str(),
            job: self.job.as_str(),
            inputs: WireInputs {
                image: WireInput::from(&self.inputs.image),
                audio: WireInput::from(&self.inputs.audio),
            },
            parameters: &self.parameters,
            deadline: self.deadline,
            submitted_at: self.submitted_at,
        };
        serde_json::to_vec(&wire).map_err(|source| ServiceError::Malformed {
            what: "job message",
            source,
        })
    }

    /// Decodes and validates a message (see the type's documentation for the checks).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "job message";
        let malformed = |source| ServiceError::Malformed { what: WHAT, source };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
        check_schema_version(WHAT, &value)?;
        let raw: RawV1 = serde_json::from_value(value).map_err(malformed)?;

        let tenant = TenantId::new(raw.tenant).map_err(|source| ServiceError::InvalidField {
            field: "tenant",
            source,
        })?;
        let job = JobId::new(raw.job).map_err(|source| ServiceError::InvalidField {
            field: "job",
            source,
        })?;
        let image = raw
            .inputs
            .image
            .validate("inputs.image.key", "inputs.image.url")?;
        let audio = raw
            .inputs
            .audio
            .validate("inputs.audio.key", "inputs.audio.url")?;
        let message = Self {
            tenant,
            job,
            inputs: JobInputs { image, audio },
            parameters: raw.parameters,
            deadline: raw.deadline,
            submitted_at: raw.submitted_at,
        };
        message.validate()?;
        Ok(message)
    }
}

/// Refuses a document whose `schema_version` is not [`SCHEMA_VERSION`].
pub(crate) fn check_schema_version(what: &'static str, value: &serde_json::Value) -> Result<()> {
    match value.get("schema_version") {
        Some(version) if version.as_u64() == Some(u64::from(SCHEMA_VERSION)) => Ok(()),
        found => Err(ServiceError::UnsupportedSchemaVersion {
            what,
            found: found.map_or_else(|| "(missing)".to_owned(), ToString::to_string),
            supported: SCHEMA_VERSION,
        }),
    }
}

#[derive(Serialize)]
struct WireV1<'a> {
    schema_version: u32,
    tenant: &'a str,
    job: &'a str,
    inputs: WireInputs<'a>,
    parameters: &'a serde_json::Value,
    deadline: Option<DateTime<Utc>>,
    submitted_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct WireInputs<'a> {
    image: WireInput<'a>,
    audio: WireInput<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum WireInput<'a> {
    Key(&'a str),
    Url(&'a str),
}

impl<'a> From<&'a InputRef> for WireInput<'a> {
    fn from(input: &'a InputRef) -> Self {
        match input {
            InputRef::Key(key) => WireInput::Key(key.as_str()),
            InputRef::Url(url) => WireInput::Url(url.as_str()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawV1 {
    #[allow(dead_code)]
    schema_version: u32,
    tenant: String,
    job: String,
    inputs: RawInputs,
    #[serde(default)]
    parameters: serde_json::Value,
    #[serde(default)]
    deadline: Option<DateTime<Utc>>,
    submitted_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    image: RawInput,
    audio: RawInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawInput {
    Key(String),
    Url(String),
}

impl RawInput {
    fn validate(self, key_field: &'static str, url_field: &'static str) -> Result<InputRef> {
        match self {
            RawInput::Key(key) => ObjectKey::new(key).map(InputRef::Key).map_err(|source| {
                ServiceError::InvalidField {
                    field: key_field,
                    source,
                }
            }),
            RawInput::Url(url) => InputUrl::parse_field(url_field, &url).map(InputRef::Url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sonic_storage::{InvalidReason, StorageError};

    fn sample() -> JobMessage {
        JobMessage::new(
            JobRef::parse("acme.prod", "job-0001").unwrap(),
            InputRef::key("shared/portraits/face.png").unwrap(),
            InputRef::url("https://other.example.com/a/speech.wav?X-Amz-Signature=abc").unwrap(),
        )
        .with_parameters(json!({"inference_steps": 2, "seed": 7, "scale": 1.144014537}))
        .with_deadline(Utc::now() + chrono::Duration::hours(1))
    }

    fn wire(message: &JobMessage) -> serde_json::Value {
        serde_json::from_slice(&message.to_json().unwrap()).unwrap()
    }

    #[test]
    fn round_trips() {
        let message = sample();
        let bytes = message.to_json().unwrap();
        let back = JobMessage::from_json(&bytes).unwrap();
        assert_eq!(back, message);
        let value = wire(&message);
        assert_eq!(value["schema_version"], 1);
        assert_eq!(
            value["inputs"]["image"],
            json!({"key": "shared/portraits/face.png"})
        );
        assert_eq!(
            value["inputs"]["audio"]["url"],
            "https://other.example.com/a/speech.wav?X-Amz-Signature=abc"
        );
        assert_eq!(message.message_id(), "acme.prod/job-0001");
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        let mut value = wire(&sample());
        let object = value.as_object_mut().unwrap();
        object.remove("parameters");
        object.remove("deadline");
        let back = JobMessage::from_json(value.to_string().as_bytes()).unwrap();
        assert_eq!(back.parameters, serde_json::Value::Null);
        assert_eq!(back.deadline, None);
    }

    #[test]
    fn refuses_other_schema_versions() {
        for version in [json!(2), json!(0), json!("1"), json!(null)] {
            let mut value = wire(&sample());
            value["schema_version"] = version.clone();
            match JobMessage::from_json(value.to_string().as_bytes()) {
                Err(ServiceError::UnsupportedSchemaVersion {
                    found, supported, ..
                }) => {
                    assert_eq!(found, version.to_string());
                    assert_eq!(supported, 1);
                }
                other => panic!("version {version} was not refused: {other:?}"),
            }
        }
        let mut value = wire(&sample());
        value.as_object_mut().unwrap().remove("schema_version");
        let err = JobMessage::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&err, ServiceError::UnsupportedSchemaVersion { found, .. } if found == "(missing)"),
            "{err:?}"
        );
        assert!(err.to_string().contains("reads version 1"), "{err}");
    }

    #[test]
    fn refuses_keys_that_escape_their_prefix() {
        for (field, bad) in [
            ("inputs.image.key", "../outputs/other/job/video.mp4"),
            ("inputs.image.key", "inputs/acme/../../etc/passwd"),
            ("inputs.image.key", "/etc/passwd"),
            ("inputs.image.key", "a/%2e%2e/b"),
        ] {
            let mut value = wire(&sample());
            value["inputs"]["image"] = json!({ "key": bad });
            match JobMessage::from_json(value.to_string().as_bytes()) {
                Err(ServiceError::InvalidField {
                    field: f,
                    source: StorageError::InvalidKey { key, .. },
                }) => {
                    assert_eq!(f, field);
                    assert_eq!(key, bad);
                }
                other => panic!("{bad:?} was not refused: {other:?}"),
            }
        }
        let mut value = wire(&sample());
        value["inputs"]["audio"] = json!({ "key": "x/../../y" });
        let err = JobMessage::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(
                &err,
                ServiceError::InvalidField {
                    field: "inputs.audio.key",
                    source: StorageError::InvalidKey {
                        reason: InvalidReason::DotSegment,
                        ..
                    }
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("inputs.audio.key"), "{err}");
    }

    #[test]
    fn refuses_bad_ids_urls_and_shapes() {
        let cases: Vec<(&str, serde_json::Value)> =
            vec![("tenant", json!("../x")), ("job", json!("a/b"))];
        for (field, bad) in cases {
            let mut value = wire(&sample());
            value[field] = bad;
            let err = JobMessage::from_json(value.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ServiceError::InvalidField { field: f, source: StorageError::InvalidId { .. } } if *f == field),
                "{err:?}"
            );
        }
        for bad in [
            "file:///etc/passwd",
            "ftp://host/x",
            "https://user:secret@host/x",
            "not a url",
            "https://",
            "mailto:someone@example.com",
        ] {
            let mut value = wire(&sample());
            value["inputs"]["audio"] = json!({ "url": bad });
            let err = JobMessage::from_json(value.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(
                    &err,
                    ServiceError::InvalidMessage {
                        field: "inputs.audio.url",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
        }
        // Not JSON, an unknown field, both key and url, a missing input.
        assert!(matches!(
            JobMessage::from_json(b"{not json"),
            Err(ServiceError::Malformed { .. })
        ));
        let mut value = wire(&sample());
        value["priority"] = json!(3);
        assert!(matches!(
            JobMessage::from_json(value.to_string().as_bytes()),
            Err(ServiceError::Malformed { .. })
        ));
        let mut value = wire(&sample());
        value["inputs"]["image"] = json!({"key": "a.png", "url": "https://h/a.png"});
        assert!(matches!(
            JobMessage::from_json(value.to_string().as_bytes()),
            Err(ServiceError::Malformed { .. })
        ));
        let mut value = wire(&sample());
        value["inputs"].as_object_mut().unwrap().remove("audio");
        assert!(matches!(
            JobMessage::from_json(value.to_string().as_bytes()),
            Err(ServiceError::Malformed { .. })
        ));
    }

    #[test]
    fn refuses_a_deadline_before_submission() {
        let mut message = sample();
        message.deadline = Some(message.submitted_at - chrono::Duration::seconds(1));
        assert!(matches!(
            message.to_json(),
            Err(ServiceError::InvalidMessage {
                field: "deadline",
                ..
            })
        ));
        assert!(message.is_past_deadline(Utc::now()));
        assert!(!sample().is_past_deadline(Utc::now()));
    }

    #[test]
    fn urls_do_not_leak_signatures_in_logs() {
        let url =
            InputUrl::parse("https://h.example.com/a/b.wav?X-Amz-Signature=secret#frag").unwrap();
        assert_eq!(url.to_string(), "https://h.example.com/a/b.wav?…");
        assert!(!format!("{url:?}").contains("secret"));
        assert!(url.as_str().contains("secret"));
        let message = sample();
        assert!(!format!("{message:?}").contains("X-Amz-Signature"));
    }
}
