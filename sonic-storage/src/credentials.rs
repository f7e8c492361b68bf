//! Credentials that expire: S3/OSS credentials read from a file that a sidecar rewrites.
//!
//! A worker runs for days; STS credentials expire within hours. [`CredentialsFile`] names a JSON
//! file holding the current credentials (an agent such as Vault agent, a cron job or an init
//! container's sidecar rewrites it before they expire); a store opened with it re-reads the file
//! when it changes and before its credentials expire, without being reopened.
// Without `s3` the file is configured but never read (no store could use it).
#![cfg_attr(not(feature = "s3"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::Credentials;
use crate::error::StorageError;

/// The environment variable naming the credentials file of `s3://` stores (when neither the
/// [`StoreConfig`](crate::StoreConfig) nor the URL names one).
pub const S3_CREDENTIALS_FILE_ENV: &str = "SONIC_S3_CREDENTIALS_FILE";

/// The environment variable naming the credentials file of `oss://` stores.
pub const OSS_CREDENTIALS_FILE_ENV: &str = "SONIC_OSS_CREDENTIALS_FILE";

/// How often, by default, a store looks at its credentials file (one `stat`, no read unless it
/// changed or its credentials are due).
pub const DEFAULT_CREDENTIALS_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How long, by default, before their `expiration` credentials are read again.
pub const DEFAULT_CREDENTIALS_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The largest credentials file read (a credentials file is a few hundred bytes).
const MAX_FILE_LEN: u64 = 64 * 1024;

/// A credentials file for `s3://` and `oss://` stores, re-read while the store is in use.
///
/// The file is JSON; keys in either spelling (snake case, or AWS `credential_process` /
/// Aliyun STS style), unknown keys ignored:
///
/// ```json
/// {
///   "access_key_id": "ASIA...",
///   "secret_access_key": "...",
///   "session_token": "...",
///   "expiration": "2025-06-01T12:00:00Z"
/// }
/// ```
///
/// | field | also accepted | |
/// |---|---|---|
/// | `access_key_id` | `AccessKeyId` | required |
/// | `secret_access_key` | `SecretAccessKey`, `AccessKeySecret` | required |
/// | `session_token` | `SessionToken`, `Token`, `SecurityToken` | STS credentials |
/// | `expiration` | `Expiration` | RFC 3339; absent or `null`: never expires |
///
/// **Refresh rule.** At most once per [`check_interval`](Self::check_interval) (default
/// [`DEFAULT_CREDENTIALS_CHECK_INTERVAL`]) a request looks at the file's metadata; the file is
/// read again when its size, modification time or inode changed, or when the credentials read
/// last expire within [`refresh_margin`](Self::refresh_margin) (default
/// [`DEFAULT_CREDENTIALS_REFRESH_MARGIN`]). Write the new file next to the old one and rename it
/// into place, so that a reader never sees half a file. A file that has become unreadable or
/// malformed is reported (a `tracing` warning) and the credentials read before stay in use until
/// they expire; after that requests fail with [`StorageError::CredentialsFile`] (each one
/// looking at the file again, so the first request after it is fixed succeeds).
///
/// Opening a store reads the file once: a missing or malformed file fails the open with
/// [`StorageError::CredentialsFile`], which names the file (never its secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialsFile {
    /// The file.
    pub path: PathBuf,
    /// The shortest time between two looks at the file.
    pub check_interval: Duration,
    /// How long before their expiration credentials are read again.
    pub refresh_margin: Duration,
}

