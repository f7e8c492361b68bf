//! [`Bucket`]: [`ObjectStorage`] on any `object_store` backend.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
#[cfg(feature = "_http")]
use chrono::Utc;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
#[cfg(feature = "_http")]
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutPayload,
};
use sha2::Digest;
use tokio::task::JoinSet;

use crate::body::UploadStream;
use crate::config::{StoreConfig, StoreLocation, UploadOptions};
use crate::content_type;
use crate::error::{Result, StorageError, TimeoutLimits};
use crate::key::ObjectKey;
use crate::object::{
    Download, ObjectInfo, PutOptions, Sha256Digest, SignedMethod, SignedUrl, WriteMode,
};
use crate::store::ObjectStorage;

/// The longest expiry a signed URL may have (the S3 SigV4 limit).
#[cfg(feature = "_http")]
const MAX_SIGNED_URL_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where create-only uploads are staged before the conditional copy that publishes them.
const STAGING_DIR: &str = "_staging";

/// How a store enforces create-only writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateOnly {
    /// Single-part puts use the store's conditional put (`If-None-Match: *` on S3, generation
    /// match on GCS, a hard link on a local directory). Multipart uploads are staged and
    /// published with a conditional copy.
    ConditionalPut,
    /// Every create-only upload is staged and published with a conditional copy (Aliyun OSS:
    /// `x-oss-forbid-overwrite`, which OSS documents for copies; its handling of
    /// `If-None-Match` on a put is not documented).
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    StageAndCopy,
}

/// An [`ObjectStorage`] on an `object_store` backend, under an optional key prefix.
///
/// Open one from a URL ([`Bucket::from_url`]) or a [`StoreConfig`] ([`Bucket::open`]), or wrap
/// an `object_store` you built yourself ([`Bucket::from_object_store`]).
///
/// Uploads hash the body as it streams (SHA-256), send bodies up to the part size in one
/// request and larger ones multipart. Create-only uploads are enforced by the store: a
/// conditional put, or for multipart bodies an upload to `_staging/` under the prefix followed
/// by a conditional copy to the key (the staged object is deleted afterwards). A failed upload
/// is aborted, so nothing appears at the key.
#[derive(Clone)]
pub struct Bucket {
    url: Arc<str>,
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    #[cfg(feature = "_http")]
    signer: Option<Arc<dyn Signer>>,
    create_only: CreateOnly,
    keeps_attributes: bool,
    upload: UploadOptions,
    limits: TimeoutLimits,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("url", &self.url)
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .field("signs", &self.signs())
            .field("create_only", &self.create_only)
            .field("upload", &self.upload)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Bucket {
    /// Opens the store a URL names (see [`StoreConfig::from_url`]) with default settings.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::open(&StoreConfig::from_url(url)?)
    }

