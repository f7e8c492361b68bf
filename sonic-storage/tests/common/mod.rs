//! Test support: the stores the conformance suite runs against, and the S3 server.
//!
//! S3 tests use the server named by `SONIC_TEST_S3_ENDPOINT` (any S3-compatible server with the
//! credentials, buckets and virtual-hosted base below), or else an in-process one: s3s over
//! s3s-fs, served with hyper on a free 127.0.0.1 port. It checks SigV4 signatures (so tampered
//! and expired presigned URLs are refused) and serves path-style and virtual-hosted-style
//! requests. Nothing outside the test binary is needed.
#![allow(dead_code)] // each test binary uses a different part

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use sonic_storage::object_store::client::{DnsFuture, DnsResolver};
use sonic_storage::object_store::{BackoffConfig, ClientOptions, RetryConfig};
use sonic_storage::{Addressing, Credentials, MIN_PART_SIZE, Storage, StoreConfig};

/// Where an external server is (`http://127.0.0.1:PORT`); unset: the in-process server.
pub const ENDPOINT_VAR: &str = "SONIC_TEST_S3_ENDPOINT";
/// The credentials the test server accepts.
pub const ACCESS_KEY: &str = "sonic-test-key";
pub const SECRET_KEY: &str = "sonic-test-secret";
/// Virtual-hosted requests go to `{bucket}.s3.sonic.test:{port}`, resolved to 127.0.0.1 by the
/// HTTP clients' DNS override (never /etc/hosts).
pub const VHOST_BASE: &str = "s3.sonic.test";
/// The two buckets: inputs and outputs live in different buckets in every S3 test.
pub const INPUT_BUCKET: &str = "sonic-inputs";
pub const OUTPUT_BUCKET: &str = "sonic-outputs";

/// Installs rustls' ring provider for the plain HTTP test client (the stores do it themselves).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves every `*.sonic.test` host to 127.0.0.1.
#[derive(Debug)]
pub struct Loopback;

impl DnsResolver for Loopback {
    fn resolve(&self, host: &str) -> DnsFuture {
        let known = host == VHOST_BASE || host.ends_with(&format!(".{VHOST_BASE}"));
        let host = host.to_owned();
        Box::pin(async move {
            if known {
                Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
            } else {
                Err(format!("the tests resolve only *.{VHOST_BASE}, not {host}").into())
            }
        })
    }
}

/// A running in-process server: its own thread and tokio runtime, so that stopping it closes the
/// listener and every connection at once (as a crash would), whatever runtime the test is on.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the S3 server thread panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The s3s service over `root`: SigV4 with the test key, virtual-hosted base
/// `s3.sonic.test:{port}`.
fn service(root: &Path, port: u16) -> s3s::service::S3Service {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs over the data directory");
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    builder.set_host(
        s3s::host::MultiDomain::new([format!("{VHOST_BASE}:{port}")]).expect("virtual-hosted base"),
    );
    builder.build()
}

/// Binds 127.0.0.1:`port` (0: a free one). A restart binds the port it had, retrying for a few
/// seconds while the old listener goes away.
fn bind(port: u16) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => {
                listener
                    .set_nonblocking(true)
                    .expect("non-blocking listener");
                return listener;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot listen on 127.0.0.1:{port}: {e}"),
        }
    }
}

fn start(root: &Path, port: u16) -> (Running, u16) {
    let listener = bind(port);
    let port = listener.local_addr().expect("listener address").port();
    let service = service(root, port);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("s3-server-{port}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("S3 server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let socket = tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => socket,
                            Err(_) => continue,
                        },
                    };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let builder = ConnBuilder::new(TokioExecutor::new());
                        let _ = builder
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
            });
            // Drops the listener and every connection task: clients see the server gone.
            runtime.shutdown_timeout(Duration::from_secs(5));
        })
        .expect("S3 server thread");
    (
        Running {
            stop: Some(stop),
            thread: Some(thread),
        },
        port,
    )
}

/// An in-process S3 server over a fresh data directory holding both buckets; stopped when
/// dropped.
pub struct S3Server {
    running: Option<Running>,
    pub port: u16,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server on a free port over a fresh directory holding both buckets.
    pub fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_owned();
        for bucket in [INPUT_BUCKET, OUTPUT_BUCKET] {
            std::fs::create_dir(root.join(bucket)).expect("bucket dir");
        }
        let (running, port) = start(&root, 0);
        Self {
            running: Some(running),
            port,
            root,
            _dir: dir,
        }
    }

    /// Stops accepting and drops every open connection (as a crash would); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.stop();
        }
    }

    /// Starts it again on the same port over the same directory.
    pub fn restart(&mut self) {
        self.stop();
        let (running, port) = start(&self.root, self.port);
        assert_eq!(port, self.port);
        self.running = Some(running);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
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
                    port: server.port,
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
        let endpoint = match addressing {
            Addressing::VirtualHosted => self.vhost_endpoint(),
            _ => self.endpoint.clone(),
        };
        StoreConfig::from_url(&format!("s3://{bucket}/{prefix}"))
            .expect("test URL")
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_addressing(addressing)
            .with_credentials(Credentials::new(ACCESS_KEY, SECRET_KEY))
            .with_client_options(
                ClientOptions::new()
                    .with_dns_resolver(Arc::new(Loopback))
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(30)),
            )
            .with_retry(retry)
            .with_part_size(MIN_PART_SIZE)
    }
}

/// Few, quick retries: a broken test fails in seconds, not minutes.
pub fn quick_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A unique prefix per test, so tests sharing CI's server never see each other's objects.
pub fn run_prefix() -> String {
    format!("run-{}", uuid::Uuid::new_v4().simple())
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
