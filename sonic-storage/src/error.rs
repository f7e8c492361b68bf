//! The error type of every fallible operation in this crate.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

/// Which limit a request ran into (see [`StorageError::Timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No connection was established within the connect timeout.
    Connect,
    /// The request (connect, send, response and body) did not finish within the request
    /// timeout: the endpoint accepted the connection but did not answer in time.
    Request,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::Request => "request",
        })
    }
}

/// The configured limits of a store's HTTP client, used to say how long a request that timed
/// out was given. `None`: unknown (a store built outside this crate) or disabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeoutLimits {
    pub(crate) connect: Option<Duration>,
    pub(crate) request: Option<Duration>,
}

impl TimeoutLimits {
    fn of(&self, kind: TimeoutKind) -> Option<Duration> {
        match kind {
            TimeoutKind::Connect => self.connect,
            TimeoutKind::Request => self.request,
        }
    }
}

/// `no connection within the 5s connect timeout`, `no answer within the 30s request timeout`,
/// or without the limit when it is unknown.
fn timeout_text(kind: &TimeoutKind, after: &Option<Duration>) -> String {
    let what = match kind {
        TimeoutKind::Connect => "no connection",
        TimeoutKind::Request => "no answer",
    };
    match after {
        Some(after) => format!("{what} within the {after:?} {kind} timeout"),
        None => format!("{what} ({kind} timeout)"),
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
    /// A job has several inputs of one kind (`image.png` and `image.jpg`) and none was named
    /// by key: the job refuses to pick one.
    #[error("{kind} input is ambiguous in {store}: {} (name one by its key)", keys.join(", "))]
    AmbiguousInput {
        /// The store's URL.
        store: String,
        /// `image` or `audio`.
        kind: String,
        /// The candidate keys, sorted.
        keys: Vec<String>,
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
    /// The store refused the credentials or the permission (HTTP 401/403), or the local
    /// directory cannot be written or read (the file system refused with `EACCES`/`EROFS`).
    /// The store's own message (an S3 `<Code>`, the file and OS error) is in the source chain.
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
    /// A credentials file ([`CredentialsFile`](crate::CredentialsFile)) could not be used: it
    /// is missing, unreadable or malformed when the store is opened, or later, once the
    /// credentials read from it before have expired. Names the file, never its secrets; the I/O
    /// or JSON error is the source.
    #[error("credentials file `{}` {reason}", path.display())]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (`does not exist`, `is not a JSON object of credentials`,
        /// `has no access key id ...`).
        reason: String,
        /// The I/O or JSON error, if any.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
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
    /// A remote store did not connect or answer within the configured limit
    /// ([`TransportOptions`](crate::TransportOptions): connect and request timeouts), after the
    /// retries the retry policy allows. The client's timeout error is the source.
    #[error("{operation} `{key}` on {store} timed out: {}", timeout_text(.kind, .after))]
    Timeout {
        /// The store's URL.
        store: String,
        /// The operation (`put`, `get`, `head`, `list` ...).
        operation: &'static str,
        /// The key or prefix.
        key: String,
        /// Which limit was hit.
        kind: TimeoutKind,
        /// The configured limit that was hit, when known (`None` for a store built outside
        /// this crate, see [`Bucket::with_timeout_limits`](crate::Bucket::with_timeout_limits)).
        after: Option<Duration>,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Any other store failure: network (connection refused, DNS, TLS), server error after the
    /// configured retries, an unexpected local file system error.
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
    /// Maps an `object_store` error to the matching variant; `limits` are the store's
    /// configured timeouts (reported in [`StorageError::Timeout`]).
    pub(crate) fn from_store(
        store: &str,
        operation: &'static str,
        key: &str,
        source: object_store::Error,
        limits: &TimeoutLimits,
    ) -> Self {
        // A credentials file that failed once its credentials had expired: the provider's error,
        // passed through unchanged by object_store.
        let source = match source {
            object_store::Error::Generic {
                store: name,
                source,
            } => match source.downcast::<crate::credentials::FileError>() {
                Ok(error) => return (*error).into(),
                Err(source) => object_store::Error::Generic {
                    store: name,
                    source,
                },
            },
            other => other,
        };
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
            source => {
                if let Some(kind) = timeout_kind(&source) {
                    Self::Timeout {
                        store,
                        operation,
                        key,
                        kind,
                        after: limits.of(kind),
                        source: boxed(source),
                    }
                } else if io_permission_denied(&source) {
                    Self::PermissionDenied {
                        store,
                        key,
                        source: boxed(source),
                    }
                } else {
                    Self::Backend {
                        store,
                        operation,
                        key,
                        source: boxed(source),
                    }
                }
            }
        }
    }

    /// `true` for [`StorageError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// `true` for [`StorageError::PermissionDenied`].
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::PermissionDenied { .. })
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

/// `error` and its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    fn next<'a>(e: &&'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
        (*e).source()
    }
    std::iter::successors(Some(error), next)
}