impl CredentialsFile {
    /// The file at `path`, with the default check interval and refresh margin.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            check_interval: DEFAULT_CREDENTIALS_CHECK_INTERVAL,
            refresh_margin: DEFAULT_CREDENTIALS_REFRESH_MARGIN,
        }
    }

    /// Sets the shortest time between two looks at the file.
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Sets how long before their expiration credentials are read again.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Reads and checks the file now.
    pub(crate) fn read(&self) -> Result<FileContents, FileError> {
        let path = &self.path;
        let metadata = std::fs::metadata(path).map_err(|e| FileError::io(path, e))?;
        if !metadata.is_file() {
            return Err(FileError::new(path, "is not a regular file"));
        }
        if metadata.len() > MAX_FILE_LEN {
            return Err(FileError::new(
                path,
                format!(
                    "is {} bytes long; the limit is {MAX_FILE_LEN}",
                    metadata.len()
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| FileError::io(path, e))?;
        let contents = parse(path, &bytes)?;
        Ok(FileContents {
            contents,
            stamp: FileStamp::of(&metadata),
        })
    }
}

impl From<PathBuf> for CredentialsFile {
    fn from(path: PathBuf) -> Self {
        Self::new(path)
    }
}

impl From<&Path> for CredentialsFile {
    fn from(path: &Path) -> Self {
        Self::new(path)
    }
}

impl From<&str> for CredentialsFile {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

impl From<String> for CredentialsFile {
    fn from(path: String) -> Self {
        Self::new(path)
    }
}

/// What a credentials file holds (`Debug`: the secrets redacted, as [`Credentials`] shows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) credentials: Credentials,
    pub(crate) expiration: Option<DateTime<Utc>>,
}

/// A file's contents and the metadata it was read with.
#[derive(Debug)]
pub(crate) struct FileContents {
    pub(crate) contents: Parsed,
    pub(crate) stamp: FileStamp,
}

/// What tells one version of the file from the next without reading it: size, modification
/// time and (on Unix) inode and change time, so that a file renamed into place is noticed even
/// within one modification-time tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

impl FileStamp {
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            inode: (metadata.dev(), metadata.ino()),
            #[cfg(unix)]
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The file's JSON: both spellings of every key; unknown keys (`Version`, `LastUpdated` ...)
/// are ignored. Every value is read as a string (or null), so a parse error never quotes one.
#[derive(Deserialize)]
struct Format {
    #[serde(alias = "AccessKeyId")]
    access_key_id: Option<String>,
    #[serde(alias = "SecretAccessKey", alias = "AccessKeySecret")]
    secret_access_key: Option<String>,
    #[serde(alias = "SessionToken", alias = "Token", alias = "SecurityToken")]
    session_token: Option<String>,
    #[serde(alias = "Expiration")]
    expiration: Option<String>,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, FileError> {
    let format: Format = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's messages name the position (and, for a value of the wrong type, its
        // kind); they quote a string only when one is given where none is expected, which no
        // field here does, so no secret gets into the message.
        let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
            "is empty".to_owned()
        } else {
            "is not a JSON object of credentials".to_owned()
        };
        FileError {
            path: path.to_owned(),
            reason,
            source: Some(Box::new(e)),
        }
    })?;
    let nonempty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let access_key_id = nonempty(format.access_key_id).ok_or_else(|| {
        FileError::new(
            path,
            "has no access key id (`access_key_id` or `AccessKeyId`)",
        )
    })?;
    let secret = nonempty(format.secret_access_key).ok_or_else(|| {
        FileError::new(
            path,
            "has no secret access key (`secret_access_key` or `SecretAccessKey`)",
        )
    })?;
    let expiration = match nonempty(format.expiration) {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text.trim())
                .map_err(|e| FileError {
                    path: path.to_owned(),
                    reason: format!("has an expiration that is not an RFC 3339 time: {text:?}"),
                    source: Some(Box::new(e)),
                })?
                .with_timezone(&Utc),
        ),
    };
    let credentials = Credentials::new(access_key_id.trim(), secret.trim());
    let credentials = match nonempty(format.session_token) {
        Some(token) => credentials.with_session_token(token.trim()),
        None => credentials,
    };
    Ok(Parsed {
        credentials,
        expiration,
    })
}

/// Why a credentials file could not be used (becomes [`StorageError::CredentialsFile`]).
#[derive(Debug, thiserror::Error)]
#[error("credentials file `{}` {reason}", path.display())]
pub(crate) struct FileError {
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
    #[source]
    pub(crate) source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl FileError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
            source: None,
        }
    }

    fn io(path: &Path, error: std::io::Error) -> Self {
        let reason = match error.kind() {
            std::io::ErrorKind::NotFound => "does not exist",
            std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)",
            _ => "cannot be read",
        };
        Self {
            path: path.to_owned(),
            reason: reason.to_owned(),
            source: Some(Box::new(error)),
        }
    }
}

