//! Test support: the stores the conformance suite runs against, and the local S3 server.
//!
//! S3 tests use the server named by `SONIC_TEST_S3_ENDPOINT` (what `.ci/s3-server.sh start`
//! prints), or else start `s3s-fs` from `PATH` themselves. A missing `s3s-fs` fails the test with
//! the command that installs it: S3 tests are never skipped.
#![allow(dead_code)] // each test binary uses a different part

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonic_storage::object_store::client::{DnsFuture, DnsResolver};
use sonic_storage::object_store::{BackoffConfig, ClientOptions, RetryConfig};
use sonic_storage::{Addressing, Credentials, MIN_PART_SIZE, Storage, StoreConfig};

/// Where a running server is (`http://127.0.0.1:PORT`).
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
pub const INSTALL: &str = "cargo install s3s-fs --version 0.14.1 --features binary --locked";

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

/// An `s3s-fs` process this test started; killed when dropped.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

fn s3s_fs_binary() -> PathBuf {
    std::env::var_os("SONIC_TEST_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("s3s-fs"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free local port")
        .port()
}

fn start(root: &Path, port: u16) -> Child {
    let mut child = Command::new(s3s_fs_binary())
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .arg("--access-key")
        .arg(ACCESS_KEY)
        .arg("--secret-key")
        .arg(SECRET_KEY)
        .arg("--domain")
        .arg(format!("{VHOST_BASE}:{port}"))
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start s3s-fs ({e}). The S3 tests need it: install it with `{INSTALL}`, \
                 or point {ENDPOINT_VAR} at a running server (`.ci/s3-server.sh start`)"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        if let Some(status) = child.try_wait().expect("waiting on s3s-fs") {
            panic!("s3s-fs exited with {status} before listening on port {port}");
        }
        assert!(
            Instant::now() < deadline,
            "s3s-fs did not listen on port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl S3Server {
    /// Starts a server on a free port over a fresh directory holding both buckets.
    pub fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_owned();
        for bucket in [INPUT_BUCKET, OUTPUT_BUCKET] {
            std::fs::create_dir(root.join(bucket)).expect("bucket dir");
        }
        let port = free_port();
        let child = start(&root, port);
        Self {
            child: Some(child),
            port,
            root,
            _dir: dir,
        }
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port over the same directory.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(start(&self.root, self.port));
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
    /// Whether the store signs URLs (S3) or must refuse to (memory, local directory).
    pub signs: bool,
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
        signs: false,
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
        signs: false,
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
        signs: true,
        http: Some(plain_http(target.port)),
        _server: target.server,
        _dirs: Vec::new(),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so large bodies are not trivially compressible
/// or periodic.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
