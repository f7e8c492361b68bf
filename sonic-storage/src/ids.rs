//! Validated tenant and job ids, and the job reference that names a job's objects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{IdKind, InvalidReason, Result, StorageError};
use crate::key::{InputKind, ObjectKey};

/// The longest tenant or job id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks an id: 1..=[`MAX_ID_LEN`] bytes of ASCII letters, digits, `-`, `_` and `.`, starting
/// with a letter or digit, and no `..` anywhere. The rule is stricter than "no `/`, no `..`, no
/// control characters" so ids are also safe in URLs, file names and log lines.
fn validate_id(kind: IdKind, value: &str) -> Result<()> {
    let refuse = |reason| StorageError::InvalidId {
        kind,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(refuse(InvalidReason::Empty));
    }
    if value.len() > MAX_ID_LEN {
        return Err(refuse(InvalidReason::TooLong {
            len: value.len(),
            max: MAX_ID_LEN,
        }));
    }
    for (index, ch) in value.char_indices() {
        if ch.is_control() {
            return Err(refuse(InvalidReason::ControlChar { index }));
        }
        if !(ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) {
            return Err(refuse(InvalidReason::ForbiddenChar { ch, index }));
        }
    }
    if value.contains("..") {
        return Err(refuse(InvalidReason::DotSegment));
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(refuse(InvalidReason::BadStart));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` (see the type's documentation for the rule).
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate_id($kind, &value)?;
                Ok(Self(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = StorageError;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = StorageError;
            fn try_from(value: String) -> Result<Self> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = StorageError;
            fn try_from(value: &str) -> Result<Self> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A validated tenant id: 1 to [`MAX_ID_LEN`] bytes of ASCII letters, digits, `-`, `_` and
    /// `.`, starting with a letter or digit, with no `..`. Anything else is refused with
    /// [`StorageError::InvalidId`].
    ///
    /// ```
    /// # use sonic_storage::{TenantId, StorageError};
    /// assert!(TenantId::new("acme-prod").is_ok());
    /// assert!(matches!(TenantId::new("../etc"), Err(StorageError::InvalidId { .. })));
    /// ```
    TenantId,
    IdKind::Tenant
);

id_type!(
    /// A validated job id, with the same rule as [`TenantId`].
    ///
    /// ```
    /// # use sonic_storage::JobId;
    /// assert!(JobId::new("2025-06-01T12.00.00Z-7f3a").is_ok());
    /// assert!(JobId::new("a/b").is_err());
    /// ```
    JobId,
    IdKind::Job
);

/// One job of one tenant: names every object the job reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobRef {
    /// The tenant that owns the job.
    pub tenant: TenantId,
    /// The job.
    pub job: JobId,
}

impl JobRef {
    /// A job reference from validated ids.
    pub fn new(tenant: TenantId, job: JobId) -> Self {
        Self { tenant, job }
    }

    /// Validates both ids.
    pub fn parse(tenant: &str, job: &str) -> Result<Self> {
        Ok(Self::new(TenantId::new(tenant)?, JobId::new(job)?))
    }

    /// `inputs/{tenant}/{job}`: the prefix of the job's inputs.
    pub fn input_prefix(&self) -> ObjectKey {
        ObjectKey::from_trusted(format!("inputs/{}/{}", self.tenant, self.job))
    }

    /// `outputs/{tenant}/{job}`: the prefix of the job's outputs.
    pub fn output_prefix(&self) -> ObjectKey {
        ObjectKey::from_trusted(format!("outputs/{}/{}", self.tenant, self.job))
    }

