//! # sonic-storage
//!
//! Object storage for sonic jobs: the portrait and audio a job reads, the video it writes and the
//! JSON manifest that records what happened, on a local directory, in memory, on S3 (AWS, MinIO,
//! any S3-compatible server), Aliyun OSS, Google Cloud Storage or Azure Blob Storage. It is built
//! on the [`object_store`] crate.
//!
//! ## Layers
//!
//! - [`ObjectStorage`]: the small trait a store implements (put a stream, get a stream, head,
//!   list, delete, sign a URL). [`Bucket`] implements it on any [`object_store::ObjectStore`];
//!   you can implement it yourself for anything else.
//! - [`ObjectStorageExt`]: conveniences every store gets for free (upload bytes or a file,
//!   download to bytes or a file, range reads, [`probe`](ObjectStorageExt::probe)).
//! - [`Storage`]: the job-level API the pipeline uses: inputs and outputs (possibly in different
//!   buckets), create-only outputs, manifests, signed links, listing a tenant's jobs, retention.
//!
//! ## Key layout
//!
//! ```text
//! inputs/{tenant}/{job}/image.{ext}     the portrait
//! inputs/{tenant}/{job}/audio.{ext}     the speech
//! outputs/{tenant}/{job}/video.mp4      the result, written create-only
//! outputs/{tenant}/{job}/manifest.json  the job record (JobManifest)
//! ```
//!
//! Tenant and job ids are validated ([`TenantId`], [`JobId`]): no `/`, no `..`, no control
//! characters, nothing empty, at most [`MAX_ID_LEN`] bytes.
//!
//! ## Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sonic_storage::Result<()> {
//! use sonic_storage::{InputKind, JobManifest, JobRef, Storage};
//!
//! let storage = Storage::open("memory://")?;
//! let job = JobRef::parse("acme", "job-0001")?;
//!
//! storage.put_input(&job, InputKind::Image, "png", b"\x89PNG...".to_vec()).await?;
//! let mut manifest = JobManifest::new(job.clone());
//! storage.create_manifest(&manifest).await?; // claims the job: a second claim fails
//!
//! let video = storage.put_video(&job, b"....ftypisom".to_vec()).await?;
//! manifest.outputs.push(video.record("video", storage.outputs().store_url()));
//! manifest.mark_succeeded();
//! storage.write_manifest(&manifest).await?;
//!
//! assert_eq!(storage.read_manifest(&job).await?, manifest);
//! # Ok(()) }
//! ```
//!
//! ## Failing early, with the cause
//!
//! [`probe`] (also [`ObjectStorageExt::probe`]) writes, reads back and deletes a tiny object
//! under a prefix: run it before loading models, so that an unusable store fails in seconds.
//! Errors keep the store's own error as their [source](std::error::Error::source):
//! [`StorageError::PermissionDenied`] for refused or missing credentials and read-only local
//! directories, [`StorageError::Timeout`] (which limit, how long) for an endpoint that does not
//! connect or answer, [`StorageError::Backend`] for other failures (connection refused, DNS,
//! TLS). Remote stores bound every request: 5 s to connect, 30 s per request, 3 retries that
//! start within 20 s (see [`TransportOptions`], configurable on [`StoreConfig`]).
//!
//! ## Cargo features
//!
//! - `s3` (default): `s3://` and `oss://` stores.
//! - `gcp`: `gs://` stores.
//! - `azure`: `az://` stores.
//! - `integration`: the conformance suite as public functions (`sonic_storage::integration`), to run against
//!   your own stores from your tests.
//! - `testing`: an in-process S3 server for tests (`sonic_storage::testing::S3Server`: s3s over a
//!   temporary directory, SigV4 checked, credentials that can be rotated and revoked mid-run).
//!
//! ## Credentials that expire
//!
//! S3 and OSS stores can take their credentials from a JSON file that a sidecar rewrites
//! ([`CredentialsFile`]: `StoreConfig::with_credentials_file`, the URL parameter
//! `credentials_file`, or the environment variables [`S3_CREDENTIALS_FILE_ENV`] and
//! [`OSS_CREDENTIALS_FILE_ENV`]); the store re-reads it when it changes and before its
//! credentials expire, without being reopened. Without one, `s3://` stores use object_store's
//! environment chain, whose web identity, container and instance credentials refresh too.
//!
//! HTTP stores use `reqwest` with `rustls` on the `ring` crypto provider (no C toolchain for
//! aws-lc). Building a store installs `ring` as the process-wide rustls provider unless another
//! one is installed already.
//!
//! See `docs/storage.md` in the repository for configuration of a local directory, MinIO/S3 and
//! Aliyun OSS, signed URLs, manifests and retention.
#![warn(missing_docs)]

mod body;
mod bucket;
mod config;
mod content_type;
mod credentials;
mod error;
mod ids;
#[cfg(feature = "integration")]
pub mod integration;
mod key;
mod manifest;
mod object;
mod probe;
#[cfg(feature = "_http")]
mod remote;
mod retention;
mod storage;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use body::{Body, UploadStream};
pub use bucket::Bucket;
pub use config::{
    Addressing, Credentials, DEFAULT_LOCAL_ROOT, MAX_PART_SIZE, MIN_PART_SIZE, S3Options,
    StoreConfig, StoreLocation, UploadOptions,
};
#[cfg(feature = "_http")]
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_TIMEOUT,
    TransportOptions,
};
#[cfg(feature = "s3")]
pub use credentials::FileCredentialProvider;
pub use credentials::{
    CredentialsFile, DEFAULT_CREDENTIALS_CHECK_INTERVAL, DEFAULT_CREDENTIALS_REFRESH_MARGIN,
    OSS_CREDENTIALS_FILE_ENV, S3_CREDENTIALS_FILE_ENV,
};
pub use error::{IdKind, InvalidReason, Result, StorageError, TimeoutKind};
pub use ids::{JobId, JobRef, MAX_ID_LEN, TenantId};
pub use key::{InputKind, MAX_KEY_LEN, ObjectKey};
pub use manifest::{JobFailure, JobManifest, JobStatus, MANIFEST_SCHEMA_VERSION, ObjectRecord};
pub use object::{
    Download, DownloadStream, ObjectInfo, PutOptions, Sha256Digest, SignedMethod, SignedUrl,
    WriteMode,
};
pub use probe::{PROBE_NAME_PREFIX, ProbeReport, probe};
pub use retention::{SweepOptions, SweepReport, sweep};
pub use storage::Storage;
pub use store::{ObjectStorage, ObjectStorageExt};

/// The `object_store` crate this one is built on, re-exported so callers can name
/// [`RetryConfig`](object_store::RetryConfig), [`ClientOptions`](object_store::ClientOptions) and
/// custom stores without adding the dependency themselves.
pub use object_store;
