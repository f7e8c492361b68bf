//! Test support: the stores the conformance suite runs against, and the S3 server.
//!
//! S3 tests use the server named by `SONIC_TEST_S3_ENDPOINT` (any S3-compatible server with the
//! credentials, buckets and virtual-hosted base below), or else an in-process one:
//! `sonic_storage::testing::S3Server` (s3s over s3s-fs, served with hyper on a free 127.0.0.1
//! port). It checks SigV4 signatures (so tampered and expired presigned URLs are refused) and
//! serves path-style and virtual-hosted-style requests. Nothing outside the test binary is
//! needed.
#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use sonic_storage::object_store::{BackoffConfig, RetryConfig};
pub use sonic_storage::testing::{
    ACCESS_KEY, INPUT_BUCKET, Loopback, OUTPUT_BUCKET, S3Server, SECRET_KEY, VHOST_BASE,
    quick_retry, run_prefix, store_config,
};
use sonic_storage::{Addressing, Credentials, MIN_PART_SIZE, Storage, StoreConfig};

/// Where an external server is (`http://127.0.0.1:PORT`); unset: the in-process server.
pub const ENDPOINT_VAR: &str = "SONIC_TEST_S3_ENDPOINT";

/// Installs rustls' ring provider for the plain HTTP test client (the stores do it themselves).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The S3 server a test talks to: CI's (from [`ENDPOINT_VAR`]) or its own.
pub struct S3Target {
    pub endpoint: String,
    pub port: u16,
    pub server: Option<S3Server>,
}

impl S3Target {
    pub fn get() -> Self {
        match std::env::var(ENDPOINT_VAR) {
            Ok(endpoint) if !endpoint.is_empty() => {
                let port = url::Url::parse(&endpoint)
                    .ok()
                    .and_then(|u| u.port_or_known_default())
                    .unwrap_or_else(|| panic!("{ENDPOINT_VAR}={endpoint} is not an http URL"));
                Self {
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    port,
                    server: None,
                }
            }
            _ => {
                let server = S3Server::spawn();
                Self {
                    endpoint: server.endpoint(),
                    port: server.port(),
                    server: Some(server),
                }
            }
        }
    }

    /// The endpoint virtual-hosted requests go to (the bucket is prepended to its host).
    pub fn vhost_endpoint(&self) -> String {
        format!("http://{VHOST_BASE}:{}", self.port)
    }

    /// A store configuration for `bucket/prefix` on this server.
    pub fn config(
        &self,
        bucket: &str,
        prefix: &str,
        addressing: Addressing,
        retry: RetryConfig,
    ) -> StoreConfig {
        store_config(&self.endpoint, bucket, prefix, addressing).with_retry(retry)
    }
}

/// A plain HTTP client (no signing) that resolves `*.sonic.test` to this machine.
pub fn plain_http(port: u16) -> reqwest::Client {
    crypto();
    let mut builder = reqwest::Client::builder().no_proxy();
    for bucket in [INPUT_BUCKET, OUTPUT_BUCKET] {
        builder = builder.resolve(
            &format!("{bucket}.{VHOST_BASE}"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        );
    }
    builder.build().expect("plain HTTP client")
}

/// One store under test.
pub struct Fixture {
    pub name: &'static str,
    pub storage: Storage,
    /// The S3 addressing (the store signs URLs), or `None`: it must refuse to sign (memory,
    /// local directory).
    pub addressing: Option<Addressing>,
    pub http: Option<reqwest::Client>,
    _server: Option<S3Server>,
    _dirs: Vec<tempfile::TempDir>,
}

fn with_small_parts(url: &str) -> StoreConfig {
    StoreConfig::from_url(url)
        .expect("test URL")
        .with_part_size(MIN_PART_SIZE)
}

pub fn memory() -> Fixture {
    let config = with_small_parts("memory://");
    Fixture {
        name: "memory",
        storage: Storage::from_configs(&config, &config).expect("memory stores"),
        addressing: None,
        http: None,
        _server: None,
        _dirs: Vec::new(),
    }
}

pub fn local_dir() -> Fixture {
    let (inputs, outputs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = |dir: &tempfile::TempDir| {
        url::Url::from_directory_path(dir.path())
            .unwrap()
            .to_string()
    };
    let storage = Storage::from_configs(
        &with_small_parts(&url(&inputs)),
        &with_small_parts(&url(&outputs)),
    )
    .expect("local stores");
    Fixture {
        name: "local directory",
        storage,
        addressing: None,
        http: None,
        _server: None,
        _dirs: vec![inputs, outputs],
    }
}

pub fn s3(addressing: Addressing) -> Fixture {
    let target = S3Target::get();
    let prefix = run_prefix();
    let storage = Storage::from_configs(
        &target.config(INPUT_BUCKET, &prefix, addressing, quick_retry()),
        &target.config(OUTPUT_BUCKET, &prefix, addressing, quick_retry()),
    )
    .expect("S3 stores");
    Fixture {
        name: match addressing {
            Addressing::VirtualHosted => "s3 virtual-hosted",
            _ => "s3 path-style",
        },
        storage,
        addressing: Some(addressing),
        http: Some(plain_http(target.port)),
        _server: target.server,
        _dirs: Vec::new(),
    }
}

/// An error and all its sources, `: `-separated (what a log line with the full cause shows).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

/// A loopback endpoint that accepts TCP connections and never answers (a hung server or a
/// black-holing proxy). It holds every connection open until the returned task is aborted or
/// the test's runtime ends.
pub async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("silent listener");
    let port = listener.local_addr().expect("listener address").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("http://127.0.0.1:{port}"), task)
}

/// A loopback endpoint where nothing listens: connections are refused.
pub fn refusing_endpoint() -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("listener");
    let port = listener.local_addr().expect("listener address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// An S3 store configuration for `endpoint` (path style, test credentials) with short limits:
/// `timeout` to connect and per request, one retry that must start within `timeout`.
pub fn impatient_s3_config(endpoint: &str, timeout: Duration) -> StoreConfig {
    StoreConfig::from_url(&format!("s3://{OUTPUT_BUCKET}/{}", run_prefix()))
        .expect("test URL")
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_addressing(Addressing::Path)
        .with_credentials(Credentials::new(ACCESS_KEY, SECRET_KEY))
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
                base: 2.0,
            },
            max_retries: 1,
            retry_timeout: timeout,
        })
        .with_connect_timeout(timeout)
        .with_request_timeout(timeout)
}