    /// `inputs/{tenant}/{job}/{image|audio}.{ext}`. The extension must be 1 to 8 ASCII letters
    /// or digits (`png`, `jpg`, `wav`, `mp3` ...), else [`StorageError::InvalidKey`].
    pub fn input_key(&self, kind: InputKind, ext: &str) -> Result<ObjectKey> {
        let name = format!("{}.{ext}", kind.stem());
        if ext.is_empty() || ext.len() > 8 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StorageError::InvalidKey {
                key: format!("{}/{name}", self.input_prefix()),
                reason: match ext.char_indices().find(|(_, c)| !c.is_ascii_alphanumeric()) {
                    Some((index, ch)) if ch.is_control() => InvalidReason::ControlChar { index },
                    Some((index, ch)) => InvalidReason::ForbiddenChar { ch, index },
                    None if ext.is_empty() => InvalidReason::Empty,
                    None => InvalidReason::TooLong {
                        len: ext.len(),
                        max: 8,
                    },
                },
            });
        }
        Ok(self.input_prefix().join_trusted(&name))
    }

    /// `outputs/{tenant}/{job}/{name}`. `name` must be a single valid key segment (no `/`, no
    /// `..`), else [`StorageError::InvalidKey`].
    pub fn output_key(&self, name: &str) -> Result<ObjectKey> {
        self.output_prefix().join(name)
    }

    /// `outputs/{tenant}/{job}/video.mp4`.
    pub fn video_key(&self) -> ObjectKey {
        self.output_prefix().join_trusted("video.mp4")
    }

    /// `outputs/{tenant}/{job}/manifest.json`.
    pub fn manifest_key(&self) -> ObjectKey {
        self.output_prefix().join_trusted("manifest.json")
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(value: &str) -> InvalidReason {
        match TenantId::new(value) {
            Err(StorageError::InvalidId { reason, kind, .. }) => {
                assert_eq!(kind, IdKind::Tenant);
                reason
            }
            other => panic!("{value:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_ids() {
        for ok in [
            "a",
            "acme",
            "ACME_2",
            "job-0001",
            "v1.2",
            "x".repeat(MAX_ID_LEN).as_str(),
        ] {
            assert_eq!(TenantId::new(ok).unwrap().as_str(), ok);
            assert_eq!(JobId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_ids_with_reasons() {
        assert_eq!(reason(""), InvalidReason::Empty);
        assert_eq!(reason(".."), InvalidReason::DotSegment);
        assert_eq!(reason("a..b"), InvalidReason::DotSegment);
        assert_eq!(reason("."), InvalidReason::BadStart);
        assert_eq!(reason("-rf"), InvalidReason::BadStart);
        assert_eq!(
            reason("a/b"),
            InvalidReason::ForbiddenChar { ch: '/', index: 1 }
        );
        assert_eq!(
            reason("a\\b"),
            InvalidReason::ForbiddenChar { ch: '\\', index: 1 }
        );
        assert_eq!(reason("a\nb"), InvalidReason::ControlChar { index: 1 });
        assert_eq!(reason("a\u{0}"), InvalidReason::ControlChar { index: 1 });
        assert_eq!(
            reason("caf\u{e9}"),
            InvalidReason::ForbiddenChar {
                ch: '\u{e9}',
                index: 3
            }
        );
        assert_eq!(
            reason(&"x".repeat(MAX_ID_LEN + 1)),
            InvalidReason::TooLong {
                len: MAX_ID_LEN + 1,
                max: MAX_ID_LEN
            }
        );
        assert!(matches!(
            JobId::new("a b"),
            Err(StorageError::InvalidId {
                kind: IdKind::Job,
                ..
            })
        ));
    }

    #[test]
    fn serde_validates() {
        let job: JobRef = serde_json::from_str(r#"{"tenant":"acme","job":"j1"}"#).unwrap();
        assert_eq!(job, JobRef::parse("acme", "j1").unwrap());
        let err = serde_json::from_str::<JobRef>(r#"{"tenant":"../x","job":"j1"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid tenant id"), "{err}");
    }

    #[test]
    fn key_layout() {
        let job = JobRef::parse("acme", "j1").unwrap();
        assert_eq!(
            job.input_key(InputKind::Image, "png").unwrap().as_str(),
            "inputs/acme/j1/image.png"
        );
        assert_eq!(
            job.input_key(InputKind::Audio, "wav").unwrap().as_str(),
            "inputs/acme/j1/audio.wav"
        );
        assert_eq!(job.video_key().as_str(), "outputs/acme/j1/video.mp4");
        assert_eq!(job.manifest_key().as_str(), "outputs/acme/j1/manifest.json");
        assert_eq!(
            job.output_key("preview.gif").unwrap().as_str(),
            "outputs/acme/j1/preview.gif"
        );
        for bad_ext in ["", "p/ng", "../x", "verylongext", "p\0"] {
            assert!(
                matches!(
                    job.input_key(InputKind::Image, bad_ext),
                    Err(StorageError::InvalidKey { .. })
                ),
                "{bad_ext:?}"
            );
        }
        for bad_name in ["", "..", ".", "a/b", "../../x", "x\u{7f}"] {
            assert!(
                matches!(
                    job.output_key(bad_name),
                    Err(StorageError::InvalidKey { .. })
                ),
                "{bad_name:?}"
            );
        }
    }
}
