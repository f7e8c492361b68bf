//! Store configuration: where (a URL) and how (endpoint, credentials, retries, part size).

use std::fmt;
use std::path::PathBuf;

#[cfg(feature = "_http")]
use object_store::{ClientOptions, RetryConfig};

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
    /// Explicit credentials; `None` reads them from the environment.
    pub credentials: Option<Credentials>,
}

/// HTTP behaviour of remote stores: retries and timeouts (object_store's own types). Only with
/// a remote store feature (`s3`, `gcp`, `azure`).
#[cfg(feature = "_http")]
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TransportOptions {
    /// Retries with backoff for transient failures (default: 10 retries within 3 minutes).
    pub retry: RetryConfig,
    /// Timeouts, proxy, DNS resolver, extra headers ... (default: 30 s request timeout, 5 s
    /// connect timeout).
    pub client: ClientOptions,
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
    /// `s3://` and `oss://` URLs take the query parameters `endpoint`, `region` and
    /// `addressing` (`path` or `virtual`); any other parameter is refused.
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

    /// Sets explicit credentials instead of reading the environment.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.s3.credentials = Some(credentials);
        self
    }

    /// Sets the retry policy.
    #[cfg(feature = "_http")]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.transport.retry = retry;
        self
    }

    /// Sets the HTTP client options (timeouts, proxy, DNS resolver ...).
    #[cfg(feature = "_http")]
    pub fn with_client_options(mut self, client: ClientOptions) -> Self {
        self.transport.client = client;
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

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::new("AKID", "very-secret").with_session_token("tok");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret") && !shown.contains("tok\""));
    }
}
