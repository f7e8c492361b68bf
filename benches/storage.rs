//! Object storage: put and get of one large object (a video-sized body) in memory, on a local
//! directory and, when `SONIC_TEST_S3_ENDPOINT` names one, on an S3 server.
//!
//! The S3 server takes the storage tests' credentials and buckets (`sonic-storage/tests/common`:
//! key `sonic-test-key`, secret `sonic-test-secret`, bucket `sonic-outputs`); without the
//! variable the S3 bench is left out with a message.
//!
//! Sizes: `fixture` 1 MiB, `medium` (`fixtures/medium.json` `storage_medium`) 64 MiB.

mod common;

use std::hint::black_box;
use std::sync::Arc;

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

/// The S3 endpoint to bench against, if `SONIC_TEST_S3_ENDPOINT` names one.
fn s3_endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint.trim_end_matches('/').to_owned()),
        _ => {
            eprintln!("storage bench: no {ENDPOINT_VAR}, so no S3 bench");
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

    let memory: Arc<dyn ObjectStorage> =
        Arc::new(Bucket::from_url("memory://").expect("memory store"));
    put_get(c, &rt, "memory", &memory);

    if let Some(endpoint) = s3_endpoint() {
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
