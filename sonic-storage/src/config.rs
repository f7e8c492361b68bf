//! Store configuration: where (a URL) and how (endpoint, credentials, retries, part size).

use std::fmt;
use std::path::PathBuf;
#[cfg(feature = "_http")]
use std::time::Duration;

#[cfg(feature = "_http")]
use object_store::{ClientOptions, RetryConfig};

use crate::credentials::CredentialsFile;
use crate::error::{Result, StorageError};

/// The default store: a `sonic-data` directory in the working directory.
pub const DEFAULT_LOCAL_ROOT: &str = "./sonic-data";

/// The smallest multipart part size: S3, OSS and MinIO refuse smaller parts (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// The largest multipart part size S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// Where a store keeps its objects, parsed from a URL by [`StoreConfig::from_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// A local directory (`file:///srv/sonic`, or a plain path). Created if missing.
    Local {
        /// The directory.
        root: PathBuf,
    },
    /// A fresh, empty in-memory store (`memory://`), for tests and examples.
    Memory,
    /// An S3 bucket (`s3://bucket/prefix`): AWS, MinIO or any S3-compatible server.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket (no leading or trailing `/`).
        prefix: Option<String>,
    },
    /// An Aliyun OSS bucket (`oss://bucket/prefix`) through OSS's S3-compatible API,
    /// virtual-hosted style.
    Oss {
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket.
        prefix: Option<String>,
    },
    /// A Google Cloud Storage bucket (`gs://bucket/prefix`, cargo feature `gcp`).
    Gcs {
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket.
        prefix: Option<String>,
    },
    /// An Azure Blob Storage container (`az://container/prefix`, cargo feature `azure`); the
    /// account comes from `AZURE_STORAGE_ACCOUNT_NAME`.
    Azure {
        /// The container.
        container: String,
        /// The key prefix inside the container.
        prefix: Option<String>,
    },
}

/// S3 request addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Addressing {
    /// Virtual-hosted style on AWS (no custom endpoint), path style on a custom endpoint (MinIO,
    /// local servers). OSS is always virtual-hosted.
    #[default]
    Auto,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    VirtualHosted,
}

/// Static credentials for S3 or OSS. Prefer temporary (STS) credentials with a session token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The STS session token of temporary credentials.
    pub session_token: Option<String>,
}

impl Credentials {
    /// Long-lived credentials.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Adds the STS session token of temporary credentials.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Settings for `s3://` and `oss://` stores. Unset fields come from the environment (see
/// `docs/storage.md`): `AWS_*` variables for S3, `OSS_*` (or `ALIBABA_CLOUD_*`) for OSS.
///
/// Credentials, first found wins: [`credentials`](Self::credentials), then
/// [`credentials_file`](Self::credentials_file), then the file named by
/// [`S3_CREDENTIALS_FILE_ENV`](crate::S3_CREDENTIALS_FILE_ENV) (`s3://`) or
/// [`OSS_CREDENTIALS_FILE_ENV`](crate::OSS_CREDENTIALS_FILE_ENV) (`oss://`), then the
/// environment (for S3 object_store's chain: `AWS_ACCESS_KEY_ID`..., web identity, container
/// and instance credentials, the last three refreshed before they expire; for OSS the `OSS_*`
/// variables). Setting both fields is refused when the store is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Options {
    /// The service endpoint, e.g. `http://127.0.0.1:9000` (MinIO) or
    /// `https://oss-cn-beijing.aliyuncs.com` (OSS; the scheme may be left out, `https` is
    /// assumed). An `http://` endpoint allows plain HTTP (local servers only).
    pub endpoint: Option<String>,
    /// The region (`us-east-1`, `cn-beijing` ...). For OSS it is derived from the endpoint when
    /// unset.
    pub region: Option<String>,
    /// Path or virtual-hosted style.
    pub addressing: Addressing,
    /// Explicit credentials, used as they are for the store's lifetime; `None` reads them from
    /// the credentials file or the environment.
    pub credentials: Option<Credentials>,
    /// A file of credentials that expire (STS), re-read while the store is in use (see
    /// [`CredentialsFile`]); URL parameter `credentials_file`.
    pub credentials_file: Option<CredentialsFile>,
}

