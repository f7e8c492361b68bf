//! Validated object keys, relative to a store's root prefix.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{InvalidReason, Result, StorageError};

/// The longest object key, in bytes (S3, OSS and GCS allow 1024).
pub const MAX_KEY_LEN: usize = 1024;

/// The two inputs of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum InputKind {
    /// The portrait photo: `inputs/{tenant}/{job}/image.{ext}`.
    Image,
    /// The speech recording: `inputs/{tenant}/{job}/audio.{ext}`.
    Audio,
}

impl InputKind {
    /// The file stem of this input's key (`image` or `audio`).
    pub fn stem(self) -> &'static str {
        match self {
            InputKind::Image => "image",
            InputKind::Audio => "audio",
        }
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stem())
    }
}

/// A validated object key such as `outputs/acme/job-1/video.mp4`, relative to its store's root
/// (the bucket plus the store URL's prefix).
///
/// A key is at most [`MAX_KEY_LEN`] bytes of `/`-separated segments; it never starts with `/`,
/// never has an empty, `.` or `..` segment, and contains no control characters, no backtick
/// and none of `\ { } [ ] < > ^ % " ~ # | * ?` (the characters S3 and GCS advise against;
/// refusing `%` also rules out percent-encoded tricks such as `%2e%2e`). So a key can never
/// address anything outside its store's prefix: `ObjectKey::new("../x")` is refused with
/// [`StorageError::InvalidKey`].
///
/// ```
/// # use sonic_storage::{ObjectKey, StorageError};
/// let key = ObjectKey::new("outputs/acme/j1/video.mp4")?;
/// assert_eq!(key.file_name(), "video.mp4");
/// assert!(matches!(ObjectKey::new("outputs/../../etc/passwd"), Err(StorageError::InvalidKey { .. })));
/// # Ok::<(), StorageError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

/// Characters refused in keys, besides control characters.
const FORBIDDEN: &[char] = &[
    '/', '\\', '{', '}', '[', ']', '<', '>', '^', '%', '`', '"', '~', '#', '|', '*', '?',
];

fn validate_segment(key: &str, segment: &str, offset: usize) -> Result<()> {
    let refuse = |reason| StorageError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    if segment.is_empty() {
        return Err(refuse(InvalidReason::EmptySegment));
    }
    if segment == "." || segment == ".." {
        return Err(refuse(InvalidReason::DotSegment));
    }
    for (i, ch) in segment.char_indices() {
        let index = offset + i;
        if ch.is_control() {
            return Err(refuse(InvalidReason::ControlChar { index }));
        }
        // The characters S3 and GCS advise against in keys, which object_store would
        // percent-encode (so the stored key would differ from ours); `\` is also a separator
        // on Windows and `#` marks the local file system store's staging files.
        if FORBIDDEN.contains(&ch) {
            return Err(refuse(InvalidReason::ForbiddenChar { ch, index }));
        }
    }
    Ok(())
}

