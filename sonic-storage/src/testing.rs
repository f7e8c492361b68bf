//! An S3 server for tests, inside the test process (cargo feature `testing`).
//!
//! [`S3Server`] is [s3s](https://crates.io/crates/s3s) over
//! [s3s-fs](https://crates.io/crates/s3s-fs) (a temporary directory), served with hyper on a
//! free 127.0.0.1 port from a thread and tokio runtime of its own. It checks SigV4 signatures
//! (so wrong secrets, tampered and expired presigned URLs are refused), serves path-style and
//! virtual-hosted-style requests (`{bucket}.s3.sonic.test:{port}`, resolved to 127.0.0.1 by
//! [`Loopback`], never through `/etc/hosts`), can be stopped and restarted on the same port
//! over the same data (as a crash and a recovery), and can rotate or revoke the keys it accepts
//! while it runs (credentials that expire). Nothing outside the test binary is needed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sonic_storage::Result<()> {
//! use sonic_storage::testing::S3Server;
//! use sonic_storage::{InputKind, JobRef};
//!
//! let s3 = S3Server::spawn(); // buckets `sonic-inputs` and `sonic-outputs`
//! let storage = s3.storage("my-test");
//! let job = JobRef::parse("acme", "job-1")?;
//! storage.put_input(&job, InputKind::Image, "png", b"\x89PNG".to_vec()).await?;
//! # Ok(()) }
//! ```
//!
//! The server does not check session tokens: STS-style credentials are any access key and
//! secret it accepts, with any token.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::client::{DnsFuture, DnsResolver};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::config::{Addressing, Credentials, MIN_PART_SIZE, StoreConfig};
use crate::storage::Storage;

/// The access key the server accepts when it starts.
pub const ACCESS_KEY: &str = "sonic-test-key";
/// The secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "sonic-test-secret";
/// Virtual-hosted requests go to `{bucket}.s3.sonic.test:{port}`, which [`Loopback`] resolves
/// to 127.0.0.1.
pub const VHOST_BASE: &str = "s3.sonic.test";
/// The bucket [`S3Server::storage`] keeps inputs in.
pub const INPUT_BUCKET: &str = "sonic-inputs";
/// The bucket [`S3Server::storage`] keeps outputs and manifests in (a different bucket, as in
/// most deployments).
pub const OUTPUT_BUCKET: &str = "sonic-outputs";

/// A DNS resolver (object_store's [`ClientOptions::with_dns_resolver`]) that resolves
/// [`VHOST_BASE`] and every name under it to 127.0.0.1 and refuses everything else, so that a
/// test never leaves the machine.
#[derive(Debug, Clone, Copy, Default)]
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

/// The keys the server accepts: access key to secret, shared by every start of one server.
#[derive(Debug, Default)]
struct Keys(RwLock<HashMap<String, String>>);

impl Keys {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// s3s' authentication over the shared keys: a key that is not (or no longer) accepted gets
/// `403 InvalidAccessKeyId`, a wrong secret `403 SignatureDoesNotMatch`.
struct SharedAuth(Arc<Keys>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for SharedAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.0.read().get(access_key) {
            Some(secret) => Ok(s3s::auth::SecretKey::from(secret.as_str())),
            None => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The access key is not (or no longer) accepted by this server"
            )),
        }
    }
}

/// A running server: its own thread and tokio runtime, so that stopping it closes the listener
/// and every connection at once (as a crash would), whatever runtime the test is on.
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