/// The default connect timeout of remote stores.
#[cfg(feature = "_http")]
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default request timeout of remote stores (connect, send, answer and body of one
/// request; one multipart part is one request).
#[cfg(feature = "_http")]
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The default number of retries of a failed request.
#[cfg(feature = "_http")]
pub const DEFAULT_MAX_RETRIES: usize = 3;

/// The default time after a request's first attempt past which it is not retried again.
#[cfg(feature = "_http")]
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// HTTP behaviour of remote stores: retries and timeouts (object_store's own types). Only with
/// a remote store feature (`s3`, `gcp`, `azure`).
///
/// Defaults, chosen so that a store that is down or silent fails a request in well under a
/// minute with a typed error ([`StorageError::Timeout`], or [`StorageError::Backend`] with the
/// connection error as its source) instead of stalling for minutes:
///
/// | setting | default | set with |
/// |---|---|---|
/// | connect timeout | [`DEFAULT_CONNECT_TIMEOUT`] (5 s) | [`with_connect_timeout`](Self::with_connect_timeout) |
/// | request timeout | [`DEFAULT_REQUEST_TIMEOUT`] (30 s) | [`with_request_timeout`](Self::with_request_timeout) |
/// | retries | [`DEFAULT_MAX_RETRIES`] (3), exponential backoff from 100 ms | [`with_max_retries`](Self::with_max_retries) |
/// | no retry after | [`DEFAULT_RETRY_TIMEOUT`] (20 s) from the first attempt | [`with_retry_timeout`](Self::with_retry_timeout) |
///
/// Retried: connection errors, 5xx, 429, and timeouts of idempotent requests (a create-only put
/// is not retried on timeout). A retry starts only while the retry timeout has not passed, so
/// one request takes at most about retry timeout + request timeout (50 s with the defaults); an
/// endpoint that accepts connections and never answers fails after one request timeout
/// (30 s). (object_store's own defaults, 10 retries within 3 minutes, let such an endpoint
/// stall a request for over 3 minutes.) Uploading large parts over a slow link needs a longer
/// request timeout: a part of [`UploadOptions::part_size`] must go through within it.
#[cfg(feature = "_http")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportOptions {
    /// Retries with backoff for transient failures.
    pub retry: RetryConfig,
    /// Timeouts, proxy, DNS resolver, extra headers ... Replacing it replaces the timeouts
    /// too (an unset timeout in your `ClientOptions` is object_store's default).
    pub client: ClientOptions,
}

#[cfg(feature = "_http")]
impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            retry: RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: DEFAULT_MAX_RETRIES,
                retry_timeout: DEFAULT_RETRY_TIMEOUT,
            },
            client: ClientOptions::new()
                .with_connect_timeout(DEFAULT_CONNECT_TIMEOUT)
                .with_timeout(DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

#[cfg(feature = "_http")]
impl TransportOptions {
    /// Sets how long establishing a connection (TCP and TLS) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_connect_timeout(timeout);
        self
    }

    /// Sets how long one request may take, from connecting to the end of the answer's body.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// Sets how many times a failed request is retried (0: never).
    pub fn with_max_retries(mut self, max_retries: usize) -> Self {
        self.retry.max_retries = max_retries;
        self
    }

    /// Sets the time after a request's first attempt past which it is not retried again.
    pub fn with_retry_timeout(mut self, retry_timeout: Duration) -> Self {
        self.retry.retry_timeout = retry_timeout;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the HTTP client options (timeouts included).
    pub fn with_client_options(mut self, client: ClientOptions) -> Self {
        self.client = client;
        self
    }

    /// The connect timeout the client options set, or `None` if it is disabled or unreadable.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.client
            .get_config_value(&object_store::ClientConfigKey::ConnectTimeout)
            .and_then(|value| parse_duration(&value))
    }

    /// The request timeout the client options set, or `None` if it is disabled or unreadable.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.client
            .get_config_value(&object_store::ClientConfigKey::Timeout)
            .and_then(|value| parse_duration(&value))
    }
}

