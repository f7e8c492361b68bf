//! [`Pipeline`]: jobs in object storage. `generate` reads the job's picture and speech by key,
//! renders on the pipeline's backend, and writes `video.mp4` and `manifest.json` create-only.
//!
//! The video streams to a temporary file and is uploaded only when the render succeeded, so a
//! failed or cancelled job leaves no video object; its manifest records the error.
//!
//! Where the weights come from is explicit: [`Pipeline::new`] loads `./checkpoints`,
//! [`Pipeline::builder`] takes any [`WeightsSource`] (a folder, the demo layout, the Hugging
//! Face hub), and [`Pipeline::from_env`] reads the environment variables it documents.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::prelude::Backend;
use burn::tensor::{DType, TensorData};
use sonic_backends::{BackendChoice, BackendFn};
use sonic_media::face::{FaceDetector, SeetaFaceDetector};
use sonic_media::video::VideoSummary;
use sonic_storage::{
    Body, InputKind, JobFailure, JobManifest, JobRef, JobStatus, ObjectInfo, ObjectKey,
    ObjectStorageExt, Sha256Digest, Storage, StorageError,
};

use super::component::Component;
use super::error::PipelineError;
use super::hashing::ChecksumCache;
use super::manifest::ManifestRecorder;
use super::memory::MemoryEstimate;
use super::models::SonicModels;
use super::params::GenerationParams;
use super::progress::{CancellationToken, Progress, ProgressFn, Stage, StageClock};
use super::render::{NamedBytes, RenderControl, RenderInputs, RenderOutput};
use super::source::WeightsSource;
use super::stages::{StageObserver, StageTensor};
use super::weights::WeightsLayout;

/// Environment variable naming the job store of [`Pipeline::from_env`]: a store URL as
/// [`Storage::open`] takes it (`./sonic-data`, `s3://bucket/prefix`, `memory://` ...).
/// Unset or empty: `./sonic-data`.
pub const STORE_ENV: &str = "SONIC_STORE";

/// One job: which inputs, how to generate, and how the job is claimed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobRequest {
    /// The job's tenant and id: outputs are written under `outputs/{tenant}/{job}/`.
    pub job: JobRef,
    /// The generation parameters.
    pub params: GenerationParams,
    /// The inputs' exact keys in the input store; `None`: the job's one `image.*` and one
    /// `audio.*` under `inputs/{tenant}/{job}/` (two of a kind are refused, see
    /// [`Storage::find_input`]).
    pub inputs: Option<JobInputs>,
    /// How the job is claimed (default [`Claim::Create`]).
    pub claim: Claim,
}

impl JobRequest {
    /// A job with these parameters, its inputs under `inputs/{tenant}/{job}/`, claimed by
    /// creating its manifest.
    pub fn new(job: JobRef, params: GenerationParams) -> Self {
        Self {
            job,
            params,
            inputs: None,
            claim: Claim::Create,
        }
    }

    /// Reads the inputs from exactly these keys.
    pub fn with_inputs(mut self, inputs: JobInputs) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// Claims the job as `claim` says.
    pub fn with_claim(mut self, claim: Claim) -> Self {
        self.claim = claim;
        self
    }
}

/// The exact keys of a job's inputs in the input store (any keys, not only
/// `inputs/{tenant}/{job}/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInputs {
    /// The portrait.
    pub image: ObjectKey,
    /// The speech.
    pub audio: ObjectKey,
}

/// How [`Pipeline::generate_with`] takes a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Claim {
    /// Create the job's manifest, create-only: a job that has one is refused with
    /// `StorageError::AlreadyExists` and every object is left as it was.
    #[default]
    Create,
    /// The caller holds the job already: it created the manifest (status `created`, for
    /// example before uploading the inputs), or it resumes a job that did not succeed (left
    /// `running` by a process that died, `failed` or `cancelled`), which starts the next
    /// attempt. A job that succeeded is refused with [`PipelineError::AlreadySucceeded`], one
    /// whose video exists with [`PipelineError::VideoExists`]. The store cannot tell two
    /// processes apart here: only one may hold a job (the job service arbitrates with its
    /// queue).
    Existing,
}