/// The s3s service over `root`: SigV4 with the shared keys, virtual-hosted base
/// `s3.sonic.test:{port}`.
fn service(root: &Path, port: u16, keys: &Arc<Keys>) -> s3s::service::S3Service {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs over the data directory");
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(SharedAuth(keys.clone()));
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

fn start(root: &Path, port: u16, keys: &Arc<Keys>) -> (Running, u16) {
    let listener = bind(port);
    let port = listener.local_addr().expect("listener address").port();
    let service = service(root, port, keys);
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

/// An in-process S3 server over a fresh temporary directory holding the buckets
/// [`INPUT_BUCKET`] and [`OUTPUT_BUCKET`]; it accepts [`ACCESS_KEY`]/[`SECRET_KEY`] until told
/// otherwise, and is stopped (its directory deleted) when dropped.
///
/// Its methods panic when the server cannot be set up (a test harness: there is nothing to
/// recover).
pub struct S3Server {
    running: Option<Running>,
    port: u16,
    root: PathBuf,
    keys: Arc<Keys>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<String> = self.keys.read().keys().cloned().collect();
        keys.sort();
        f.debug_struct("S3Server")
            .field("port", &self.port)
            .field("root", &self.root)
            .field("running", &self.running.is_some())
            .field("access_keys", &keys)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts a server on a free 127.0.0.1 port over a fresh directory holding both buckets.
    pub fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the S3 server");
        let root = dir.path().to_owned();
        for bucket in [INPUT_BUCKET, OUTPUT_BUCKET] {
            std::fs::create_dir(root.join(bucket)).expect("bucket directory");
        }
        let keys = Arc::new(Keys::default());
        keys.write().insert(ACCESS_KEY.into(), SECRET_KEY.into());
        let (running, port) = start(&root, 0, &keys);
        Self {
            running: Some(running),
            port,
            root,
            keys,
            _dir: dir,
        }
    }

    /// Stops accepting and drops every open connection (as a crash would); the data and the
    /// accepted keys stay. Stopping a stopped server does nothing.
    pub fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.stop();
        }
    }

    /// Starts it again (stopping it first if it runs) on the same port over the same
    /// directory, accepting the same keys.
    pub fn restart(&mut self) {
        self.stop();
        let (running, port) = start(&self.root, self.port, &self.keys);
        assert_eq!(port, self.port);
        self.running = Some(running);
    }

    /// Whether it is running (not [stopped](Self::stop)).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory: one directory per bucket, one file per object.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Adds a bucket (an empty directory; nothing happens if it exists).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.join(bucket)).expect("bucket directory");
    }

    /// The path-style endpoint, `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The endpoint virtual-hosted requests go to, `http://s3.sonic.test:{port}` (the bucket is
    /// prepended to its host; resolve it with [`Loopback`]).
    pub fn vhost_endpoint(&self) -> String {
        format!("http://{VHOST_BASE}:{}", self.port)
    }

    /// Accepts `access_key` with `secret` too (replacing its secret if it was accepted).
    pub fn add_credentials(&self, access_key: impl Into<String>, secret: impl Into<String>) {
        self.keys.write().insert(access_key.into(), secret.into());
    }

    /// Stops accepting `access_key`: from the next request on, requests signed with it get
    /// `403 InvalidAccessKeyId` (a revoked or expired key). Returns whether it was accepted.
    pub fn revoke(&self, access_key: &str) -> bool {
        self.keys.write().remove(access_key).is_some()
    }

    /// Accepts `access_key` with `secret` and nothing else from the next request on: every
    /// key accepted before is revoked (what STS rotation looks like to a worker whose old
    /// credentials expired).
    pub fn rotate_credentials(&self, access_key: impl Into<String>, secret: impl Into<String>) {
        let mut keys = self.keys.write();
        keys.clear();
        keys.insert(access_key.into(), secret.into());
    }

    /// Whether `access_key` is accepted now.
    pub fn accepts(&self, access_key: &str) -> bool {
        self.keys.read().contains_key(access_key)
    }

    /// A store configuration for `bucket/prefix` on this server (see [`store_config`]):
    /// [`ACCESS_KEY`]/[`SECRET_KEY`], [`Loopback`] DNS, short timeouts, [`quick_retry`],
    /// [`MIN_PART_SIZE`] parts. Change what you need on it (`with_credentials_file` ...).
    pub fn config(&self, bucket: &str, prefix: &str, addressing: Addressing) -> StoreConfig {
        store_config(&self.endpoint(), bucket, prefix, addressing)
    }

    /// A [`Storage`] on this server, path style: inputs in [`INPUT_BUCKET`], outputs and
    /// manifests in [`OUTPUT_BUCKET`], both under `prefix` (`""`: none).
    pub fn storage(&self, prefix: &str) -> Storage {
        Storage::from_configs(
            &self.config(INPUT_BUCKET, prefix, Addressing::Path),
            &self.config(OUTPUT_BUCKET, prefix, Addressing::Path),
        )
        .expect("S3 stores on the test server")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A store configuration for `bucket/prefix` (`prefix` may be empty) on a test server at
/// `endpoint` (`http://127.0.0.1:{port}`, this module's server or any S3-compatible one that
/// accepts [`ACCESS_KEY`]/[`SECRET_KEY`]):
///
/// - `addressing`: [`Addressing::Path`] sends requests to `endpoint`;
///   [`Addressing::VirtualHosted`] to `{bucket}.s3.sonic.test:{port}` (the endpoint's port);
/// - credentials [`ACCESS_KEY`]/[`SECRET_KEY`], region `us-east-1`;
/// - DNS through [`Loopback`], 2 s to connect, 30 s per request, [`quick_retry`];
/// - [`MIN_PART_SIZE`] parts, so multipart uploads happen with small bodies.
///
/// # Panics
///
/// When `endpoint` is not an `http://host:port` URL or `bucket/prefix` is not a valid store URL.
pub fn store_config(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    addressing: Addressing,
) -> StoreConfig {
    let endpoint = endpoint.trim_end_matches('/');
    let endpoint = match addressing {
        Addressing::VirtualHosted => {
            let port = url::Url::parse(endpoint)
                .ok()
                .and_then(|u| u.port_or_known_default())
                .unwrap_or_else(|| panic!("{endpoint} is not an http URL with a port"));
            format!("http://{VHOST_BASE}:{port}")
        }
        _ => endpoint.to_owned(),
    };
    let url = match prefix.trim_matches('/') {
        "" => format!("s3://{bucket}"),
        prefix => format!("s3://{bucket}/{prefix}"),
    };
    StoreConfig::from_url(&url)
        .unwrap_or_else(|e| panic!("test store URL {url}: {e}"))
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
        .with_retry(quick_retry())
        .with_part_size(MIN_PART_SIZE)
}

/// Few, quick retries (2, from 50 ms, none after 10 s): a broken test fails in seconds, not
/// minutes.
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

/// A unique prefix (`run-{uuid}`), so tests sharing a server never see each other's objects.
pub fn run_prefix() -> String {
    format!("run-{}", uuid::Uuid::new_v4().simple())
}