    /// Opens the store `config` describes. A local directory is created if missing; remote
    /// stores are not contacted until the first request.
    pub fn open(config: &StoreConfig) -> Result<Self> {
        config.upload.validate()?;
        let url = config.display_url();
        let bucket = match &config.location {
            StoreLocation::Local { root } => {
                let io = |source| StorageError::Io {
                    path: root.clone(),
                    source,
                };
                std::fs::create_dir_all(root).map_err(io)?;
                let root = std::fs::canonicalize(root).map_err(io)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|source| StorageError::InvalidConfig {
                        url: url.clone(),
                        reason: "cannot use the directory".into(),
                        source: Some(Box::new(source)),
                    })?
                    .with_automatic_cleanup(true);
                let url = url::Url::from_directory_path(&root)
                    .map(String::from)
                    .unwrap_or_else(|()| root.display().to_string());
                Self::from_object_store(Arc::new(store), url).without_attributes()
            }
            StoreLocation::Memory => Self::from_object_store(Arc::new(InMemory::new()), url),
            #[cfg(feature = "s3")]
            StoreLocation::S3 { bucket, prefix } => {
                crate::remote::s3(config, bucket, prefix.as_deref(), false)?
            }
            #[cfg(feature = "s3")]
            StoreLocation::Oss { bucket, prefix } => {
                let mut opened = crate::remote::s3(config, bucket, prefix.as_deref(), true)?;
                opened.create_only = CreateOnly::StageAndCopy;
                opened
            }
            #[cfg(feature = "gcp")]
            StoreLocation::Gcs { bucket, prefix } => {
                crate::remote::gcs(config, bucket, prefix.as_deref())?
            }
            #[cfg(feature = "azure")]
            StoreLocation::Azure { container, prefix } => {
                crate::remote::azure(config, container, prefix.as_deref())?
            }
            #[allow(unreachable_patterns)]
            other => {
                let feature = match other {
                    StoreLocation::Gcs { .. } => "gcp",
                    StoreLocation::Azure { .. } => "azure",
                    _ => "s3",
                };
                return Err(StorageError::NotSupported {
                    store: url,
                    operation: format!(
                        "this store kind (build sonic-storage with the `{feature}` feature)"
                    ),
                    source: None,
                });
            }
        };
        Ok(bucket.with_upload_options_unchecked(config.upload))
    }

    /// Wraps an `object_store` you configured yourself. `store_url` names it in errors and
    /// manifests. It cannot sign URLs unless you add a signer ([`Bucket::with_signer`]).
    pub fn from_object_store(store: Arc<dyn ObjectStore>, store_url: impl Into<String>) -> Self {
        Self {
            url: store_url.into().into(),
            store,
            prefix: None,
            #[cfg(feature = "_http")]
            signer: None,
            create_only: CreateOnly::ConditionalPut,
            keeps_attributes: true,
            upload: UploadOptions::default(),
            limits: TimeoutLimits::default(),
        }
    }

    /// Keeps every key under `prefix` inside the store.
    pub fn with_prefix(mut self, prefix: &ObjectKey) -> Self {
        self.prefix = Some(Path::from_iter(prefix.segments()));
        self
    }

    /// Records the connect and request timeouts the store's HTTP client was built with, so
    /// that a [`StorageError::Timeout`] can say which limit was hit (`after`). Stores opened
    /// from a [`StoreConfig`] have them already; set them on an `object_store` you built
    /// yourself. `None`: unknown or disabled.
    pub fn with_timeout_limits(
        mut self,
        connect: Option<Duration>,
        request: Option<Duration>,
    ) -> Self {
        self.limits = TimeoutLimits { connect, request };
        self
    }

    /// Signs URLs with `signer` (for example the same `AmazonS3` as the store). Only with a
    /// remote store feature (`s3`, `gcp`, `azure`).
    #[cfg(feature = "_http")]
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Sets the multipart settings.
    pub fn with_upload_options(self, upload: UploadOptions) -> Result<Self> {
        upload.validate()?;
        Ok(self.with_upload_options_unchecked(upload))
    }

    fn with_upload_options_unchecked(mut self, upload: UploadOptions) -> Self {
        self.upload = upload;
        self
    }

    /// For stores that refuse object attributes (object_store's local file system): uploads
    /// send no content type, and reads report the type guessed from the key's extension.
    pub fn without_attributes(mut self) -> Self {
        self.keeps_attributes = false;
        self
    }

    #[cfg(feature = "_http")]
    pub(crate) fn with_key_prefix(mut self, prefix: Option<&str>) -> Self {
        self.prefix = prefix.map(|p| Path::from_iter(p.split('/')));
        self
    }

    /// Whether this store can sign URLs.
    pub fn signs(&self) -> bool {
        #[cfg(feature = "_http")]
        return self.signer.is_some();
        #[cfg(not(feature = "_http"))]
        false
    }

    /// The `object_store` underneath (keys there include the prefix).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The multipart settings.
    pub fn upload_options(&self) -> UploadOptions {
        self.upload
    }

    fn path(&self, key: &ObjectKey) -> Path {
        let mut path = self.prefix.clone().unwrap_or_default();
        path.extend(key.segments());
        path
    }

    fn key(&self, path: &Path) -> Option<ObjectKey> {
        let relative = match &self.prefix {
            Some(prefix) => path.prefix_match(prefix)?.collect::<Vec<_>>(),
            None => path.parts().collect(),
        };
        let joined = relative
            .iter()
            .map(|part| part.as_ref())
            .collect::<Vec<_>>()
            .join("/");
        ObjectKey::new(joined).ok()
    }

    fn error(
        &self,
        operation: &'static str,
        key: &ObjectKey,
        e: object_store::Error,
    ) -> StorageError {
        StorageError::from_store(&self.url, operation, key.as_str(), e, &self.limits)
    }

    fn staging_path(&self, key: &ObjectKey) -> Path {
        let name = format!("{}-{}", uuid::Uuid::new_v4(), key.file_name());
        let staging = ObjectKey::from_trusted(format!("{STAGING_DIR}/{name}"));
        self.path(&staging)
    }

    fn attributes(&self, content_type: &str) -> Attributes {
        let mut attributes = Attributes::new();
        if self.keeps_attributes {
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        }
        attributes
    }

    fn info_from_meta(
        &self,
        key: &ObjectKey,
        meta: &object_store::ObjectMeta,
        attributes: Option<&Attributes>,
    ) -> ObjectInfo {
        let content_type = attributes
            .and_then(|a| a.get(&Attribute::ContentType))
            .map(|v| v.as_ref().to_owned())
            .or_else(|| {
                (!self.keeps_attributes).then(|| content_type::guess(key.extension()).to_owned())
            });
        ObjectInfo {
            key: key.clone(),
            size: meta.size,
            last_modified: Some(meta.last_modified),
            e_tag: meta.e_tag.clone(),
            version: meta.version.clone(),
            content_type,
            sha256: None,
        }
    }

    /// Publishes a staged object at `path` only if nothing is there, then removes the staged
    /// copy whatever happened.
    async fn publish_staged(&self, key: &ObjectKey, staged: &Path, path: &Path) -> Result<()> {
        let copied = self.store.copy_if_not_exists(staged, path).await;
        if let Err(e) = self.store.delete(staged).await {
            tracing::warn!(store = %self.url, staged = %staged, error = %e,
                "could not delete a staged upload; a retention sweep of `_staging` removes it");
        }
        copied.map_err(|e| self.error("put", key, e))
    }

    async fn put_single(
        &self,
        key: &ObjectKey,
        path: &Path,
        payload: PutPayload,
        attributes: Attributes,
        mode: WriteMode,
    ) -> Result<(Option<String>, Option<String>)> {
        let options = |mode| object_store::PutOptions {
            mode,
            attributes: attributes.clone(),
            ..Default::default()
        };
        let result = match (mode, self.create_only) {
            (WriteMode::Overwrite, _) => self
                .store
                .put_opts(path, payload, options(PutMode::Overwrite))
                .await
                .map_err(|e| self.error("put", key, e))?,
            (WriteMode::CreateOnly, CreateOnly::ConditionalPut) => self
                .store
                .put_opts(path, payload, options(PutMode::Create))
                .await
                .map_err(|e| self.error("put", key, e))?,
            (WriteMode::CreateOnly, CreateOnly::StageAndCopy) => {
                let staged = self.staging_path(key);
                self.store
                    .put_opts(&staged, payload, options(PutMode::Overwrite))
                    .await
                    .map_err(|e| self.error("put", key, e))?;
                self.publish_staged(key, &staged, path).await?;
                return self.version_of(key, path).await;
            }
        };
        Ok((result.e_tag, result.version))
    }

    /// Uploads `first` and the rest of `body` to `target` multipart, `max_concurrency` parts
    /// at a time. On any failure the upload is aborted (best effort: a server that is down
    /// cannot be told, and keeps invisible parts until the bucket's lifecycle rule removes them)
    /// and the original error is returned.
    async fn put_multipart(
        &self,
        target: &Path,
        attributes: Attributes,
        first: Vec<Bytes>,
        body: &mut UploadStream,
        hasher: &mut sha2::Sha256,
        size: &mut u64,
    ) -> Result<object_store::PutResult, UploadFailure> {
        let options = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut upload = self
            .store
            .put_multipart_opts(target, options)
            .await
            .map_err(UploadFailure::Store)?;
        let max_concurrency = self.upload.max_concurrency;
        let result = {
            let upload = &mut upload;
            async move {
                // Parts upload on spawned tasks so they progress while the body is read.
                let mut in_flight = JoinSet::new();
                let mut parts = PartBuffer::new(self.upload.part_size);
                let mut full = Vec::new();
                for chunk in first {
                    parts.push(chunk, &mut full);
                }
                loop {
                    start_parts(&mut in_flight, upload, &mut full, max_concurrency).await?;
                    match body.next().await {
                        Some(Ok(chunk)) => {
                            hasher.update(&chunk);
                            *size += chunk.len() as u64;
                            parts.push(chunk, &mut full);
                        }
                        Some(Err(e)) => return Err(UploadFailure::Body(e)),
                        None => break,
                    }
                }
                full.extend(parts.finish());
                start_parts(&mut in_flight, upload, &mut full, max_concurrency).await?;
                while let Some(done) = in_flight.join_next().await {
                    joined(Some(done))?;
                }
                upload.complete().await.map_err(UploadFailure::Store)
            }
            .await
        };
        if result.is_err()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(store = %self.url, target = %target, error = %e,
                "could not abort a failed multipart upload; the bucket's lifecycle rule for \
                 incomplete multipart uploads removes its parts");
        }
        result
    }

    async fn version_of(
        &self,
        key: &ObjectKey,
        path: &Path,
    ) -> Result<(Option<String>, Option<String>)> {
        let meta = self
            .store
            .head(path)
            .await
            .map_err(|e| self.error("head", key, e))?;
        Ok((meta.e_tag, meta.version))
    }
}

