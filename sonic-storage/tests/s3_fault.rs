//! Fault tests against a real S3 server: the server dies in the middle of a multipart upload.
//!
//! Each test starts and stops its own in-process S3 server on a free port (never a shared one).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{INPUT_BUCKET, OUTPUT_BUCKET, S3Server, S3Target, run_prefix};
use futures::StreamExt;
use sonic_storage::integration::pattern;
use sonic_storage::object_store::{BackoffConfig, RetryConfig};
use sonic_storage::{
    Addressing, Body, InputKind, JobRef, MIN_PART_SIZE, ObjectInfo, ObjectKey, ObjectStorage,
    ObjectStorageExt, Sha256Digest, Storage, StorageError,
};

fn no_patience() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
    }
}

/// A body of `data` in 1 MiB chunks that, just before chunk `kill_before`, gives the parts
/// already cut time to reach the server and then kills the server.
fn body_that_kills(data: &[u8], server: Arc<Mutex<S3Server>>, kill_before: usize) -> Body {
    let chunks: Vec<Bytes> = data.chunks(1 << 20).map(Bytes::copy_from_slice).collect();
    Body::stream(futures::stream::iter(chunks.into_iter().enumerate()).then(
        move |(index, chunk)| {
            let server = server.clone();
            async move {
                if index == kill_before {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    server.lock().unwrap().stop();
                }
                Ok(chunk)
            }
        },
    ))
}

struct Case {
    server: Arc<Mutex<S3Server>>,
    storage: Storage,
    job: JobRef,
    data: Vec<u8>,
}

fn setup(seed: u64) -> Case {
    let server = S3Server::spawn();
    let target = S3Target {
        endpoint: server.endpoint(),
        port: server.port(),
        server: None,
    };
    let prefix = run_prefix();
    let storage = Storage::from_configs(
        &target.config(INPUT_BUCKET, &prefix, Addressing::Path, no_patience()),
        &target.config(OUTPUT_BUCKET, &prefix, Addressing::Path, no_patience()),
    )
    .unwrap();
    Case {
        server: Arc::new(Mutex::new(server)),
        storage,
        job: JobRef::parse("acme", "crash-1").unwrap(),
        // Three full parts and a tail: the server dies after the second part went out.
        data: pattern(3 * MIN_PART_SIZE + 777, seed),
    }
}

/// After the failure and a restart: nothing is visible, not even a staged upload.
async fn assert_nothing_visible(store: &dyn ObjectStorage, key: &ObjectKey) {
    assert!(store.head(key).await.unwrap_err().is_not_found());
    let all: Vec<ObjectInfo> = store.list_all(None).await.unwrap();
    assert!(all.is_empty(), "left behind: {all:?}");
}

fn assert_typed_failure(err: &StorageError) {
    assert!(
        matches!(
            err,
            StorageError::Backend {
                operation: "put",
                ..
            }
        ),
        "expected a put failure from the store, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_stopped_during_create_only_multipart_upload() {
    let case = setup(21);
    let key = case.job.video_key();
    let kill_before = 2 * MIN_PART_SIZE / (1 << 20);

    let body = body_that_kills(&case.data, case.server.clone(), kill_before);
    let err = case.storage.put_video(&case.job, body).await.unwrap_err();
    assert_typed_failure(&err);

    case.server.lock().unwrap().restart();
    assert_nothing_visible(case.storage.outputs().as_ref(), &key).await;

    let info = case
        .storage
        .put_video(&case.job, case.data.clone())
        .await
        .unwrap();
    assert_eq!(info.sha256, Some(Sha256Digest::of(&case.data)));
    assert_eq!(
        case.storage.outputs().get_bytes(&key).await.unwrap(),
        case.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_stopped_during_overwrite_multipart_upload() {
    let case = setup(22);
    let key = case.job.input_key(InputKind::Audio, "wav").unwrap();
    let kill_before = 2 * MIN_PART_SIZE / (1 << 20);

    let body = body_that_kills(&case.data, case.server.clone(), kill_before);
    let err = case
        .storage
        .put_input(&case.job, InputKind::Audio, "wav", body)
        .await
        .unwrap_err();
    assert_typed_failure(&err);

    case.server.lock().unwrap().restart();
    assert_nothing_visible(case.storage.inputs().as_ref(), &key).await;

    let info = case
        .storage
        .put_input(&case.job, InputKind::Audio, "wav", case.data.clone())
        .await
        .unwrap();
    assert_eq!(info.size, case.data.len() as u64);
    assert_eq!(
        case.storage.inputs().get_bytes(&key).await.unwrap(),
        case.data
    );
}