/// How a running job reports and stops.
#[derive(Clone, Default)]
pub struct JobControl {
    /// Receives progress reports (stage, step, window, ETA).
    pub progress: Option<ProgressFn>,
    /// Cancels the job.
    pub cancel: CancellationToken,
    /// Receives intermediate tensors (see [`StageObserver`]).
    pub stages: Option<Arc<Mutex<dyn StageObserver>>>,
    /// The fence: once set, another process holds the job (a worker whose lease ran out); the
    /// job stops at its next check and writes nothing more, neither video nor manifest
    /// ([`PipelineError::Fenced`]).
    pub fence: Option<Arc<AtomicBool>>,
    /// Asked before each write after the claim (every manifest write and the video upload):
    /// a refusal stops the job with [`PipelineError::Fenced`] and nothing is written. The job
    /// service confirms here that its lease still holds the job, so a process that was paused
    /// past its lease cannot write when it resumes.
    pub write_guard: Option<WriteGuard>,
}

/// What a [`WriteGuard`] is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WritePoint {
    /// The job's manifest (`running` at the start, then the outcome).
    Manifest,
    /// The video object (the job's commit point).
    Video,
}

impl WritePoint {
    /// `manifest` or `video`.
    pub fn name(self) -> &'static str {
        match self {
            WritePoint::Manifest => "manifest",
            WritePoint::Video => "video",
        }
    }
}

/// The future a [`WriteGuard`] returns: `Err(reason)` refuses the write.
pub type WriteGuardFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// A check run before each write of a job (see [`JobControl::write_guard`]).
pub type WriteGuard = Arc<dyn Fn(WritePoint) -> WriteGuardFuture + Send + Sync>;

/// Asks `guard` (if any) whether `point` may be written; a refusal is [`PipelineError::Fenced`].
async fn may_write(
    guard: Option<&WriteGuard>,
    job: &JobRef,
    point: WritePoint,
) -> Result<(), PipelineError> {
    let Some(guard) = guard else { return Ok(()) };
    guard(point).await.map_err(|reason| {
        tracing::warn!(%job, write = point.name(), %reason, "late write refused");
        PipelineError::Fenced {
            job: job.to_string(),
        }
    })
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl")
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .field("stages", &self.stages.is_some())
            .field("fence", &self.fence)
            .field("write_guard", &self.write_guard.is_some())
            .finish()
    }
}

impl JobControl {
    /// Reports progress to `f`.
    pub fn with_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Stops when `token` is cancelled.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Records intermediate tensors into `observer`.
    pub fn with_stages(mut self, observer: Arc<Mutex<dyn StageObserver>>) -> Self {
        self.stages = Some(observer);
        self
    }

    /// Stops writing once `fence` is set (see [`JobControl::fence`]); set it, then cancel the
    /// token, to stop a job another process has taken over.
    pub fn with_fence(mut self, fence: Arc<AtomicBool>) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Asks `guard` before each write of the job (see [`JobControl::write_guard`]).
    pub fn with_write_guard(
        mut self,
        guard: impl Fn(WritePoint) -> WriteGuardFuture + Send + Sync + 'static,
    ) -> Self {
        self.write_guard = Some(Arc::new(guard));
        self
    }

    fn fenced(&self) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|fence| fence.load(Ordering::SeqCst))
    }
}

/// A finished job.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobOutcome {
    /// The written video object.
    pub video: ObjectInfo,
    /// The manifest as written.
    pub manifest: JobManifest,
    /// What the encoder wrote.
    pub summary: VideoSummary,
    /// The memory estimate checked before the first step.
    pub estimate: MemoryEstimate,
    /// What the user should know about the result (also in the manifest).
    pub warnings: Vec<String>,
}

/// A loaded model set on some backend, behind a trait object so [`Pipeline`] is not generic.
pub(crate) trait Engine: Send + Sync {
    fn render(
        &self,
        params: &GenerationParams,
        inputs: RenderInputs,
        sink: &mut dyn Write,
        control: RenderControl<'_>,
    ) -> Result<RenderOutput, PipelineError>;
}

/// `SonicModels` holds tensors, which burn does not promise are `Sync`; one render at a time
/// per pipeline (renders saturate the device anyway).
struct LockedModels<B: Backend>(Mutex<SonicModels<B>>);