/// Why a multipart upload failed.
enum UploadFailure {
    /// The caller's body.
    Body(std::io::Error),
    /// The store.
    Store(object_store::Error),
}

/// Collects chunks into parts of exactly `size` bytes (the last part may be shorter).
struct PartBuffer {
    size: usize,
    chunks: Vec<Bytes>,
    len: usize,
}

impl PartBuffer {
    fn new(size: usize) -> Self {
        Self {
            size,
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Adds `chunk`, moving every part it completes to `full`.
    fn push(&mut self, mut chunk: Bytes, full: &mut Vec<PutPayload>) {
        while !chunk.is_empty() {
            let room = self.size - self.len;
            if chunk.len() < room {
                self.len += chunk.len();
                self.chunks.push(chunk);
                return;
            }
            self.chunks.push(chunk.split_to(room));
            self.len = 0;
            full.push(std::mem::take(&mut self.chunks).into_iter().collect());
        }
    }

    /// The last, partial part.
    fn finish(self) -> Option<PutPayload> {
        (self.len > 0).then(|| self.chunks.into_iter().collect())
    }
}

#[async_trait]
impl ObjectStorage for Bucket {
    fn store_url(&self) -> &str {
        &self.url
    }

    async fn put_stream(
        &self,
        key: &ObjectKey,
        mut body: UploadStream,
        options: PutOptions,
    ) -> Result<ObjectInfo> {
        let path = self.path(key);
        let content_type = options
            .content_type
            .clone()
            .unwrap_or_else(|| content_type::guess(key.extension()).to_owned());
        let attributes = self.attributes(&content_type);
        let part_size = self.upload.part_size;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let body_error = |source| StorageError::Body {
            key: key.to_string(),
            source,
        };

        // Buffer up to one part: a body that fits goes in a single request.
        let mut first: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let mut finished = false;
        while buffered <= part_size {
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    buffered += chunk.len();
                    first.push(chunk);
                }
                Some(Err(source)) => return Err(body_error(source)),
                None => {
                    finished = true;
                    break;
                }
            }
        }

        let (e_tag, version) = if finished {
            let payload: PutPayload = first.into_iter().collect();
            self.put_single(key, &path, payload, attributes, options.mode)
                .await?
        } else {
            let target = match options.mode {
                WriteMode::CreateOnly => self.staging_path(key),
                WriteMode::Overwrite => path.clone(),
            };
            let result = self
                .put_multipart(
                    &target,
                    attributes,
                    first,
                    &mut body,
                    &mut hasher,
                    &mut size,
                )
                .await
                .map_err(|failure| match failure {
                    UploadFailure::Body(source) => body_error(source),
                    UploadFailure::Store(e) => self.error("put", key, e),
                })?;
            match options.mode {
                WriteMode::Overwrite => (result.e_tag, result.version),
                WriteMode::CreateOnly => {
                    self.publish_staged(key, &target, &path).await?;
                    self.version_of(key, &path).await?
                }
            }
        };

        tracing::debug!(store = %self.url, key = %key, size, "uploaded");
        Ok(ObjectInfo {
            key: key.clone(),
            size,
            last_modified: None,
            e_tag,
            version,
            content_type: Some(content_type),
            sha256: Some(Sha256Digest(hasher.finalize().into())),
        })
    }

