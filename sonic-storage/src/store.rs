//! The store trait ([`ObjectStorage`]) and the conveniences built on it ([`ObjectStorageExt`]).

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::body::{Body, UploadStream};
use crate::error::{Result, StorageError};
use crate::key::ObjectKey;
use crate::object::{Download, ObjectInfo, PutOptions, Sha256Digest, SignedMethod, SignedUrl};
use crate::probe::ProbeReport;

/// One place objects live: a bucket and prefix, a local directory, memory.
///
/// This is the small set of operations a store must provide; everything else
/// ([`ObjectStorageExt`], [`Storage`](crate::Storage)) is built on it. [`Bucket`](crate::Bucket)
/// implements it for every `object_store` backend.
///
/// Contract (the conformance tests check it for every store):
/// - `put_stream` with [`WriteMode::CreateOnly`](crate::WriteMode::CreateOnly) fails with
///   [`StorageError::AlreadyExists`] when the key exists and never overwrites;
/// - a put that fails part-way (body error, network error) leaves no object at the key;
/// - missing objects give [`StorageError::NotFound`]; deleting a missing object succeeds;
/// - `signed_url` returns [`StorageError::NotSupported`] if the store cannot sign, never an
///   unsigned URL.
#[async_trait]
pub trait ObjectStorage: fmt::Debug + Send + Sync + 'static {
    /// The store's URL without credentials (`s3://bucket/prefix`, `file:///srv/sonic`,
    /// `memory://`), used in errors and in manifest records.
    fn store_url(&self) -> &str;

    /// Uploads `body` to `key`, recording its size and SHA-256. Large bodies go multipart.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: UploadStream,
        options: PutOptions,
    ) -> Result<ObjectInfo>;

    /// Downloads `key`, or the byte range `range` of it.
    async fn get_stream(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<Download>;

    /// The metadata of `key`.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo>;

    /// Every object under `prefix` (whole segments: `a/b` covers `a/b/c`, not `a/bc`), or
    /// every object in the store. The order is unspecified.
    fn list(&self, prefix: Option<&ObjectKey>) -> BoxStream<'static, Result<ObjectInfo>>;

    /// The names of the immediate "directories" under `prefix` (`list_children("inputs/acme")`
    /// gives the job ids of tenant `acme`), sorted.
    async fn list_children(&self, prefix: &ObjectKey) -> Result<Vec<String>>;

    /// Deletes `key`. Deleting a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// A URL that allows `method` on `key` for `expires_in`, or
    /// [`StorageError::NotSupported`] where the store cannot sign.
    async fn signed_url(
        &self,
        key: &ObjectKey,
        method: SignedMethod,
        expires_in: Duration,
    ) -> Result<SignedUrl>;
}

/// Conveniences for every [`ObjectStorage`]: uploads from bytes or files, downloads to bytes
/// or files, range reads, a reachability and permission [probe](ObjectStorageExt::probe). Implemented for every store; not meant to be implemented by hand.
pub trait ObjectStorageExt: ObjectStorage {
    /// Uploads `body` (bytes, a file or a stream) to `key`.
    fn put(
        &self,
        key: &ObjectKey,
        body: impl Into<Body> + Send,
        options: PutOptions,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send {
        let body = body.into();
        async move {
            let stream = body.into_stream().await?;
            self.put_stream(key, stream, options).await
        }
    }

    /// Downloads the whole object into memory.
    fn get_bytes(&self, key: &ObjectKey) -> impl Future<Output = Result<Bytes>> + Send {
        async move { collect(self.get_stream(key, None).await?).await }
    }

    /// Downloads the bytes `range` (`start..end`, end exclusive) of the object.
    fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Bytes>> + Send {
        async move { collect(self.get_stream(key, Some(range)).await?).await }
    }

    /// Downloads the object to the local file `path`, computing its SHA-256 on the way.
    ///
    /// The bytes go to a temporary file beside `path` that is renamed into place only when the
    /// download is complete, so `path` never holds a partial object.
    fn get_to_file(
        &self,
        key: &ObjectKey,
        path: &Path,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send {
        async move {
            let io = |source| StorageError::Io {
                path: path.to_owned(),
                source,
            };
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => std::path::PathBuf::from("."),
            };
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            let download = self.get_stream(key, None).await?;
            let mut info = download.info;
            let (temp_file, temp_path) = tempfile::NamedTempFile::new_in(&dir)
                .map_err(io)?
                .into_parts();
            let mut file = tokio::fs::File::from_std(temp_file);
            let mut hasher = sha2::Sha256::new();
            let mut stream = download.stream;
            while let Some(chunk) = stream.try_next().await? {
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.flush().await.map_err(io)?;
            file.sync_all().await.map_err(io)?;
            drop(file);
            temp_path.persist(path).map_err(|e| io(e.error))?;
            info.sha256 = Some(Sha256Digest(hasher.finalize().into()));
            Ok(info)
        }
    }

    /// `true` if `key` exists.
    fn exists(&self, key: &ObjectKey) -> impl Future<Output = Result<bool>> + Send {
        async move {
            match self.head(key).await {
                Ok(_) => Ok(true),
                Err(StorageError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }

    /// Checks that the store is reachable and that objects can be created, read and deleted
    /// under `prefix`, with the real cause attached when not; see [`probe`](crate::probe()).
    /// Meant to run before expensive work (loading models).
    fn probe(&self, prefix: &ObjectKey) -> impl Future<Output = Result<ProbeReport>> + Send {
        crate::probe::probe(self, prefix)
    }

    /// Every object under `prefix`, sorted by key.
    fn list_all(
        &self,
        prefix: Option<&ObjectKey>,
    ) -> impl Future<Output = Result<Vec<ObjectInfo>>> + Send {
        async move {
            let mut all: Vec<ObjectInfo> = self.list(prefix).try_collect().await?;
            all.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(all)
        }
    }
}

impl<T: ObjectStorage + ?Sized> ObjectStorageExt for T {}

async fn collect(download: Download) -> Result<Bytes> {
    let capacity = usize::try_from(download.range.end - download.range.start).unwrap_or(0);
    let mut out = BytesMut::with_capacity(capacity);
    let mut stream = download.stream;
    while let Some(chunk) = stream.try_next().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