/// Parses the durations `ClientOptions` reports: humantime's format (`30s`, `1m 30s`,
/// `1s 500ms`) or a value given as a string (`30 seconds`, `2min`).
#[cfg(feature = "_http")]
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let nanos_per_unit: u64 = match &rest[..unit_len] {
            "nanos" | "nsec" | "ns" => 1,
            "usec" | "us" | "µs" => 1_000,
            "millis" | "msec" | "ms" => 1_000_000,
            "seconds" | "second" | "secs" | "sec" | "s" => 1_000_000_000,
            "minutes" | "minute" | "min" | "mins" | "m" => 60 * 1_000_000_000,
            "hours" | "hour" | "hr" | "hrs" | "h" => 3_600 * 1_000_000_000,
            "days" | "day" | "d" => 86_400 * 1_000_000_000,
            "weeks" | "week" | "wk" | "wks" | "w" => 7 * 86_400 * 1_000_000_000,
            "months" | "month" | "M" => 2_630_016 * 1_000_000_000,
            "years" | "year" | "yr" | "yrs" | "y" => 31_557_600 * 1_000_000_000,
            _ => return None,
        };
        total = total.checked_add(Duration::from_nanos(value.checked_mul(nanos_per_unit)?))?;
        rest = rest[unit_len..].trim_start();
    }
    Some(total)
}

/// How uploads are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadOptions {
    /// Bodies larger than this go multipart in parts of this size. Between [`MIN_PART_SIZE`]
    /// and [`MAX_PART_SIZE`]; default 8 MiB.
    pub part_size: usize,
    /// How many parts are uploaded at once; default 4.
    pub max_concurrency: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            max_concurrency: 4,
        }
    }
}