    async fn get_stream(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<Download> {
        if let Some(range) = &range
            && range.start >= range.end
        {
            return Err(StorageError::InvalidArgument {
                argument: "range",
                reason: format!(
                    "{}..{} of `{key}` is empty or reversed",
                    range.start, range.end
                ),
            });
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| self.error("get", key, e))?;
        let info = self.info_from_meta(key, &result.meta, Some(&result.attributes));
        let range = result.range.clone();
        let (url, owned_key, limits) = (self.url.clone(), key.clone(), self.limits);
        let stream = result
            .into_stream()
            .map_err(move |e| StorageError::from_store(&url, "get", owned_key.as_str(), e, &limits))
            .boxed();
        Ok(Download::new(info, range, stream))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        let options = GetOptions {
            head: true,
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| self.error("head", key, e))?;
        Ok(self.info_from_meta(key, &result.meta, Some(&result.attributes)))
    }

    fn list(&self, prefix: Option<&ObjectKey>) -> BoxStream<'static, Result<ObjectInfo>> {
        let full = match prefix {
            Some(prefix) => Some(self.path(prefix)),
            None => self.prefix.clone(),
        };
        let this = self.clone();
        let shown = prefix.map_or_else(String::new, |p| p.to_string());
        self.store
            .list(full.as_ref())
            .map_err({
                let (url, limits) = (self.url.clone(), self.limits);
                move |e| StorageError::from_store(&url, "list", &shown, e, &limits)
            })
            .try_filter_map(move |meta| {
                let info = this
                    .key(&meta.location)
                    .map(|key| this.info_from_meta(&key, &meta, None));
                futures::future::ready(Ok(info))
            })
            .boxed()
    }

