//! A cheap check that a store is reachable and writable, made before any expensive work.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::key::ObjectKey;
use crate::object::PutOptions;
use crate::store::{ObjectStorage, ObjectStorageExt};

/// The body of the probe object.
const PROBE_BODY: &[u8] = b"sonic storage probe\n";

/// The file-name prefix of probe objects (`{prefix}/.sonic-probe-{uuid}`).
pub const PROBE_NAME_PREFIX: &str = ".sonic-probe-";

/// What a successful [`probe`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeReport {
    /// The store's URL.
    pub store: String,
    /// The key that was written, read back and deleted.
    pub key: ObjectKey,
    /// How long the three requests took together.
    pub elapsed: Duration,
}

/// Checks that `store` is reachable and that objects can be created, read and deleted under
/// `prefix`: writes a tiny object create-only at `{prefix}/.sonic-probe-{uuid}`, reads it back,
/// deletes it. Nothing is left behind when it succeeds (or when only the read fails).
///
/// Call it when a job starts, before loading models, so that a store that is unusable fails
/// in seconds with the real cause rather than after the work is done:
///
/// - missing or wrong credentials, a bucket policy or ACL that refuses the write, or a local
///   directory that cannot be written: [`StorageError::PermissionDenied`], with the store's
///   message (S3's `<Code>` and message, the file and OS error) in its source chain;
/// - an endpoint that does not connect or answer: [`StorageError::Timeout`] within the limits
///   of [`TransportOptions`](crate::TransportOptions);
/// - an endpoint that refuses connections, DNS or TLS failures, a bucket that does not exist,
///   a local path that cannot be a directory: [`StorageError::Backend`] (or
///   [`StorageError::NotFound`]) with the connection or file system error as source.
///
/// The error's `operation` (`put`, `get`, `delete`) says which step failed. Costs three requests
/// (four on Aliyun OSS, whose create-only writes stage and copy).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sonic_storage::Result<()> {
/// use sonic_storage::{Bucket, ObjectKey, ObjectStorageExt};
///
/// let store = Bucket::from_url("memory://")?;
/// let report = store.probe(&ObjectKey::new("outputs")?).await?;
/// assert!(report.key.file_name().starts_with(".sonic-probe-"));
/// assert!(store.list_all(None).await?.is_empty());
/// # Ok(()) }
/// ```
pub async fn probe<S: ObjectStorage + ?Sized>(
    store: &S,
    prefix: &ObjectKey,
) -> Result<ProbeReport> {
    let started = Instant::now();
    let key = prefix.join(&format!(
        "{PROBE_NAME_PREFIX}{}",
        uuid::Uuid::new_v4().simple()
    ))?;
    store
        .put(
            &key,
            Bytes::from_static(PROBE_BODY),
            PutOptions::create_only().with_content_type("text/plain"),
        )
        .await?;
    let read = store.get_bytes(&key).await;
    let deleted = store.delete(&key).await;
    match read {
        Ok(bytes) if bytes == PROBE_BODY => {}
        Ok(bytes) => {
            return Err(StorageError::Backend {
                store: store.store_url().to_owned(),
                operation: "get",
                key: key.to_string(),
                source: Box::new(object_store::Error::Generic {
                    store: "sonic-storage probe",
                    source: format!(
                        "read back {} bytes that differ from the {} bytes written",
                        bytes.len(),
                        PROBE_BODY.len()
                    )
                    .into(),
                }),
            });
        }
        Err(e) => {
            if let Err(delete) = &deleted {
                tracing::warn!(store = %store.store_url(), key = %key, error = %delete,
                    "could not delete the probe object");
            }
            return Err(e);
        }
    }
    deleted?;
    let elapsed = started.elapsed();
    tracing::debug!(store = %store.store_url(), key = %key, ?elapsed, "store probe passed");
    Ok(ProbeReport {
        store: store.store_url().to_owned(),
        key,
        elapsed,
    })
}