/// Whether an error is, or was caused by, a client timeout, and which one.
///
/// object_store reports a timed-out request as a `Generic` error whose sources are its retry
/// error, its `HttpError` (kind `Timeout`) and the `reqwest::Error`; a connect timeout is a
/// reqwest error that is both `is_connect()` and `is_timeout()`. Other clients may only leave
/// an `io::Error` of kind `TimedOut` somewhere in the chain. The whole chain is searched, and
/// the most precise answer wins (reqwest's, which tells connect from request timeouts).
pub(crate) fn timeout_kind(error: &(dyn StdError + 'static)) -> Option<TimeoutKind> {
    let mut found = None;
    for e in chain(error) {
        #[cfg(feature = "_http")]
        {
            if let Some(e) = e.downcast_ref::<reqwest::Error>()
                && e.is_timeout()
            {
                return Some(if e.is_connect() {
                    TimeoutKind::Connect
                } else {
                    TimeoutKind::Request
                });
            }
            if let Some(e) = e.downcast_ref::<object_store::client::HttpError>()
                && e.kind() == object_store::client::HttpErrorKind::Timeout
            {
                found.get_or_insert(TimeoutKind::Request);
            }
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::TimedOut
        {
            found.get_or_insert(TimeoutKind::Request);
        }
    }
    found
}

/// Whether the local file system refused an operation: an `io::Error` of kind
/// `PermissionDenied` or `ReadOnlyFilesystem` in the chain (object_store's local store reports
/// these as `Generic` errors).
fn io_permission_denied(error: &(dyn StdError + 'static)) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: impl StdError + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(source),
        }
    }

    /// An error that wraps another, as object_store's private error types do.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: {0}")]
    struct Wrapped(#[source] Box<dyn StdError + Send + Sync>);

    const LIMITS: TimeoutLimits = TimeoutLimits {
        connect: Some(Duration::from_secs(5)),
        request: Some(Duration::from_secs(30)),
    };

    #[test]
    fn io_timeouts_deep_in_the_chain_are_timeouts() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline elapsed");
        let error = generic(Wrapped(Box::new(Wrapped(Box::new(io)))));
        assert_eq!(timeout_kind(&error), Some(TimeoutKind::Request));
        let mapped = StorageError::from_store("s3://b", "put", "k", error, &LIMITS);
        match &mapped {
            StorageError::Timeout {
                operation: "put",
                kind: TimeoutKind::Request,
                after: Some(after),
                ..
            } => assert_eq!(*after, Duration::from_secs(30)),
            other => panic!("expected a timeout, got {other:?}"),
        }
        let shown = mapped.to_string();
        assert!(
            shown.contains("put `k` on s3://b timed out") && shown.contains("30s request timeout"),
            "{shown}"
        );
        assert!(mapped.is_timeout());
    }

    #[cfg(feature = "_http")]
    #[test]
    fn http_timeouts_are_timeouts() {
        use object_store::client::{HttpError, HttpErrorKind};
        let http = HttpError::new(
            HttpErrorKind::Timeout,
            Wrapped("operation timed out".into()),
        );
        let error = generic(Wrapped(Box::new(http)));
        assert_eq!(timeout_kind(&error), Some(TimeoutKind::Request));

        let refused = HttpError::new(HttpErrorKind::Connect, Wrapped("connection refused".into()));
        let error = generic(Wrapped(Box::new(refused)));
        assert_eq!(timeout_kind(&error), None);
        assert!(matches!(
            StorageError::from_store("s3://b", "get", "k", error, &LIMITS),
            StorageError::Backend {
                operation: "get",
                ..
            }
        ));
    }

    #[test]
    fn unknown_limits_still_say_what_timed_out() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline elapsed");
        let mapped = StorageError::from_store(
            "s3://b",
            "head",
            "k",
            generic(io),
            &TimeoutLimits::default(),
        );
        assert!(matches!(mapped, StorageError::Timeout { after: None, .. }));
        assert_eq!(
            mapped.to_string(),
            "head `k` on s3://b timed out: no answer (request timeout)"
        );
    }

    #[test]
    fn other_errors_are_not_timeouts() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(timeout_kind(&generic(io)), None);
        let not_found = object_store::Error::NotFound {
            path: "k".into(),
            source: "missing".into(),
        };
        assert!(
            StorageError::from_store("memory://", "get", "k", not_found, &LIMITS).is_not_found()
        );
    }

    #[test]
    fn local_permission_errors_are_permission_denied() {
        for kind in [
            std::io::ErrorKind::PermissionDenied,
            std::io::ErrorKind::ReadOnlyFilesystem,
        ] {
            let io = std::io::Error::new(kind, "refused by the file system");
            let mapped = StorageError::from_store(
                "file:///srv/sonic/",
                "put",
                "k",
                generic(Wrapped(Box::new(io))),
                &LIMITS,
            );
            assert!(mapped.is_permission_denied(), "{mapped:?}");
            assert_eq!(
                mapped.to_string(),
                "access to `k` in file:///srv/sonic/ was denied"
            );
        }
    }
}
