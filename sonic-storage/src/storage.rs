//! [`Storage`]: the job-level API (inputs, outputs, manifests, signed links, retention).

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use crate::body::Body;
use crate::bucket::Bucket;
use crate::config::StoreConfig;
use crate::error::{Result, StorageError};
use crate::ids::{JobId, JobRef, TenantId};
use crate::key::{InputKind, ObjectKey};
use crate::manifest::JobManifest;
use crate::object::{ObjectInfo, PutOptions, SignedMethod, SignedUrl};
use crate::probe::ProbeReport;
use crate::retention::{SweepOptions, SweepReport, sweep};
use crate::store::{ObjectStorage, ObjectStorageExt};

/// A job's storage: an input store and an output store (the same one, or two different buckets
/// so inputs stay private while outputs are shared).
///
/// Keys follow the layout in the [crate documentation](crate): inputs under
/// `inputs/{tenant}/{job}/`, outputs and the manifest under `outputs/{tenant}/{job}/`.
#[derive(Debug, Clone)]
pub struct Storage {
    inputs: Arc<dyn ObjectStorage>,
    outputs: Arc<dyn ObjectStorage>,
}

impl Storage {
    /// Inputs and outputs in one store.
    pub fn new(store: Arc<dyn ObjectStorage>) -> Self {
        Self {
            inputs: store.clone(),
            outputs: store,
        }
    }

    /// Inputs in one store, outputs in another.
    pub fn with_separate_outputs(
        inputs: Arc<dyn ObjectStorage>,
        outputs: Arc<dyn ObjectStorage>,
    ) -> Self {
        Self { inputs, outputs }
    }

    /// Opens one store for both inputs and outputs from a URL (see
    /// [`StoreConfig::from_url`]): `file:///srv/sonic`, `memory://`, `s3://bucket/prefix` ...
    pub fn open(url: &str) -> Result<Self> {
        Ok(Self::new(Arc::new(Bucket::from_url(url)?)))
    }

    /// Opens separate input and output stores from URLs.
    pub fn open_split(inputs_url: &str, outputs_url: &str) -> Result<Self> {
        Ok(Self::with_separate_outputs(
            Arc::new(Bucket::from_url(inputs_url)?),
            Arc::new(Bucket::from_url(outputs_url)?),
        ))
    }

    /// Opens separate input and output stores from configurations.
    pub fn from_configs(inputs: &StoreConfig, outputs: &StoreConfig) -> Result<Self> {
        Ok(Self::with_separate_outputs(
            Arc::new(Bucket::open(inputs)?),
            Arc::new(Bucket::open(outputs)?),
        ))
    }

    /// The store that holds inputs.
    pub fn inputs(&self) -> &Arc<dyn ObjectStorage> {
        &self.inputs
    }

    /// The store that holds outputs and manifests.
    pub fn outputs(&self) -> &Arc<dyn ObjectStorage> {
        &self.outputs
    }

    /// Checks, with one tiny object written, read back and deleted under `inputs/` and under
    /// `outputs/` (see [`probe`](crate::probe)), that both stores are reachable and writable,
    /// so that a job is refused with the store's real cause (no credentials, a read-only
    /// folder, an endpoint that never answers: a [`StorageError::Timeout`]) before any model
    /// loads. Returns what each probe measured (one report when inputs and outputs share a
    /// store, two otherwise).
    pub async fn probe(&self) -> Result<Vec<ProbeReport>> {
        let mut reports = vec![
            self.inputs
                .probe(&ObjectKey::from_trusted("inputs".to_owned()))
                .await?,
        ];
        if !Arc::ptr_eq(&self.inputs, &self.outputs) {
            reports.push(
                self.outputs
                    .probe(&ObjectKey::from_trusted("outputs".to_owned()))
                    .await?,
            );
        }
        Ok(reports)
    }

    /// Uploads an input to `inputs/{tenant}/{job}/{image|audio}.{ext}`, replacing an earlier
    /// upload of the same input. A job that may already exist should use
    /// [`Storage::put_input_create_only`], which never touches an existing object.
    pub async fn put_input(
        &self,
        job: &JobRef,
        kind: InputKind,
        ext: &str,
        body: impl Into<Body> + Send,
    ) -> Result<ObjectInfo> {
        self.put_input_with(job, kind, ext, body, PutOptions::overwrite())
            .await
    }