impl UploadOptions {
    /// Checks the limits.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(StorageError::InvalidArgument {
                argument: "part_size",
                reason: format!(
                    "{} bytes is outside {MIN_PART_SIZE}..={MAX_PART_SIZE}",
                    self.part_size
                ),
            });
        }
        if self.max_concurrency == 0 {
            return Err(StorageError::InvalidArgument {
                argument: "max_concurrency",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Everything needed to open one store.
///
/// ```
/// # use sonic_storage::{Addressing, StoreConfig, StoreLocation};
/// let config = StoreConfig::from_url(
///     "s3://sonic-outputs/prod?endpoint=http://127.0.0.1:9000&region=us-east-1&addressing=path",
/// )?;
/// assert_eq!(
///     config.location,
///     StoreLocation::S3 { bucket: "sonic-outputs".into(), prefix: Some("prod".into()) }
/// );
/// assert_eq!(config.s3.addressing, Addressing::Path);
/// # Ok::<(), sonic_storage::StorageError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Where.
    pub location: StoreLocation,
    /// S3/OSS settings (ignored by other stores).
    pub s3: S3Options,
    /// Retries and timeouts of remote stores.
    #[cfg(feature = "_http")]
    pub transport: TransportOptions,
    /// Multipart settings.
    pub upload: UploadOptions,
}

impl Default for StoreConfig {
    /// The local directory [`DEFAULT_LOCAL_ROOT`].
    fn default() -> Self {
        Self::new(StoreLocation::Local {
            root: DEFAULT_LOCAL_ROOT.into(),
        })
    }
}

impl StoreConfig {
    /// A configuration with default settings for `location`.
    pub fn new(location: StoreLocation) -> Self {
        Self {
            location,
            s3: S3Options::default(),
            #[cfg(feature = "_http")]
            transport: TransportOptions::default(),
            upload: UploadOptions::default(),
        }
    }

    /// Parses a store URL:
    ///
    /// | URL | store |
    /// |---|---|
    /// | `file:///srv/sonic`, `./sonic-data`, `/srv/sonic` | local directory |
    /// | `memory://` | a fresh in-memory store |
    /// | `s3://bucket/prefix` | S3, MinIO, S3-compatible |
    /// | `oss://bucket/prefix` | Aliyun OSS |
    /// | `gs://bucket/prefix` | Google Cloud Storage (feature `gcp`) |
    /// | `az://container/prefix` | Azure Blob Storage (feature `azure`) |
    ///
    /// `s3://` and `oss://` URLs take the query parameters `endpoint`, `region`,
    /// `addressing` (`path` or `virtual`) and `credentials_file` (a path, see
    /// [`CredentialsFile`]); any other parameter is refused.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |reason: String| StorageError::InvalidConfig {
            url: url.to_owned(),
            reason,
            source: None,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(invalid("empty store URL".into()));
            }
            return Ok(Self::new(StoreLocation::Local { root: url.into() }));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let bucket_and_prefix = |what: &str| -> Result<(String, Option<String>)> {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(format!("the URL names no {what}")));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty()
                && let Err(e) = crate::key::ObjectKey::new(prefix)
            {
                return Err(invalid(format!("bad prefix: {e}")));
            }
            Ok((
                bucket.to_owned(),
                (!prefix.is_empty()).then(|| prefix.to_owned()),
            ))
        };
        let location = match scheme {
            "file" => {
                let path = url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.to_file_path().ok())
                    .ok_or_else(|| invalid("not an absolute `file:///` path".into()))?;
                StoreLocation::Local { root: path }
            }
            "memory" => StoreLocation::Memory,
            "s3" | "s3a" => {
                let (bucket, prefix) = bucket_and_prefix("bucket")?;
                StoreLocation::S3 { bucket, prefix }
            }
            "oss" => {
                let (bucket, prefix) = bucket_and_prefix("bucket")?;
                StoreLocation::Oss { bucket, prefix }
            }
            "gs" => {
                let (bucket, prefix) = bucket_and_prefix("bucket")?;
                StoreLocation::Gcs { bucket, prefix }
            }
            "az" | "azure" => {
                let (container, prefix) = bucket_and_prefix("container")?;
                StoreLocation::Azure { container, prefix }
            }
            other => {
                return Err(invalid(format!(
                    "unknown scheme `{other}` (expected file, memory, s3, oss, gs or az)"
                )));
            }
        };
        let mut config = Self::new(location);
        if let Some(query) = query {
            let s3_like = matches!(
                config.location,
                StoreLocation::S3 { .. } | StoreLocation::Oss { .. }
            );
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                match (&*name, s3_like) {
                    ("endpoint", true) => config.s3.endpoint = Some(value.into_owned()),
                    ("region", true) => config.s3.region = Some(value.into_owned()),
                    ("credentials_file", true) => {
                        if value.is_empty() {
                            return Err(invalid("`credentials_file` is empty".into()));
                        }
                        config.s3.credentials_file = Some(CredentialsFile::new(&*value));
                    }
                    ("addressing", true) => {
                        config.s3.addressing = match &*value {
                            "path" => Addressing::Path,
                            "virtual" | "virtual-hosted" => Addressing::VirtualHosted,
                            "auto" => Addressing::Auto,
                            other => {
                                return Err(invalid(format!(
                                    "addressing must be `path` or `virtual`, not `{other}`"
                                )));
                            }
                        }
                    }
                    (other, _) => {
                        return Err(invalid(format!("unknown query parameter `{other}`")));
                    }
                }
            }
        }
        Ok(config)
    }

    /// Sets the endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.s3.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.s3.region = Some(region.into());
        self
    }

    /// Sets the addressing style.
    pub fn with_addressing(mut self, addressing: Addressing) -> Self {
        self.s3.addressing = addressing;
        self
    }

    /// Sets explicit credentials instead of reading the environment (and drops a credentials
    /// file set before).
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.s3.credentials = Some(credentials);
        self.s3.credentials_file = None;
        self
    }

    /// Reads credentials from a file that is re-read while the store is in use (a path, or a
    /// [`CredentialsFile`] with its refresh settings), and drops explicit credentials set
    /// before.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sonic_storage::{CredentialsFile, StoreConfig};
    /// let config = StoreConfig::from_url("s3://sonic-outputs")?
    ///     .with_credentials_file("/run/secrets/s3-credentials.json");
    /// let config = StoreConfig::from_url("s3://sonic-outputs")?.with_credentials_file(
    ///     CredentialsFile::new("/run/secrets/s3-credentials.json")
    ///         .with_check_interval(Duration::from_secs(1)),
    /// );
    /// # Ok::<(), sonic_storage::StorageError>(())
    /// ```
    pub fn with_credentials_file(mut self, file: impl Into<CredentialsFile>) -> Self {
        self.s3.credentials_file = Some(file.into());
        self.s3.credentials = None;
        self
    }

    /// Sets the retry policy.
    #[cfg(feature = "_http")]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.transport.retry = retry;
        self
    }

    /// Sets the HTTP client options (timeouts, proxy, DNS resolver ...). This replaces the
    /// timeouts too: set them on `client`, or call [`with_connect_timeout`](Self::with_connect_timeout)
    /// and [`with_request_timeout`](Self::with_request_timeout) afterwards.
    #[cfg(feature = "_http")]
    pub fn with_client_options(mut self, client: ClientOptions) -> Self {
        self.transport.client = client;
        self
    }

    /// Sets all of a remote store's retry and timeout settings.
    #[cfg(feature = "_http")]
    pub fn with_transport(mut self, transport: TransportOptions) -> Self {
        self.transport = transport;
        self
    }

    /// Sets the connect timeout of a remote store (see [`TransportOptions`]).
    #[cfg(feature = "_http")]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.transport = self.transport.with_connect_timeout(timeout);
        self
    }

    /// Sets the request timeout of a remote store (see [`TransportOptions`]).
    #[cfg(feature = "_http")]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.transport = self.transport.with_request_timeout(timeout);
        self
    }

    /// Sets how many times a remote store retries a failed request (see [`TransportOptions`]).
    #[cfg(feature = "_http")]
    pub fn with_max_retries(mut self, max_retries: usize) -> Self {
        self.transport = self.transport.with_max_retries(max_retries);
        self
    }

    /// Sets the multipart part size (see [`UploadOptions::part_size`]).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.upload.part_size = part_size;
        self
    }

    /// The URL this configuration stands for, without credentials or query parameters.
    pub fn display_url(&self) -> String {
        let with_prefix = |scheme: &str, bucket: &str, prefix: &Option<String>| match prefix {
            Some(prefix) => format!("{scheme}://{bucket}/{prefix}"),
            None => format!("{scheme}://{bucket}"),
        };
        match &self.location {
            StoreLocation::Local { root } => match url::Url::from_directory_path(root) {
                Ok(url) => url.to_string(),
                Err(()) => root.display().to_string(),
            },
            StoreLocation::Memory => "memory://".to_owned(),
            StoreLocation::S3 { bucket, prefix } => with_prefix("s3", bucket, prefix),
            StoreLocation::Oss { bucket, prefix } => with_prefix("oss", bucket, prefix),
            StoreLocation::Gcs { bucket, prefix } => with_prefix("gs", bucket, prefix),
            StoreLocation::Azure { container, prefix } => with_prefix("az", container, prefix),
        }
    }
}

