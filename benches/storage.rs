//! Object storage: put and get of one large object (a video-sized body) on a local directory
//! and on an S3 server.
//!
//! The S3 server is the one `SONIC_TEST_S3_ENDPOINT` names (CI: `.ci/s3-server.sh start`), or
//! an `s3s-fs` started from `PATH` for the run (install: `cargo install s3s-fs --version
//! 0.14.1 --features binary --locked`); without either, the S3 benches are skipped with a
//! message. Credentials and buckets are the storage tests' (`sonic-storage/tests/common`).
//!
//! Sizes: `fixture` 1 MiB, `medium` (`fixtures/medium.json` `storage_medium`) 64 MiB.

mod common;

use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use common::{Size, medium, num, sizes};
use sonic_storage::{
    Addressing, Bucket, Credentials, ObjectKey, ObjectStorage, ObjectStorageExt, PutOptions,
    StoreConfig,
};

const ENDPOINT_VAR: &str = "SONIC_TEST_S3_ENDPOINT";
const ACCESS_KEY: &str = "sonic-test-key";
const SECRET_KEY: &str = "sonic-test-secret";
const BUCKET: &str = "sonic-outputs";

/// An `s3s-fs` this bench started; killed when dropped.
struct OwnServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The S3 endpoint to bench against, and the server started for it (if any).
fn s3_endpoint() -> Option<(String, Option<OwnServer>)> {
    if let Ok(endpoint) = std::env::var(ENDPOINT_VAR)
        && !endpoint.is_empty()
    {
        return Some((endpoint.trim_end_matches('/').to_owned(), None));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = spawn_s3s_fs(dir.path(), port)?;
    let server = OwnServer { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "s3s-fs did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((format!("http://127.0.0.1:{port}"), Some(server)))
}

fn spawn_s3s_fs(root: &Path, port: u16) -> Option<Child> {
    let binary = std::env::var_os("SONIC_TEST_S3S_FS").unwrap_or_else(|| "s3s-fs".into());
    match Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Some(child),
        Err(e) => {
            eprintln!(
                "storage bench: skipping S3 (no {ENDPOINT_VAR} and no s3s-fs on PATH: {e}); \
                 install it with `cargo install s3s-fs --version 0.14.1 --features binary --locked`"
            );
            None
        }
    }
}

fn object_bytes(size: Size) -> Option<usize> {
    match size {
        Size::Fixture => Some(1 << 20),
        Size::Medium => Some(num(&medium()["storage_medium"]["input"], "bytes")),
        Size::Real => None,
    }
}

/// Deterministic incompressible bytes (xorshift).
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn put_get(c: &mut Criterion, rt: &Runtime, name: &str, store: &Arc<dyn ObjectStorage>) {
    for size in sizes() {
        let Some(len) = object_bytes(size) else {
            continue;
        };
        let body = bytes::Bytes::from(pattern(len));
        let key = ObjectKey::new(format!("bench/{}/object.bin", size.name())).expect("key");

        let mut group = c.benchmark_group("storage_put");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new(name, size.name()), |b| {
            b.iter(|| {
                rt.block_on(store.put(&key, body.clone(), PutOptions::overwrite()))
                    .expect("put")
            })
        });
        group.finish();

        let mut group = c.benchmark_group("storage_get");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new(name, size.name()), |b| {
            b.iter(|| {
                let got = rt.block_on(store.get_bytes(&key)).expect("get");
                assert_eq!(got.len(), len);
                black_box(got)
            })
        });
        group.finish();
        rt.block_on(store.delete(&key)).expect("delete");
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let dir = tempfile::tempdir().expect("temp dir");
    let url = url::Url::from_directory_path(dir.path())
        .expect("absolute path")
        .to_string();
    let local: Arc<dyn ObjectStorage> = Arc::new(Bucket::from_url(&url).expect("local store"));
    put_get(c, &rt, "local_dir", &local);

    if let Some((endpoint, _server)) = s3_endpoint() {
        let config = StoreConfig::from_url(&format!("s3://{BUCKET}/bench-{}", std::process::id()))
            .expect("S3 URL")
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_addressing(Addressing::Path)
            .with_credentials(Credentials::new(ACCESS_KEY, SECRET_KEY));
        // Bucket::open builds an HTTP client: inside the runtime, as the pipeline does.
        let s3: Arc<dyn ObjectStorage> = Arc::new(
            rt.block_on(async { Bucket::open(&config) })
                .expect("S3 store"),
        );
        put_get(c, &rt, "s3", &s3);
    }
}

criterion_group! {
    name = storage;
    config = common::criterion();
    targets = benches
}
criterion_main!(storage);