impl From<FileError> for StorageError {
    fn from(error: FileError) -> Self {
        StorageError::CredentialsFile {
            path: error.path,
            reason: error.reason,
            source: error.source,
        }
    }
}

#[cfg(feature = "s3")]
pub use provider::FileCredentialProvider;

#[cfg(feature = "s3")]
mod provider {
    use std::fmt;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use object_store::CredentialProvider;
    use object_store::aws::AwsCredential;

    use super::{CredentialsFile, FileError, FileStamp, Parsed};
    use crate::error::Result;

    /// An object_store [`CredentialProvider`] for S3 (and OSS through its S3 API) that serves
    /// the credentials of a [`CredentialsFile`] and re-reads the file by its refresh rule.
    ///
    /// Stores opened from a [`StoreConfig`](crate::StoreConfig) with a credentials file use one;
    /// build one yourself for an `AmazonS3Builder` of your own:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use sonic_storage::object_store::aws::AmazonS3Builder;
    /// use sonic_storage::{CredentialsFile, FileCredentialProvider};
    ///
    /// let provider = FileCredentialProvider::new(CredentialsFile::new("/run/secrets/s3.json"))?;
    /// let s3 = AmazonS3Builder::new()
    ///     .with_bucket_name("sonic-outputs")
    ///     .with_credentials(Arc::new(provider))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// Its `Debug` output shows the path, the access key id and the expiration, never the
    /// secret or the session token.
    pub struct FileCredentialProvider {
        file: CredentialsFile,
        state: Mutex<State>,
    }

    pub(super) struct State {
        current: Arc<AwsCredential>,
        expiration: Option<DateTime<Utc>>,
        /// The metadata of the version `current` came from; `None` after a failed read (so
        /// that the next look reads again).
        pub(super) stamp: Option<FileStamp>,
        checked: Instant,
        /// The last look failed with expired credentials: every request looks again (instead
        /// of signing with them until the next check) until the file is fixed.
        failing: bool,
    }

    fn aws(parsed: Parsed) -> (Arc<AwsCredential>, Option<DateTime<Utc>>) {
        let c = parsed.credentials;
        (
            Arc::new(AwsCredential {
                key_id: c.access_key_id,
                secret_key: c.secret_access_key,
                token: c.session_token,
            }),
            parsed.expiration,
        )
    }

    impl FileCredentialProvider {
        /// Reads `file` now: fails with [`StorageError::CredentialsFile`](crate::StorageError::CredentialsFile)
        /// when it is missing, unreadable or malformed.
        pub fn new(file: CredentialsFile) -> Result<Self> {
            let read = file.read()?;
            let (current, expiration) = aws(read.contents);
            if let Some(expiration) = expiration.filter(|e| *e <= Utc::now()) {
                tracing::warn!(
                    path = %file.path.display(),
                    %expiration,
                    "the credentials in the credentials file have expired; waiting for it to be rewritten"
                );
            }
            Ok(Self {
                state: Mutex::new(State {
                    current,
                    expiration,
                    stamp: Some(read.stamp),
                    checked: Instant::now(),
                    failing: false,
                }),
                file,
            })
        }

        /// The file and its refresh settings.
        pub fn file(&self) -> &CredentialsFile {
            &self.file
        }

        /// When the credentials in use expire (`None`: the file gives no expiration).
        pub fn expiration(&self) -> Option<DateTime<Utc>> {
            self.lock().expiration
        }

        pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            // A panic while holding the lock leaves a consistent state (every field is
            // replaced at once), so a poisoned lock is still usable.
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// The credentials to sign with now, re-reading the file when the rule says so.
        fn current(&self) -> Result<Arc<AwsCredential>, FileError> {
            let mut state = self.lock();
            let now = Instant::now();
            if !state.failing && now.duration_since(state.checked) < self.file.check_interval {
                return Ok(state.current.clone());
            }
            state.checked = now;
            let margin = chrono::Duration::from_std(self.file.refresh_margin)
                .unwrap_or(chrono::Duration::MAX);
            let utc_now = Utc::now();
            let due = state
                .expiration
                .is_some_and(|e| e.checked_sub_signed(margin).is_none_or(|at| at <= utc_now));
            let changed = match std::fs::metadata(&self.file.path) {
                Ok(metadata) => state.stamp != Some(FileStamp::of(&metadata)),
                Err(_) => true, // read() reports why
            };
            if !due && !changed {
                return Ok(state.current.clone());
            }
            match self.file.read() {
                Ok(read) => {
                    let (current, expiration) = aws(read.contents);
                    if current != state.current || expiration != state.expiration {
                        tracing::info!(
                            path = %self.file.path.display(),
                            expiration = ?expiration,
                            "read new credentials from the credentials file"
                        );
                    } else if due {
                        tracing::debug!(
                            path = %self.file.path.display(),
                            expiration = ?expiration,
                            "the credentials file still holds credentials that expire soon"
                        );
                    }
                    *state = State {
                        current,
                        expiration,
                        stamp: Some(read.stamp),
                        checked: now,
                        failing: false,
                    };
                    Ok(state.current.clone())
                }
                Err(error) => {
                    state.stamp = None;
                    match state.expiration {
                        Some(expiration) if expiration <= utc_now => {
                            state.failing = true;
                            Err(FileError {
                                reason: format!(
                                    "{}, and the credentials read from it before expired at {expiration}",
                                    error.reason
                                ),
                                ..error
                            })
                        }
                        _ => {
                            tracing::warn!(
                                error = %error,
                                expiration = ?state.expiration,
                                "cannot re-read the credentials file; using the credentials read before"
                            );
                            Ok(state.current.clone())
                        }
                    }
                }
            }
        }
    }