impl<B: Backend> Engine for LockedModels<B> {
    fn render(
        &self,
        params: &GenerationParams,
        inputs: RenderInputs,
        sink: &mut dyn Write,
        control: RenderControl<'_>,
    ) -> Result<RenderOutput, PipelineError> {
        let models = self
            .0
            .lock()
            .map_err(|_| PipelineError::Internal("an earlier render panicked".into()))?;
        models.render(params, inputs, sink, control)
    }
}

/// Loads the models on the backend a [`BackendChoice`] picked, and erases its type.
struct LoadModels<'a> {
    layout: &'a WeightsLayout,
}

impl BackendFn for LoadModels<'_> {
    type Output = Result<(Arc<dyn Engine>, String), PipelineError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let models = SonicModels::<B>::load(self.layout, dtype, &device)?;
        let description = format!("{} {dtype:?}", B::name(&device));
        Ok((Arc::new(LockedModels(Mutex::new(models))), description))
    }
}

/// Adapts a shared observer to the render's `&mut dyn StageObserver`.
struct SharedStages(Arc<Mutex<dyn StageObserver>>);

impl StageObserver for SharedStages {
    fn wants(&self, stage: StageTensor) -> bool {
        self.0.lock().map(|o| o.wants(stage)).unwrap_or(false)
    }

    fn record(&mut self, stage: StageTensor, tensor: TensorData) {
        if let Ok(mut observer) = self.0.lock() {
            observer.record(stage, tensor);
        }
    }
}

/// Sonic's generation pipeline: loaded models on one backend plus the job store.
///
/// ```no_run
/// # async fn run() -> Result<(), sonic::pipeline::PipelineError> {
/// use sonic::backends::BackendChoice;
/// use sonic::pipeline::{GenerationParams, JobRequest, Pipeline};
/// use sonic::storage::{JobRef, Storage};
///
/// let store = Storage::open("./sonic-data")?;
/// // The released weights in ./checkpoints (see `WeightsLayout::released`); any other
/// // source through `Pipeline::builder(..).weights(..)`.
/// let pipeline = Pipeline::new(BackendChoice::auto()?, store)?;
/// let job = JobRequest::new(JobRef::parse("acme", "job-1")?, GenerationParams::default());
/// let outcome = pipeline.generate(&job).await?;
/// println!("{}", outcome.video.key);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pipeline {
    engine: Arc<dyn Engine>,
    storage: Storage,
    checkpoints: Vec<(Component, PathBuf)>,
    checksums: Arc<ChecksumCache>,
    detector: Arc<dyn FaceDetector>,
    description: String,
}

/// Builds a [`Pipeline`]: the backend, the store, where the weights come from (default
/// `./checkpoints` in the released layout), and optionally the face detector and a persistent
/// checksum cache. From [`Pipeline::builder`].
///
/// ```no_run
/// # fn run() -> Result<(), sonic::pipeline::PipelineError> {
/// use sonic::backends::BackendChoice;
/// use sonic::pipeline::{HubSource, Pipeline, WeightsSource};
/// use sonic::storage::Storage;
///
/// let hub = HubSource::new("/var/cache/huggingface/hub");
/// let pipeline = Pipeline::builder(BackendChoice::auto()?, Storage::open("./sonic-data")?)
///     .weights(WeightsSource::Hub(hub))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct PipelineBuilder {
    backend: BackendChoice,
    storage: Storage,
    weights: WeightsSource,
    detector: Option<Arc<dyn FaceDetector>>,
    checksum_cache: Option<PathBuf>,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("backend", &self.backend)
            .field("storage", &self.storage)
            .field("weights", &self.weights)
            .field("detector", &self.detector.is_some())
            .field("checksum_cache", &self.checksum_cache)
            .finish()
    }
}

impl PipelineBuilder {
    /// Loads the weights from `source`.
    pub fn weights(mut self, source: impl Into<WeightsSource>) -> Self {
        self.weights = source.into();
        self
    }

    /// Finds faces with `detector` (default: the bundled SeetaFace detector).
    pub fn face_detector(mut self, detector: Arc<dyn FaceDetector>) -> Self {
        self.detector = Some(detector);
        self
    }