    async fn list_children(&self, prefix: &ObjectKey) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(prefix)))
            .await
            .map_err(|e| self.error("list", prefix, e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    async fn signed_url(
        &self,
        key: &ObjectKey,
        method: SignedMethod,
        expires_in: Duration,
    ) -> Result<SignedUrl> {
        #[cfg(feature = "_http")]
        if let Some(signer) = &self.signer {
            if expires_in < Duration::from_secs(1) || expires_in > MAX_SIGNED_URL_EXPIRY {
                return Err(StorageError::InvalidArgument {
                    argument: "expires_in",
                    reason: format!(
                        "{:.3} s is outside 1 s ..= 7 days",
                        expires_in.as_secs_f64()
                    ),
                });
            }
            let expires_at = Utc::now()
                + chrono::Duration::from_std(expires_in)
                    .expect("at most 7 days fits a chrono duration");
            let url = signer
                .signed_url(method.http(), &self.path(key), expires_in)
                .await
                .map_err(|e| self.error("sign", key, e))?;
            return Ok(SignedUrl {
                url,
                method,
                expires_at,
            });
        }
        let _ = (method, expires_in);
        Err(StorageError::NotSupported {
            store: self.url.to_string(),
            operation: format!("signing a URL for `{key}`"),
            source: None,
        })
    }
}

/// Starts uploading the parts in `full`, keeping at most `max_concurrency` in flight, and
/// reports the first failure among the parts that have finished.
async fn start_parts(
    in_flight: &mut JoinSet<object_store::Result<()>>,
    upload: &mut Box<dyn object_store::MultipartUpload>,
    full: &mut Vec<PutPayload>,
    max_concurrency: usize,
) -> Result<(), UploadFailure> {
    for part in full.drain(..) {
        while in_flight.len() >= max_concurrency {
            joined(in_flight.join_next().await)?;
        }
        in_flight.spawn(upload.put_part(part));
    }
    while let Some(done) = in_flight.try_join_next() {
        joined(Some(done))?;
    }
    Ok(())
}

/// The outcome of one part upload task.
fn joined(
    done: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
) -> Result<(), UploadFailure> {
    match done {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(UploadFailure::Store(e)),
        Some(Err(join)) => Err(UploadFailure::Store(object_store::Error::JoinError {
            source: join,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_have_exactly_the_part_size() {
        let mut parts = PartBuffer::new(4);
        let mut full = Vec::new();
        for chunk in [&b"abc"[..], b"defghij", b"k", b"lmnopq"] {
            parts.push(Bytes::copy_from_slice(chunk), &mut full);
        }
        let sizes: Vec<usize> = full.iter().map(PutPayload::content_length).collect();
        assert_eq!(sizes, [4, 4, 4, 4]);
        let last = parts.finish().unwrap();
        assert_eq!(last.content_length(), 1);
        let all: Vec<u8> = full
            .iter()
            .chain(std::iter::once(&last))
            .flat_map(|p| p.iter().flat_map(|b| b.to_vec()))
            .collect();
        assert_eq!(all, b"abcdefghijklmnopq");
        assert!(PartBuffer::new(4).finish().is_none());
    }
}