/// Adds the bucket as the first label of the endpoint's host (virtual-hosted style).
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn bucket_endpoint(endpoint: &str, bucket: &str) -> Result<String, String> {
    let mut url = url::Url::parse(endpoint).map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("endpoint `{endpoint}` has no host"))?
        .to_owned();
    if host.starts_with(&format!("{bucket}.")) {
        return Ok(endpoint.trim_end_matches('/').to_owned());
    }
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|e| format!("endpoint `{endpoint}` with bucket `{bucket}`: {e}"))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The OSS region id in an OSS endpoint: `oss-cn-beijing.aliyuncs.com`,
/// `s3.oss-cn-beijing.aliyuncs.com` and `oss-cn-beijing-internal.aliyuncs.com` give `cn-beijing`.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn oss_region_from_endpoint(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").last()?.split(['/', ':']).next()?;
    let first = host
        .split('.')
        .find(|label| label.starts_with("oss-") && *label != "oss-accelerate")?;
    let region = first.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    (!region.is_empty()).then(|| region.to_owned())
}

/// Reads the first set, non-empty environment variable of `names`.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        let local = StoreConfig::from_url("file:///srv/sonic").unwrap();
        assert_eq!(
            local.location,
            StoreLocation::Local {
                root: "/srv/sonic".into()
            }
        );
        assert_eq!(local.display_url(), "file:///srv/sonic/");
        assert_eq!(
            StoreConfig::from_url("./sonic-data").unwrap().location,
            StoreLocation::Local {
                root: "./sonic-data".into()
            }
        );
        assert_eq!(
            StoreConfig::default().location,
            StoreLocation::Local {
                root: DEFAULT_LOCAL_ROOT.into()
            }
        );
        assert_eq!(
            StoreConfig::from_url("memory://").unwrap().location,
            StoreLocation::Memory
        );

        let s3 = StoreConfig::from_url(
            "s3://bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1&addressing=virtual",
        )
        .unwrap();
        assert_eq!(
            s3.location,
            StoreLocation::S3 {
                bucket: "bucket".into(),
                prefix: Some("a/b".into())
            }
        );
        assert_eq!(s3.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.s3.addressing, Addressing::VirtualHosted);
        assert_eq!(s3.display_url(), "s3://bucket/a/b");

        let oss =
            StoreConfig::from_url("oss://videos?endpoint=oss-cn-beijing.aliyuncs.com").unwrap();
        assert_eq!(
            oss.location,
            StoreLocation::Oss {
                bucket: "videos".into(),
                prefix: None
            }
        );
        assert_eq!(
            StoreConfig::from_url("gs://b/p").unwrap().location,
            StoreLocation::Gcs {
                bucket: "b".into(),
                prefix: Some("p".into())
            }
        );
        assert_eq!(
            StoreConfig::from_url("az://c").unwrap().location,
            StoreLocation::Azure {
                container: "c".into(),
                prefix: None
            }
        );
    }

    #[test]
    fn credentials_file_from_the_url_and_the_builder() {
        let config =
            StoreConfig::from_url("s3://b/p?credentials_file=/run/secrets/s3%20sts.json").unwrap();
        assert_eq!(
            config.s3.credentials_file,
            Some(CredentialsFile::new("/run/secrets/s3 sts.json"))
        );
        assert_eq!(config.display_url(), "s3://b/p");
        let oss =
            StoreConfig::from_url("oss://b?region=cn-beijing&credentials_file=/c.json").unwrap();
        assert_eq!(
            oss.s3.credentials_file,
            Some(CredentialsFile::new("/c.json"))
        );

        // The last of the two builder calls wins.
        let file = config
            .clone()
            .with_credentials(Credentials::new("A", "S"))
            .with_credentials_file("/f.json");
        assert_eq!(file.s3.credentials, None);
        assert_eq!(
            file.s3.credentials_file,
            Some(CredentialsFile::new("/f.json"))
        );
        let explicit = file.with_credentials(Credentials::new("A", "S"));
        assert_eq!(explicit.s3.credentials_file, None);
        assert!(explicit.s3.credentials.is_some());
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "",
            "ftp://x",
            "s3://",
            "s3:///prefix",
            "s3://b/../x",
            "s3://b?endpoint=x&bogus=1",
            "s3://b?addressing=sideways",
            "memory://?endpoint=x",
            "memory://?credentials_file=/c.json",
            "s3://b?credentials_file=",
            "file://relative/path",
        ] {
            assert!(
                matches!(
                    StoreConfig::from_url(bad),
                    Err(StorageError::InvalidConfig { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn virtual_hosted_endpoints() {
        assert_eq!(
            bucket_endpoint("https://oss-cn-beijing.aliyuncs.com", "videos").unwrap(),
            "https://videos.oss-cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            bucket_endpoint("http://s3.sonic.test:9000/", "b").unwrap(),
            "http://b.s3.sonic.test:9000"
        );
        assert_eq!(
            bucket_endpoint("https://b.s3.example.com", "b").unwrap(),
            "https://b.s3.example.com"
        );
    }

    #[test]
    fn oss_regions() {
        for (endpoint, region) in [
            ("oss-cn-beijing.aliyuncs.com", "cn-beijing"),
            ("https://oss-cn-hangzhou.aliyuncs.com", "cn-hangzhou"),
            (
                "https://s3.oss-ap-southeast-1.aliyuncs.com",
                "ap-southeast-1",
            ),
            ("oss-cn-shanghai-internal.aliyuncs.com", "cn-shanghai"),
        ] {
            assert_eq!(
                oss_region_from_endpoint(endpoint).as_deref(),
                Some(region),
                "{endpoint}"
            );
        }
        assert_eq!(oss_region_from_endpoint("https://example.com"), None);
    }

    #[test]
    fn part_size_limits() {
        assert!(UploadOptions::default().validate().is_ok());
        let small = UploadOptions {
            part_size: MIN_PART_SIZE - 1,
            ..Default::default()
        };
        assert!(matches!(
            small.validate(),
            Err(StorageError::InvalidArgument {
                argument: "part_size",
                ..
            })
        ));
    }

    #[cfg(feature = "_http")]
    #[test]
    fn transport_defaults_are_bounded() {
        let t = TransportOptions::default();
        assert_eq!(t.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(t.request_timeout(), Some(DEFAULT_REQUEST_TIMEOUT));
        assert_eq!(t.retry.max_retries, DEFAULT_MAX_RETRIES);
        assert_eq!(t.retry.retry_timeout, DEFAULT_RETRY_TIMEOUT);
        // One request to a silent endpoint: at most about retry timeout + request timeout.
        assert!(DEFAULT_RETRY_TIMEOUT + DEFAULT_REQUEST_TIMEOUT <= Duration::from_secs(60));

        let config = StoreConfig::from_url("s3://b")
            .unwrap()
            .with_connect_timeout(Duration::from_millis(1500))
            .with_request_timeout(Duration::from_secs(90))
            .with_max_retries(1);
        assert_eq!(
            config.transport.connect_timeout(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            config.transport.request_timeout(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(config.transport.retry.max_retries, 1);

        let disabled = TransportOptions::default()
            .with_client_options(ClientOptions::new().with_timeout_disabled());
        assert_eq!(disabled.request_timeout(), None);
        let deferred = TransportOptions::default().with_client_options(
            ClientOptions::new().with_config(object_store::ClientConfigKey::Timeout, "2 minutes"),
        );
        assert_eq!(deferred.request_timeout(), Some(Duration::from_secs(120)));
    }

    #[cfg(feature = "_http")]
    #[test]
    fn parses_client_durations() {
        for (text, expected) in [
            ("30s", Duration::from_secs(30)),
            ("1m 30s", Duration::from_secs(90)),
            ("1s 500ms", Duration::from_millis(1500)),
            ("250ms", Duration::from_millis(250)),
            ("1h 2m 3s 4ms 5us 6ns", Duration::new(3723, 4_005_006)),
            ("2days 1h", Duration::from_secs(2 * 86_400 + 3_600)),
            ("30 seconds", Duration::from_secs(30)),
            ("2min", Duration::from_secs(120)),
        ] {
            assert_eq!(parse_duration(text), Some(expected), "{text:?}");
        }
        for bad in ["", "30", "s", "30 parsecs", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::new("AKID", "very-secret").with_session_token("tok");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret") && !shown.contains("tok\""));
    }
}