    /// Caches checkpoint digests in the JSON file `path` too (see
    /// [`Pipeline::with_checksum_cache`]).
    pub fn checksum_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.checksum_cache = Some(path.into());
        self
    }

    /// Resolves the weights (for the hub: fetches what the cache lacks) and loads the models.
    /// Blocking (seconds, or the download): from async code use
    /// [`PipelineBuilder::build_async`] or call it in `spawn_blocking`.
    ///
    /// # Errors
    /// [`PipelineError::Weights`] for a missing or unfetchable file, [`PipelineError::Load`]
    /// for one that does not load, [`PipelineError::Backend`] if the device cannot run.
    pub fn build(self) -> Result<Pipeline, PipelineError> {
        let layout = self.weights.resolve_blocking()?;
        self.load(&layout)
    }

    /// [`PipelineBuilder::build`] from async code: the hub is fetched on this runtime and the
    /// models load on its blocking pool.
    ///
    /// # Errors
    /// As [`PipelineBuilder::build`].
    pub async fn build_async(self) -> Result<Pipeline, PipelineError> {
        let layout = self.weights.resolve().await?;
        tokio::task::spawn_blocking(move || self.load(&layout))
            .await
            .map_err(|e| PipelineError::Internal(format!("loading task: {e}")))?
    }

    fn load(self, layout: &WeightsLayout) -> Result<Pipeline, PipelineError> {
        let checkpoints = layout.checkpoint_files()?;
        let backend = self.backend;
        let (engine, description) = backend.run(LoadModels { layout })??;
        let detector: Arc<dyn FaceDetector> = match self.detector {
            Some(detector) => detector,
            None => Arc::new(SeetaFaceDetector::bundled()?),
        };
        let checksums = match self.checksum_cache {
            Some(path) => ChecksumCache::persistent(path),
            None => ChecksumCache::in_memory(),
        };
        Ok(Pipeline {
            engine,
            storage: self.storage,
            checkpoints,
            checksums: Arc::new(checksums),
            detector,
            description: format!("{backend} ({description})"),
        })
    }
}

