//! [`Pipeline`]: jobs in object storage. `generate` reads the job's picture and speech by key,
//! renders on the pipeline's backend, and writes `video.mp4` and `manifest.json` create-only.
//!
//! The video streams to a temporary file and is uploaded only when the render succeeded, so a
//! failed or cancelled job leaves no video object; its manifest records the error.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::prelude::Backend;
use burn::tensor::{DType, TensorData};
use sonic_backends::{BackendChoice, BackendFn};
use sonic_media::face::{FaceDetector, SeetaFaceDetector};
use sonic_media::video::VideoSummary;
use sonic_storage::{
    Body, InputKind, JobFailure, JobManifest, JobRef, ObjectInfo, ObjectStorageExt, Sha256Digest,
    Storage,
};

use super::error::PipelineError;
use super::hashing::ChecksumCache;
use super::manifest::ManifestRecorder;
use super::memory::MemoryEstimate;
use super::models::SonicModels;
use super::params::GenerationParams;
use super::progress::{CancellationToken, Progress, ProgressFn, Stage, StageClock};
use super::render::{NamedBytes, RenderControl, RenderInputs, RenderOutput};
use super::stages::StageObserver;
use super::weights::WeightsLayout;

/// Environment variable naming the weights folder of [`Pipeline::new`] (default
/// `./checkpoints`, the folder Sonic's README uses).
pub const WEIGHTS_ENV: &str = "SONIC_WEIGHTS";

/// One job: which inputs (by job id) and how to generate.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobRequest {
    /// The job's tenant and id: inputs are read from `inputs/{tenant}/{job}/image.*` and
    /// `audio.*`, outputs written under `outputs/{tenant}/{job}/`.
    pub job: JobRef,
    /// The generation parameters.
    pub params: GenerationParams,
}

impl JobRequest {
    /// A job with these parameters.
    pub fn new(job: JobRef, params: GenerationParams) -> Self {
        Self { job, params }
    }
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
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl")
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .field("stages", &self.stages.is_some())
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
    fn wants(&self, name: &str) -> bool {
        self.0.lock().map(|o| o.wants(name)).unwrap_or(false)
    }

    fn record(&mut self, name: &str, tensor: TensorData) {
        if let Ok(mut observer) = self.0.lock() {
            observer.record(name, tensor);
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
/// // Weights from $SONIC_WEIGHTS or ./checkpoints (see `WeightsLayout::released`).
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
    checkpoints: Vec<(&'static str, PathBuf)>,
    checksums: Arc<ChecksumCache>,
    detector: Arc<dyn FaceDetector>,
    description: String,
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
    /// Loads the released checkpoints from `$SONIC_WEIGHTS` (default `./checkpoints`, laid out
    /// as [`WeightsLayout::released`] describes) onto `backend`'s device and precision, with
    /// `store` holding the jobs.
    ///
    /// Loading takes the weights' size in memory and some seconds; build one pipeline per
    /// process and run every job through it. Jobs run one at a time per pipeline (the memory
    /// estimate assumes it).
    ///
    /// # Errors
    /// [`PipelineError::Weights`] for a missing file, [`PipelineError::Load`] for one that
    /// does not load, [`PipelineError::Backend`] if the device cannot run.
    pub fn new(backend: BackendChoice, store: Storage) -> Result<Self, PipelineError> {
        let dir = std::env::var_os(WEIGHTS_ENV)
            .map_or_else(|| PathBuf::from("checkpoints"), PathBuf::from);
        Self::with_weights(backend, store, &WeightsLayout::released(dir))
    }

    /// [`Pipeline::new`] with the weights of `layout` (e.g. [`WeightsLayout::released`] of a
    /// `--weights` folder, or [`WeightsLayout::demo`]).
    ///
    /// # Errors
    /// As [`Pipeline::new`].
    pub fn with_weights(
        backend: BackendChoice,
        store: Storage,
        layout: &WeightsLayout,
    ) -> Result<Self, PipelineError> {
        let checkpoints = layout.checkpoint_files()?;
        let (engine, description) = backend.run(LoadModels { layout })??;
        Ok(Self {
            engine,
            storage: store,
            checkpoints,
            checksums: Arc::new(ChecksumCache::in_memory()),
            detector: Arc::new(SeetaFaceDetector::bundled()?),
            description: format!("{backend} ({description})"),
        })
    }

    /// A pipeline over models already loaded on a backend (see
    /// [`SonicModels::load`]), for callers that pick the backend type themselves.
    ///
    /// `checkpoints` are the files hashed into each manifest (see
    /// [`WeightsLayout::checkpoint_files`](super::WeightsLayout::checkpoint_files)).
    pub fn from_models<B: Backend>(
        models: SonicModels<B>,
        storage: Storage,
        checkpoints: Vec<(&'static str, PathBuf)>,
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
            RenderControl {
                progress: control.progress,
                cancel: control.cancel,
                stages: shared.as_mut().map(|s| s as &mut dyn StageObserver),
                face_detector: self.detector.as_ref(),
            },
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
    /// The compute runs on tokio's blocking pool; this future only awaits it.
    ///
    /// # Errors
    /// Every [`PipelineError`]. After the claim, a failure is recorded in the manifest
    /// (`status: failed`, the error and its causes) and no video object is written.
    pub async fn generate_with(
        &self,
        job: &JobRequest,
        control: JobControl,
    ) -> Result<JobOutcome, PipelineError> {
        let mut recorder = ManifestRecorder::new(&job.job, &job.params);
        self.storage.create_manifest(recorder.manifest()).await?;
        recorder.manifest_mut().mark_running();
        self.storage.write_manifest(recorder.manifest()).await?;
        match self.run(job, control, &mut recorder).await {
            Ok((video, output)) => {
                let manifest = recorder.succeed(&video, self.storage.outputs().store_url());
                self.storage.write_manifest(&manifest).await?;
                Ok(JobOutcome {
                    video,
                    manifest,
                    summary: output.video,
                    estimate: output.estimate,
                })
            }
            Err(error) => {
                let manifest = recorder.fail(JobFailure::from_error(&error));
                if let Err(write) = self.storage.write_manifest(&manifest).await {
                    tracing::error!(job = %job.job, error = %write, "cannot record the failure in the manifest");
                }
                Err(error)
            }
        }
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
            if control.cancel.is_cancelled() {
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
            let mut info = self.storage.find_input(&job.job, kind).await?;
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
                RenderControl {
                    progress: render_control.progress,
                    cancel: render_control.cancel,
                    stages: shared.as_mut().map(|s| s as &mut dyn StageObserver),
                    face_detector: detector.as_ref(),
                },
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

        // Upload: only now does a video object appear.
        cancelled(Stage::Upload)?;
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