impl ObjectKey {
    /// Validates `key` (see the type's documentation for the rule).
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        if key.is_empty() {
            return Err(StorageError::InvalidKey {
                key,
                reason: InvalidReason::Empty,
            });
        }
        if key.len() > MAX_KEY_LEN {
            return Err(StorageError::InvalidKey {
                reason: InvalidReason::TooLong {
                    len: key.len(),
                    max: MAX_KEY_LEN,
                },
                key,
            });
        }
        if key.starts_with('/') {
            return Err(StorageError::InvalidKey {
                key,
                reason: InvalidReason::Absolute,
            });
        }
        let mut offset = 0;
        for segment in key.split('/') {
            validate_segment(&key, segment, offset)?;
            offset += segment.len() + 1;
        }
        Ok(Self(key))
    }

    /// A key this crate built from validated parts.
    pub(crate) fn from_trusted(key: String) -> Self {
        debug_assert!(Self::new(key.clone()).is_ok(), "{key:?}");
        Self(key)
    }

    /// `self/segment`, validating `segment` as a single key segment.
    pub fn join(&self, segment: &str) -> Result<Self> {
        let joined = format!("{}/{segment}", self.0);
        if segment.contains('/') {
            return Err(StorageError::InvalidKey {
                key: joined,
                reason: InvalidReason::NotASegment,
            });
        }
        validate_segment(&joined, segment, self.0.len() + 1)?;
        if joined.len() > MAX_KEY_LEN {
            return Err(StorageError::InvalidKey {
                reason: InvalidReason::TooLong {
                    len: joined.len(),
                    max: MAX_KEY_LEN,
                },
                key: joined,
            });
        }
        Ok(Self(joined))
    }

    pub(crate) fn join_trusted(&self, segment: &str) -> Self {
        Self::from_trusted(format!("{}/{segment}", self.0))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment (`video.mp4` for `outputs/acme/j1/video.mp4`).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The extension of the last segment, if it has one (`mp4`).
    pub fn extension(&self) -> Option<&str> {
        let name = self.file_name();
        name.rsplit_once('.')
            .map(|(_, ext)| ext)
            .filter(|ext| !ext.is_empty())
    }

    /// `true` if `prefix` is this key or a whole-segment prefix of it (`a/b` is a prefix of
    /// `a/b/c`, not of `a/bc`).
    pub fn starts_with(&self, prefix: &ObjectKey) -> bool {
        self.0 == prefix.0
            || (self.0.starts_with(&prefix.0) && self.0.as_bytes()[prefix.0.len()] == b'/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectKey {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = StorageError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = StorageError;
    fn try_from(value: &str) -> Result<Self> {
        Self::new(value)
    }
}

impl From<ObjectKey> for String {
    fn from(key: ObjectKey) -> String {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> InvalidReason {
        match ObjectKey::new(key) {
            Err(StorageError::InvalidKey { reason, .. }) => reason,
            other => panic!("{key:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn keys_cannot_leave_their_prefix() {
        assert_eq!(reason(""), InvalidReason::Empty);
        assert_eq!(reason(".."), InvalidReason::DotSegment);
        assert_eq!(reason("../x"), InvalidReason::DotSegment);
        assert_eq!(reason("a/../../b"), InvalidReason::DotSegment);
        assert_eq!(reason("a/./b"), InvalidReason::DotSegment);
        assert_eq!(reason("/etc/passwd"), InvalidReason::Absolute);
        assert_eq!(reason("a//b"), InvalidReason::EmptySegment);
        assert_eq!(reason("a/b/"), InvalidReason::EmptySegment);
        assert_eq!(
            reason("a\\..\\b"),
            InvalidReason::ForbiddenChar { ch: '\\', index: 1 }
        );
        assert_eq!(reason("a/b\0"), InvalidReason::ControlChar { index: 3 });
        assert_eq!(
            reason("a/video.mp4#1"),
            InvalidReason::ForbiddenChar { ch: '#', index: 11 }
        );
        assert_eq!(
            reason("a/%2e%2e/b"),
            InvalidReason::ForbiddenChar { ch: '%', index: 2 }
        );
        assert!(matches!(
            reason(&"a".repeat(MAX_KEY_LEN + 1)),
            InvalidReason::TooLong { .. }
        ));
    }

    #[test]
    fn join_takes_one_segment() {
        let base = ObjectKey::new("outputs/acme/j1").unwrap();
        assert_eq!(
            base.join("video.mp4").unwrap().as_str(),
            "outputs/acme/j1/video.mp4"
        );
        assert!(matches!(
            base.join("../j2/video.mp4"),
            Err(StorageError::InvalidKey {
                reason: InvalidReason::NotASegment,
                ..
            })
        ));
        assert!(base.join("..").is_err());
        assert!(base.join("").is_err());
    }

    #[test]
    fn names_and_prefixes() {
        let key = ObjectKey::new("outputs/acme/j1/video.mp4").unwrap();
        assert_eq!(key.file_name(), "video.mp4");
        assert_eq!(key.extension(), Some("mp4"));
        assert!(key.starts_with(&ObjectKey::new("outputs/acme").unwrap()));
        assert!(!key.starts_with(&ObjectKey::new("outputs/ac").unwrap()));
        assert_eq!(key.segments().count(), 4);
        let unicode = ObjectKey::new("inputs/a/b/visage é.png").unwrap();
        assert_eq!(unicode.extension(), Some("png"));
    }
}
