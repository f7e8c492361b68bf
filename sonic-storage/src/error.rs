//! The error type of every fallible operation in this crate.

use std::fmt;
use std::path::PathBuf;

/// `Result` with [`StorageError`] as the default error.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which kind of identifier was refused (see [`StorageError::InvalidId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// A [`TenantId`](crate::TenantId).
    Tenant,
    /// A [`JobId`](crate::JobId).
    Job,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Tenant => "tenant",
            IdKind::Job => "job",
        })
    }
}

/// Why an id or an object key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The value is empty.
    #[error("it is empty")]
    Empty,
    /// The value is longer than allowed.
    #[error("it is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The value contains a character that is not allowed here (`/` in an id, `\` in a key ...).
    #[error("it contains the forbidden character {ch:?} at byte {index}")]
    ForbiddenChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        index: usize,
    },
    /// The value contains a control character.
    #[error("it contains a control character at byte {index}")]
    ControlChar {
        /// Its byte offset.
        index: usize,
    },
    /// The value is, or contains, a `.`/`..` path segment that would leave its prefix.
    #[error("it contains a `.` or `..` segment, which would leave its prefix")]
    DotSegment,
    /// A key starts with `/` (keys are relative to their store's prefix).
    #[error("it starts with `/`; keys are relative to their store")]
    Absolute,
    /// A key has an empty segment (`a//b`, or a trailing `/`).
    #[error("it has an empty path segment")]
    EmptySegment,
    /// An id must start with an ASCII letter or digit.
    #[error("it must start with an ASCII letter or digit")]
    BadStart,
    /// A name that must be a single path segment contains `/`.
    #[error("it must be a single path segment (no `/`)")]
    NotASegment,
}

/// Everything that can go wrong while storing or fetching job data.
///
/// Variants are matchable; the underlying error (from `object_store`, the file system or
/// `serde_json`) is kept as the [source](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    #[error("object `{key}` not found in {store}")]
    NotFound {
        /// The store's URL.
        store: String,
        /// The key that was looked up.
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A create-only write found an object at the key; nothing was overwritten.
    #[error("object `{key}` already exists in {store}; create-only writes never overwrite")]
    AlreadyExists {
        /// The store's URL.
        store: String,
        /// The key that already exists.
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A conditional request's precondition did not hold.
    #[error("precondition failed for `{key}` in {store}")]
    Precondition {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A tenant or job id was refused.
    #[error("invalid {kind} id {value:?}: {reason}")]
    InvalidId {
        /// Which id.
        kind: IdKind,
        /// The refused value.
        value: String,
        /// Why.
        reason: InvalidReason,
    },
    /// An object key (or a name or extension that becomes part of one) was refused.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The refused key.
        key: String,
        /// Why.
        reason: InvalidReason,
    },
    /// An argument is out of range (an empty byte range, an expiry too long, a part size too
    /// small ...).
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The store configuration (URL, endpoint, region, credentials) is unusable.
    #[error("invalid storage configuration `{url}`: {reason}")]
    InvalidConfig {
        /// The store URL being configured.
        url: String,
        /// What is wrong.
        reason: String,
        /// The underlying builder error, if any.
        #[source]
        source: Option<Box<object_store::Error>>,
    },
    /// The store cannot do this (for example signing a URL on a local directory, or a store
    /// whose cargo feature is disabled). Never silently replaced by something weaker.
    #[error("{operation} is not supported by {store}")]
    NotSupported {
        /// The store's URL (or scheme).
        store: String,
        /// What was asked for.
        operation: String,
        /// The store's error, if it reported one.
        #[source]
        source: Option<Box<object_store::Error>>,
    },
    /// The store refused the credentials or the permission.
    #[error("access to `{key}` in {store} was denied")]
    PermissionDenied {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Reading the caller's upload body failed; the upload was aborted and left nothing visible.
    #[error("reading the body to upload to `{key}` failed; the upload was aborted")]
    Body {
        /// The destination key.
        key: String,
        /// The body's error.
        #[source]
        source: std::io::Error,
    },
    /// A local file could not be read or written.
    #[error("local file `{}`", path.display())]
    Io {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be encoded, or the object at its key is not a valid manifest.
    #[error("manifest `{key}` is not a valid job manifest")]
    Manifest {
        /// The manifest's key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Any other store failure: network, timeout after the configured retries, server error.
    #[error("{operation} `{key}` on {store} failed")]
    Backend {
        /// The store's URL.
        store: String,
        /// The operation (`put`, `get`, `list` ...).
        operation: &'static str,
        /// The key or prefix.
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
}

impl StorageError {
    /// Maps an `object_store` error to the matching variant.
    pub(crate) fn from_store(
        store: &str,
        operation: &'static str,
        key: &str,
        source: object_store::Error,
    ) -> Self {
        let (store, key) = (store.to_owned(), key.to_owned());
        let boxed = |source| Box::new(source);
        match source {
            object_store::Error::NotFound { .. } => Self::NotFound {
                store,
                key,
                source: boxed(source),
            },
            object_store::Error::AlreadyExists { .. } => Self::AlreadyExists {
                store,
                key,
                source: boxed(source),
            },
            object_store::Error::Precondition { .. } => Self::Precondition {
                store,
                key,
                source: boxed(source),
            },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Self::PermissionDenied {
                store,
                key,
                source: boxed(source),
            },
            object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. } => Self::NotSupported {
                store,
                operation: format!("{operation} `{key}`"),
                source: Some(boxed(source)),
            },
            source => Self::Backend {
                store,
                operation,
                key,
                source: boxed(source),
            },
        }
    }

    /// `true` for [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// `true` for [`StorageError::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }
}