/// Cancels the job's token when the `generate` future is dropped before the job finished;
/// the job's task then stops at its next check and records `cancelled`.
struct CancelOnDrop(Option<CancellationToken>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            tracing::info!("generate dropped before the job finished: cancelling it");
            token.cancel();
        }
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("backend", &self.description)
            .field("storage", &self.storage)
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Loads the released checkpoints in `./checkpoints` (the folder Sonic's README uses, laid
    /// out as [`WeightsLayout::released`] describes) onto `backend`'s device and precision,
    /// with `store` holding the jobs. Reads no environment variable: for other weights use
    /// [`Pipeline::builder`], for the variables [`Pipeline::from_env`].
    ///
    /// Loading takes the weights' size in memory and some seconds; build one pipeline per
    /// process and run every job through it. Jobs run one at a time per pipeline (the memory
    /// estimate assumes it).
    ///
    /// # Errors
    /// [`PipelineError::Weights`] for a missing file, [`PipelineError::Load`] for one that
    /// does not load, [`PipelineError::Backend`] if the device cannot run.
    pub fn new(backend: BackendChoice, store: Storage) -> Result<Self, PipelineError> {
        Self::builder(backend, store).build()
    }

    /// A [`PipelineBuilder`] on `backend` and `store`, with the weights of `./checkpoints`
    /// until [`PipelineBuilder::weights`] names others.
    pub fn builder(backend: BackendChoice, store: Storage) -> PipelineBuilder {
        PipelineBuilder {
            backend,
            storage: store,
            weights: WeightsSource::released("checkpoints"),
            detector: None,
            checksum_cache: None,
        }
    }

    /// A pipeline configured by the environment:
    ///
    /// - `SONIC_DEVICE` and `SONIC_DTYPE`: the backend ([`BackendChoice::from_env`]; default
    ///   the fastest device present, f32);
    /// - `SONIC_STORE` ([`STORE_ENV`]): the job store URL (default `./sonic-data`; the store's
    ///   credentials come from its own variables, see [`Storage::open`]);
    /// - `SONIC_WEIGHTS` ([`WEIGHTS_ENV`](super::WEIGHTS_ENV)): a released-layout folder,
    ///   `demo:DIR`, or `hub` (default `./checkpoints`); for `hub` also `HF_ENDPOINT`,
    ///   `HF_HUB_CACHE`/`HF_HOME`, `HF_HUB_OFFLINE` and `HF_TOKEN` ([`super::HubSource::from_env`]).
    ///
    /// Blocking, as [`PipelineBuilder::build`].
    ///
    /// # Errors
    /// [`PipelineError::Backend`] for a bad device variable, [`PipelineError::Storage`] for a
    /// bad store URL, then as [`PipelineBuilder::build`].
    pub fn from_env() -> Result<Self, PipelineError> {
        let backend = BackendChoice::from_env()?;
        let url = std::env::var(STORE_ENV)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| "./sonic-data".to_owned());
        let store = Storage::open(&url)?;
        Self::builder(backend, store)
            .weights(WeightsSource::from_env())
            .build()
    }

    /// [`Pipeline::new`] with the weights of `layout` (e.g. [`WeightsLayout::released`] of a
    /// `--weights` folder, or [`WeightsLayout::demo`]); short for
    /// `Pipeline::builder(backend, store).weights(layout.clone()).build()`.
    ///
    /// # Errors
    /// As [`Pipeline::new`].
    pub fn with_weights(
        backend: BackendChoice,
        store: Storage,
        layout: &WeightsLayout,
    ) -> Result<Self, PipelineError> {
        Self::builder(backend, store).load(layout)
    }

    /// A pipeline over models already loaded on a backend (see
    /// [`SonicModels::load`]), for callers that pick the backend type themselves.
    ///
    /// `checkpoints` are the files hashed into each manifest (see
    /// [`WeightsLayout::checkpoint_files`](super::WeightsLayout::checkpoint_files)).
    pub fn from_models<B: Backend>(
        models: SonicModels<B>,
        storage: Storage,
        checkpoints: Vec<(Component, PathBuf)>,
    ) -> Result<Self, PipelineError> {
        let description = format!("{} {:?}", B::name(&models.device), models.dtype);
        Ok(Self {
            engine: Arc::new(LockedModels(Mutex::new(models))),
            storage,
            checkpoints,
            checksums: Arc::new(ChecksumCache::in_memory()),
            detector: Arc::new(SeetaFaceDetector::bundled()?),
            description,
        })
    }

    /// Uses `detector` to find faces (default: the bundled SeetaFace detector).
    pub fn with_face_detector(mut self, detector: Arc<dyn FaceDetector>) -> Self {
        self.detector = detector;
        self
    }

    /// Caches checkpoint digests in the JSON file `path` too (so other processes reuse them).
    pub fn with_checksum_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.checksums = Arc::new(ChecksumCache::persistent(path));
        self
    }

    /// The same loaded models over another store (cheap: the models are shared).
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// The job store.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The backend, device and dtype, in words.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Renders `inputs` to `sink` without any storage (the same work as a job). Blocking:
    /// from async code, call it in `spawn_blocking`.
    ///
    /// # Errors
    /// As [`SonicModels::render`].
    pub fn render(
        &self,
        params: &GenerationParams,
        inputs: RenderInputs,
        sink: &mut dyn Write,
        control: JobControl,
    ) -> Result<RenderOutput, PipelineError> {
        let mut shared = control.stages.map(SharedStages);
        self.engine.render(
            params,
            inputs,
            sink,
            RenderControl::new(self.detector.as_ref())
                .with_progress(control.progress)
                .with_cancel(control.cancel)
                .with_stages(shared.as_mut().map(|s| s as &mut dyn StageObserver)),
        )
    }

    /// Runs a job (see [`Pipeline::generate_with`]) with no progress reports.
    ///
    /// # Errors
    /// As [`Pipeline::generate_with`].
    pub async fn generate(&self, job: &JobRequest) -> Result<JobOutcome, PipelineError> {
        self.generate_with(job, JobControl::default()).await
    }

    /// Runs a job: claims it by creating its manifest (create-only: a job that has one is
    /// refused with `StorageError::AlreadyExists` and left untouched), validates the
    /// parameters, reads the inputs, renders to a temporary file, uploads `video.mp4`
    /// (create-only) and completes the manifest with parameters, seed, input and output
    /// records, checkpoint hashes and timings.
    ///
    /// The job runs as a tokio task (its compute on the blocking pool); this future only
    /// awaits it, so it needs a tokio runtime. **Dropping the future cancels the job**: it
    /// cancels `control.cancel` (share a token between jobs only if they should stop
    /// together), and the task stops at its next check, records `status: cancelled` in the
    /// manifest and writes no video.
    ///
    /// # Errors
    /// Every [`PipelineError`]. After the claim, a failure is recorded in the manifest
    /// (`status: failed`, or `cancelled` for [`PipelineError::Cancelled`], with the error and
    /// its causes) and no video object is written.
    pub async fn generate_with(
        &self,
        job: &JobRequest,
        control: JobControl,
    ) -> Result<JobOutcome, PipelineError> {
        // The job runs as a task of its own, so that dropping this future stops it cleanly:
        // the guard cancels the token, the task stops at its next check and records
        // `cancelled` in the manifest.
        let guard = CancelOnDrop(Some(control.cancel.clone()));
        let pipeline = self.clone();
        let request = job.clone();
        let task = tokio::spawn(async move { pipeline.run_job(&request, control).await });
        let result = task.await;
        guard.disarm();
        match result {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(PipelineError::Internal(format!("job task: {e}"))),
        }
    }

    async fn run_job(
        &self,
        job: &JobRequest,
        control: JobControl,
    ) -> Result<JobOutcome, PipelineError> {
        let mut recorder = match job.claim {
            Claim::Create => {
                let recorder = ManifestRecorder::new(&job.job, &job.params);
                self.storage.create_manifest(recorder.manifest()).await?;
                let mut recorder = recorder;
                recorder.manifest_mut().mark_running();
                recorder
            }
            Claim::Existing => self.take_over(job).await?,
        };
        let guard = control.write_guard.clone();
        may_write(guard.as_ref(), &job.job, WritePoint::Manifest).await?;
        self.storage.write_manifest(recorder.manifest()).await?;
        let span = tracing::info_span!(
            "job",
            tenant = %job.job.tenant,
            job = %job.job.job,
            attempt = recorder.manifest().attempt
        );
        let fence = control.fence.clone();
        let result =
            tracing::Instrument::instrument(self.run(job, control, &mut recorder), span).await;
        if fence.is_some_and(|fence| fence.load(Ordering::SeqCst)) {
            tracing::warn!(job = %job.job, "another process holds the job: nothing more is written");
            return Err(PipelineError::Fenced {
                job: job.job.to_string(),
            });
        }
        let result = match result {
            // Refused by the guard before a write: nothing more is written.
            Err(fenced @ PipelineError::Fenced { .. }) => return Err(fenced),
            other => other,
        };
        match result {
            Ok((video, output)) => {
                let manifest = recorder.succeed(&video, self.storage.outputs().store_url());
                may_write(guard.as_ref(), &job.job, WritePoint::Manifest).await?;
                self.storage.write_manifest(&manifest).await?;
                Ok(JobOutcome {
                    video,
                    manifest,
                    summary: output.video,
                    estimate: output.estimate,
                    warnings: output.warnings,
                })
            }
            Err(error) => {
                let failure = JobFailure::from_error(&error);
                let manifest = if matches!(error, PipelineError::Cancelled { .. }) {
                    recorder.cancel(failure)
                } else {
                    recorder.fail(failure)
                };
                may_write(guard.as_ref(), &job.job, WritePoint::Manifest).await?;
                if let Err(write) = self.storage.write_manifest(&manifest).await {
                    tracing::error!(job = %job.job, error = %write, "cannot record the failure in the manifest");
                }
                Err(error)
            }
        }
    }

    /// [`Claim::Existing`]: the job's manifest, marked running for this attempt.
    async fn take_over(&self, job: &JobRequest) -> Result<ManifestRecorder, PipelineError> {
        let manifest = self.storage.read_manifest(&job.job).await?;
        match manifest.status {
            JobStatus::Succeeded => {
                return Err(PipelineError::AlreadySucceeded {
                    job: job.job.to_string(),
                });
            }
            JobStatus::Created => {}
            _ => {
                let video = job.job.video_key();
                match self.storage.outputs().head(&video).await {
                    Ok(_) => {
                        return Err(PipelineError::VideoExists {
                            key: video.to_string(),
                        });
                    }
                    Err(StorageError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(ManifestRecorder::take_over(manifest, &job.params))
    }

    async fn run(
        &self,
        job: &JobRequest,
        control: JobControl,
        recorder: &mut ManifestRecorder,
    ) -> Result<(ObjectInfo, RenderOutput), PipelineError> {
        job.params.validate()?;
        let report = |progress: Progress| {
            if let Some(f) = &control.progress {
                f(&progress);
            }
        };
        let cancelled = |stage| {
            if control.fenced() {
                Err(PipelineError::Fenced {
                    job: job.job.to_string(),
                })
            } else if control.cancel.is_cancelled() {
                Err(PipelineError::Cancelled { stage })
            } else {
                Ok(())
            }
        };

        // Inputs, by key, with their digests.
        cancelled(Stage::Download)?;
        let mut clock = StageClock::new(Stage::Download, 2);
        report(clock.current());
        let mut inputs = Vec::new();
        for (done, (kind, role)) in [(InputKind::Image, "image"), (InputKind::Audio, "audio")]
            .into_iter()
            .enumerate()
        {
            let mut info = match &job.inputs {
                Some(keys) => {
                    let key = match kind {
                        InputKind::Audio => &keys.audio,
                        _ => &keys.image,
                    };
                    self.storage.input_at(key).await?
                }
                None => self.storage.find_input(&job.job, kind).await?,
            };
            let bytes = self.storage.inputs().get_bytes(&info.key).await?;
            info.sha256 = Some(Sha256Digest::of(&bytes));
            recorder.input(&info, role, self.storage.inputs().store_url());
            inputs.push(NamedBytes::new(info.key.to_string(), bytes));
            report(clock.advance(done as u64 + 1, None, None));
        }
        recorder.timing(Stage::Download.name(), clock.elapsed());
        let audio = inputs.pop().expect("two inputs");
        let picture = inputs.pop().expect("two inputs");

        // Checkpoint digests (cached after the first job).
        cancelled(Stage::Checksums)?;
        let started = Instant::now();
        report(Progress::start(
            Stage::Checksums,
            self.checkpoints.len() as u64,
        ));
        let checksums = self.checksums.clone();
        let files = self.checkpoints.clone();
        let digests = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(name, path)| {
                    checksums
                        .sha256(&path)
                        .map(|digest| (name, digest))
                        .map_err(|source| PipelineError::Io {
                            what: format!("hashing {}", path.display()),
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| PipelineError::Internal(format!("checksum task: {e}")))??;
        recorder.checkpoints(digests);
        recorder.timing(Stage::Checksums.name(), started.elapsed());

        // Render to a temporary file on the blocking pool.
        let temp = tempfile::NamedTempFile::new().map_err(|source| PipelineError::Io {
            what: "creating the temporary video file".into(),
            source,
        })?;
        let file = temp.reopen().map_err(|source| PipelineError::Io {
            what: format!("opening {}", temp.path().display()),
            source,
        })?;
        let engine = self.engine.clone();
        let detector = self.detector.clone();
        let params = job.params.clone();
        let render_control = control.clone();
        let output = tokio::task::spawn_blocking(move || {
            let mut sink = BufWriter::new(file);
            let mut shared = render_control.stages.map(SharedStages);
            let output = engine.render(
                &params,
                RenderInputs::new(picture, audio),
                &mut sink,
                RenderControl::new(detector.as_ref())
                    .with_progress(render_control.progress)
                    .with_cancel(render_control.cancel)
                    .with_stages(shared.as_mut().map(|s| s as &mut dyn StageObserver)),
            )?;
            let file = sink.into_inner().map_err(|e| PipelineError::Io {
                what: "writing the video".into(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(|source| PipelineError::Io {
                what: "writing the video".into(),
                source,
            })?;
            Ok::<_, PipelineError>(output)
        })
        .await
        .map_err(|e| PipelineError::Internal(format!("render task: {e}")))??;
        for (stage, elapsed) in &output.timings {
            recorder.timing(stage, *elapsed);
        }
        recorder.warnings(&output.warnings);

        // Upload: only now does a video object appear.
        cancelled(Stage::Upload)?;
        may_write(control.write_guard.as_ref(), &job.job, WritePoint::Video).await?;
        let started = Instant::now();
        report(Progress::start(Stage::Upload, 1));
        let video = self
            .storage
            .put_video(&job.job, Body::file(temp.path()))
            .await?;
        drop(temp);
        recorder.timing(Stage::Upload.name(), started.elapsed());
        Ok((video, output))
    }
}