    /// Uploads an input to `inputs/{tenant}/{job}/{image|audio}.{ext}` only if nothing is
    /// there: an existing object is left byte-identical and [`StorageError::AlreadyExists`]
    /// returned (enforced by the store, not by a racy check).
    pub async fn put_input_create_only(
        &self,
        job: &JobRef,
        kind: InputKind,
        ext: &str,
        body: impl Into<Body> + Send,
    ) -> Result<ObjectInfo> {
        self.put_input_with(job, kind, ext, body, PutOptions::create_only())
            .await
    }

    /// Like [`Storage::put_input_create_only`], except that an object already there holding
    /// exactly `bytes` counts as written (a retried upload, a redelivered job): returns the
    /// input's key. An object with other bytes is left byte-identical and
    /// [`StorageError::AlreadyExists`] returned.
    pub async fn put_input_once(
        &self,
        job: &JobRef,
        kind: InputKind,
        ext: &str,
        bytes: bytes::Bytes,
    ) -> Result<ObjectKey> {
        match self
            .put_input_create_only(job, kind, ext, bytes.clone())
            .await
        {
            Ok(info) => Ok(info.key),
            Err(exists @ StorageError::AlreadyExists { .. }) => {
                let key = job.input_key(kind, ext)?;
                if self.inputs.get_bytes(&key).await? == bytes {
                    Ok(key)
                } else {
                    Err(exists)
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn put_input_with(
        &self,
        job: &JobRef,
        kind: InputKind,
        ext: &str,
        body: impl Into<Body> + Send,
        options: PutOptions,
    ) -> Result<ObjectInfo> {
        let key = job.input_key(kind, ext)?;
        self.inputs.put(&key, body, options).await
    }

    /// The input object at exactly `key` in the input store ([`StorageError::NotFound`] if
    /// there is none).
    pub async fn input_at(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        self.inputs.head(key).await
    }

    /// Finds the job's one input of `kind` under `inputs/{tenant}/{job}/`, whatever its
    /// extension: [`StorageError::NotFound`] if there is none, and
    /// [`StorageError::AmbiguousInput`] if there are several (`image.png` and `image.jpg`):
    /// a job never silently picks one of two pictures. Name inputs by exact key to avoid the
    /// lookup.
    pub async fn find_input(&self, job: &JobRef, kind: InputKind) -> Result<ObjectInfo> {
        let prefix = job.input_prefix();
        let stem = format!("{}.", kind.stem());
        let mut found: Vec<ObjectInfo> = self
            .inputs
            .list(Some(&prefix))
            .try_filter(|info| {
                let name = info.key.file_name();
                futures::future::ready(name.starts_with(&stem) && info.key.segments().count() == 4)
            })
            .try_collect()
            .await?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(StorageError::NotFound {
                store: self.inputs.store_url().to_owned(),
                key: format!("{prefix}/{stem}*"),
                source: Box::new(object_store::Error::NotFound {
                    path: format!("{prefix}/{stem}*"),
                    source: format!("no {kind} input").into(),
                }),
            }),
            _ => Err(StorageError::AmbiguousInput {
                store: self.inputs.store_url().to_owned(),
                kind: kind.to_string(),
                keys: found.into_iter().map(|info| info.key.to_string()).collect(),
            }),
        }
    }

    /// A URL a client can `PUT` the input to directly, valid for `expires_in`.
    pub async fn sign_input_upload(
        &self,
        job: &JobRef,
        kind: InputKind,
        ext: &str,
        expires_in: Duration,
    ) -> Result<SignedUrl> {
        let key = job.input_key(kind, ext)?;
        self.inputs
            .signed_url(&key, SignedMethod::Put, expires_in)
            .await
    }

    /// Writes the output `name` to `outputs/{tenant}/{job}/{name}`, create-only: if it exists
    /// already this fails with [`StorageError::AlreadyExists`] and the existing object is left
    /// untouched. `content_type` defaults to the one of `name`'s extension.
    pub async fn put_output_create_only(
        &self,
        job: &JobRef,
        name: &str,
        body: impl Into<Body> + Send,
        content_type: Option<&str>,
    ) -> Result<ObjectInfo> {
        let key = job.output_key(name)?;
        let mut options = PutOptions::create_only();
        options.content_type = content_type.map(str::to_owned);
        self.outputs.put(&key, body, options).await
    }

    /// Writes the job's video to `outputs/{tenant}/{job}/video.mp4`, create-only.
    pub async fn put_video(
        &self,
        job: &JobRef,
        body: impl Into<Body> + Send,
    ) -> Result<ObjectInfo> {
        let key = job.video_key();
        self.outputs
            .put(
                &key,
                body,
                PutOptions::create_only().with_content_type("video/mp4"),
            )
            .await
    }

    /// A URL that downloads the output `name`, valid for `expires_in`.
    pub async fn sign_output(
        &self,
        job: &JobRef,
        name: &str,
        expires_in: Duration,
    ) -> Result<SignedUrl> {
        let key = job.output_key(name)?;
        self.outputs
            .signed_url(&key, SignedMethod::Get, expires_in)
            .await
    }

    /// A URL that downloads the job's video, valid for `expires_in`.
    pub async fn sign_video(&self, job: &JobRef, expires_in: Duration) -> Result<SignedUrl> {
        self.outputs
            .signed_url(&job.video_key(), SignedMethod::Get, expires_in)
            .await
    }

    /// Writes the manifest only if the job has none yet ([`StorageError::AlreadyExists`]
    /// otherwise): a worker that succeeds has claimed the job.
    pub async fn create_manifest(&self, manifest: &JobManifest) -> Result<ObjectInfo> {
        self.put_manifest(manifest, PutOptions::create_only()).await
    }

    /// Writes (replaces) the manifest at `outputs/{tenant}/{job}/manifest.json`. Readers see the
    /// old or the new manifest, never a mix.
    pub async fn write_manifest(&self, manifest: &JobManifest) -> Result<ObjectInfo> {
        self.put_manifest(manifest, PutOptions::overwrite()).await
    }

    async fn put_manifest(
        &self,
        manifest: &JobManifest,
        options: PutOptions,
    ) -> Result<ObjectInfo> {
        let key = manifest.job_ref().manifest_key();
        let json =
            serde_json::to_vec_pretty(manifest).map_err(|source| StorageError::Manifest {
                key: key.to_string(),
                source,
            })?;
        self.outputs
            .put(&key, json, options.with_content_type("application/json"))
            .await
    }

    /// Reads the job's manifest.
    pub async fn read_manifest(&self, job: &JobRef) -> Result<JobManifest> {
        self.read_manifest_at(&job.manifest_key()).await
    }

    /// Reads the manifest at `key` in the output store.
    pub async fn read_manifest_at(&self, key: &ObjectKey) -> Result<JobManifest> {
        let bytes = self.outputs.get_bytes(key).await?;
        serde_json::from_slice(&bytes).map_err(|source| StorageError::Manifest {
            key: key.to_string(),
            source,
        })
    }

    /// The tenant's jobs (those with inputs or outputs), sorted. Names under the tenant that
    /// are not valid job ids are skipped.
    pub async fn list_jobs(&self, tenant: &TenantId) -> Result<Vec<JobId>> {
        let inputs = ObjectKey::from_trusted(format!("inputs/{tenant}"));
        let outputs = ObjectKey::from_trusted(format!("outputs/{tenant}"));
        let mut names = self.inputs.list_children(&inputs).await?;
        names.extend(self.outputs.list_children(&outputs).await?);
        let mut jobs: Vec<JobId> = names
            .into_iter()
            .filter_map(|name| match JobId::new(name) {
                Ok(job) => Some(job),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a listing entry that is not a job id");
                    None
                }
            })
            .collect();
        jobs.sort();
        jobs.dedup();
        Ok(jobs)
    }

    /// Deletes every input and output of the job (manifest included); returns how many
    /// objects were deleted.
    pub async fn delete_job(&self, job: &JobRef) -> Result<usize> {
        let mut deleted = 0;
        for (store, prefix) in [
            (&self.inputs, job.input_prefix()),
            (&self.outputs, job.output_prefix()),
        ] {
            for info in store.list_all(Some(&prefix)).await? {
                store.delete(&info.key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes inputs older than `options.older_than` (of one tenant, or of all), or lists them
    /// in a dry run. Outputs and manifests are not touched.
    pub async fn sweep_inputs(
        &self,
        tenant: Option<&TenantId>,
        options: &SweepOptions,
    ) -> Result<SweepReport> {
        let prefix = match tenant {
            Some(tenant) => ObjectKey::from_trusted(format!("inputs/{tenant}")),
            None => ObjectKey::from_trusted("inputs".to_owned()),
        };
        sweep(self.inputs.as_ref(), &prefix, options).await
    }
}