    impl fmt::Debug for FileCredentialProvider {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let state = self.lock();
            f.debug_struct("FileCredentialProvider")
                .field("path", &self.file.path)
                .field("check_interval", &self.file.check_interval)
                .field("refresh_margin", &self.file.refresh_margin)
                .field("access_key_id", &state.current.key_id)
                .field("expiration", &state.expiration)
                .finish_non_exhaustive()
        }
    }

    #[async_trait]
    impl CredentialProvider for FileCredentialProvider {
        type Credential = AwsCredential;

        /// The current credentials: one `stat` at most per check interval, a read when the
        /// file changed or the credentials are due (a small local file: done in place, not on
        /// a blocking thread).
        async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
            self.current()
                .map_err(|error| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(error),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn read_error(path: &Path) -> StorageError {
        CredentialsFile::new(path)
            .read()
            .map(|read| read.contents)
            .map_err(StorageError::from)
            .expect_err("the file must be refused")
    }

    #[test]
    fn reads_both_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let snake = write(
            &dir,
            "snake.json",
            r#"{"access_key_id": "ASIA1", "secret_access_key": "s3cr3t",
                "session_token": "tok", "expiration": "2030-01-02T03:04:05Z"}"#,
        );
        let parsed = CredentialsFile::new(&snake).read().unwrap().contents;
        assert_eq!(
            parsed.credentials,
            Credentials::new("ASIA1", "s3cr3t").with_session_token("tok")
        );
        assert_eq!(
            parsed.expiration,
            Some("2030-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap())
        );

        // AWS credential_process output.
        let aws = write(
            &dir,
            "aws.json",
            r#"{"Version": 1, "AccessKeyId": "ASIA2", "SecretAccessKey": "x",
                "SessionToken": "t2", "Expiration": "2030-01-02T03:04:05+08:00"}"#,
        );
        let parsed = CredentialsFile::new(&aws).read().unwrap().contents;
        assert_eq!(
            parsed.credentials,
            Credentials::new("ASIA2", "x").with_session_token("t2")
        );
        assert_eq!(
            parsed.expiration,
            Some("2030-01-01T19:04:05Z".parse::<DateTime<Utc>>().unwrap())
        );

        // Aliyun STS AssumeRole `Credentials`.
        let oss = write(
            &dir,
            "oss.json",
            r#"{"AccessKeyId": "STS.N1", "AccessKeySecret": "y", "SecurityToken": "t3",
                "Expiration": "2030-01-02T03:04:05Z"}"#,
        );
        let parsed = CredentialsFile::new(&oss).read().unwrap().contents;
        assert_eq!(
            parsed.credentials,
            Credentials::new("STS.N1", "y").with_session_token("t3")
        );

        // Long-lived keys: no token, no expiration.
        let plain = write(
            &dir,
            "plain.json",
            r#"{"access_key_id": "AKIA", "secret_access_key": "z", "expiration": null}"#,
        );
        let parsed = CredentialsFile::new(&plain).read().unwrap().contents;
        assert_eq!(parsed.credentials, Credentials::new("AKIA", "z"));
        assert_eq!(parsed.expiration, None);
    }

    #[test]
    fn missing_and_malformed_files_are_typed_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "do-not-show-this-secret";
        let cases = [
            (dir.path().join("absent.json"), "does not exist"),
            (write(&dir, "empty.json", ""), "is empty"),
            (
                write(
                    &dir,
                    "truncated.json",
                    &format!(r#"{{"access_key_id": "A", "secret_access_key": "{secret}"#),
                ),
                "is not a JSON object of credentials",
            ),
            (
                write(&dir, "array.json", r#"["A", "B"]"#),
                "is not a JSON object of credentials",
            ),
            (
                write(
                    &dir,
                    "number.json",
                    r#"{"access_key_id": 5, "secret_access_key": "x"}"#,
                ),
                "is not a JSON object of credentials",
            ),
            (
                write(
                    &dir,
                    "no-id.json",
                    &format!(r#"{{"secret_access_key": "{secret}"}}"#),
                ),
                "has no access key id",
            ),
            (
                write(
                    &dir,
                    "blank-secret.json",
                    r#"{"access_key_id": "A", "secret_access_key": " "}"#,
                ),
                "has no secret access key",
            ),
            (
                write(
                    &dir,
                    "bad-expiry.json",
                    &format!(
                        r#"{{"access_key_id": "A", "secret_access_key": "{secret}", "expiration": "tomorrow"}}"#
                    ),
                ),
                "has an expiration that is not an RFC 3339 time",
            ),
            (dir.path().to_owned(), "is not a regular file"),
        ];
        for (path, reason) in cases {
            let error = read_error(&path);
            match &error {
                StorageError::CredentialsFile {
                    path: named,
                    reason: said,
                    ..
                } => {
                    assert_eq!(named, &path);
                    assert!(said.starts_with(reason), "{path:?}: {said}");
                }
                other => panic!("{path:?}: expected CredentialsFile, got {other:?}"),
            }
            let mut shown = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(e) = source {
                shown.push_str(&format!(": {e}"));
                source = e.source();
            }
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(!format!("{error:?}").contains(secret), "{error:?}");
        }
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "big.json", &" ".repeat(MAX_FILE_LEN as usize + 1));
        assert!(matches!(
            read_error(&path),
            StorageError::CredentialsFile { reason, .. } if reason.contains("bytes long")
        ));
    }

    #[cfg(feature = "s3")]
    mod provider {
        use std::time::Duration;

        use object_store::CredentialProvider;

        use super::*;

        fn json(id: &str, secret: &str, expiration: Option<DateTime<Utc>>) -> String {
            serde_json::json!({
                "access_key_id": id,
                "secret_access_key": secret,
                "session_token": format!("token-of-{id}"),
                "expiration": expiration.map(|e| e.to_rfc3339()),
            })
            .to_string()
        }

        /// Replaces the file the way a sidecar should: write a temporary file, rename it.
        fn replace(path: &Path, text: &str) {
            let next = path.with_extension("next");
            std::fs::write(&next, text).unwrap();
            std::fs::rename(&next, path).unwrap();
        }

        #[tokio::test]
        async fn rereads_a_changed_file_after_the_check_interval() {
            let dir = tempfile::tempdir().unwrap();
            let path = write(&dir, "c.json", &json("A1", "secret-1", None));
            let file = CredentialsFile::new(&path).with_check_interval(Duration::from_millis(50));
            let provider = FileCredentialProvider::new(file).unwrap();
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A1");

            replace(&path, &json("A2", "secret-2", None));
            // Within the interval: the cached credentials, no look at the file.
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A1");
            std::thread::sleep(Duration::from_millis(80));
            let now = provider.get_credential().await.unwrap();
            assert_eq!((&*now.key_id, &*now.secret_key), ("A2", "secret-2"));
            assert_eq!(now.token.as_deref(), Some("token-of-A2"));

            let shown = format!("{provider:?}");
            assert!(shown.contains("A2") && shown.contains("c.json"), "{shown}");
            assert!(
                !shown.contains("secret-2") && !shown.contains("token-of"),
                "{shown}"
            );
        }

        #[tokio::test]
        async fn rereads_before_the_expiration_even_if_the_file_looks_unchanged() {
            let dir = tempfile::tempdir().unwrap();
            let soon = Utc::now() + chrono::Duration::minutes(2);
            let path = write(&dir, "c.json", &json("A1", "s1", Some(soon)));
            let file = CredentialsFile::new(&path)
                .with_check_interval(Duration::ZERO)
                .with_refresh_margin(Duration::from_secs(300));
            let provider = FileCredentialProvider::new(file).unwrap();
            assert_eq!(provider.expiration(), Some(soon));
            let later = Utc::now() + chrono::Duration::hours(1);
            std::fs::write(&path, json("A2", "s2", Some(later))).unwrap();
            // As if the rewrite had left the metadata as it was (a coarse clock, same size):
            // only the expiration rule can notice it.
            provider.lock().stamp = Some(FileStamp::of(&std::fs::metadata(&path).unwrap()));
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A2");
            assert_eq!(provider.expiration(), Some(later));

            // Far from the expiration and unchanged: not read again.
            std::fs::write(&path, json("A3", "s3", Some(later))).unwrap();
            provider.lock().stamp = Some(FileStamp::of(&std::fs::metadata(&path).unwrap()));
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A2");
        }

        #[tokio::test]
        async fn a_failing_file_is_looked_at_on_every_request_until_it_is_fixed() {
            let dir = tempfile::tempdir().unwrap();
            let expired = Utc::now() - chrono::Duration::minutes(1);
            let path = write(&dir, "c.json", &json("A0", "s0", Some(expired)));
            let interval = Duration::from_millis(200);
            let file = CredentialsFile::new(&path).with_check_interval(interval);
            let provider = FileCredentialProvider::new(file).unwrap();
            std::fs::remove_file(&path).unwrap();
            std::thread::sleep(interval + Duration::from_millis(50));
            assert!(provider.get_credential().await.is_err());
            // Within the interval of that look: still an error, not the expired credentials.
            assert!(provider.get_credential().await.is_err());
            // Fixed: the very next request reads it.
            replace(&path, &json("A1", "s1", None));
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A1");
            // Healthy again: back to one look per interval.
            replace(&path, &json("A2", "s2", None));
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A1");
        }

        #[tokio::test]
        async fn keeps_valid_credentials_while_the_file_is_broken_then_fails_typed() {
            let dir = tempfile::tempdir().unwrap();
            let valid = Utc::now() + chrono::Duration::hours(1);
            let path = write(&dir, "c.json", &json("A1", "s1", Some(valid)));
            let file = CredentialsFile::new(&path).with_check_interval(Duration::ZERO);
            let provider = FileCredentialProvider::new(file.clone()).unwrap();

            // Half-written by a careless sidecar: the valid credentials stay in use.
            std::fs::write(&path, "{\"access_key_id\": \"A2\", ").unwrap();
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A1");

            // Credentials that have expired and a file that cannot be read: a typed error.
            let expired = Utc::now() - chrono::Duration::minutes(1);
            replace(&path, &json("A0", "s0", Some(expired)));
            assert_eq!(provider.get_credential().await.unwrap().key_id, "A0");
            std::fs::remove_file(&path).unwrap();
            let error = provider.get_credential().await.unwrap_err();
            let mapped = StorageError::from_store(
                "s3://b",
                "get",
                "k",
                error,
                &crate::error::TimeoutLimits::default(),
            );
            match &mapped {
                StorageError::CredentialsFile {
                    path: p, reason, ..
                } => {
                    assert_eq!(p, &path);
                    assert!(
                        reason.starts_with("does not exist, and the credentials"),
                        "{reason}"
                    );
                }
                other => panic!("expected CredentialsFile, got {other:?}"),
            }

            // Opening with a missing file fails at once, typed.
            assert!(matches!(
                FileCredentialProvider::new(file),
                Err(StorageError::CredentialsFile { .. })
            ));
        }
    }
}
