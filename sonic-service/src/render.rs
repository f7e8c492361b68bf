//! The `Pipeline` as a [`JobHandler`], and [`submit_job`], its other end.
//!
//! Who decides what, so that a job gives exactly one video whatever crashes:
//!
//! - the **queue** delivers a job at least once and redelivers it when a lease runs out;
//! - the **job board** (KV, compare-and-set) says which delivery holds the job: a worker takes it
//!   only with a compare-and-set from the revision it read, and only if no other worker's lease
//!   is still running; every progress write is a compare-and-set too, so a worker that lost the
//!   job (paused past its lease, then resumed) sees `Stale` at its next write, sets the
//!   pipeline's fence and stops without writing anything more;
//! - the **store** holds the commit point: `video.mp4` is written create-only, so two renders can
//!   never both write one; a delivery that finds the video already there completes the job
//!   without rendering again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sonic::pipeline::{
    CancellationToken as RenderCancel, Claim, GenerationParams, JobControl, JobInputs as KeyInputs,
    JobRequest, Pipeline, PipelineError, Progress, WriteGuardFuture, WritePoint,
};
use sonic::storage::{
    InputKind, JobFailure, JobManifest, JobStatus, ObjectStorageExt, Storage, StorageError,
};
use tokio::sync::mpsc;

use crate::board::{JobBoard, JobPhase, JobState};
use crate::download;
use crate::error::{Result, ServiceError};
use crate::message::{InputRef, InputUrl, JobMessage};
use crate::metrics::Metrics;
use crate::queue::{Queue, Submitted};
use crate::worker::{JobDelivery, JobError, JobHandler, Lease};
use crate::{JobRef, ObjectKey};

/// Progress is written to the board (and the lease renewed) at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Runs each delivered job through a [`Pipeline`], with the job board as the arbiter.
///
/// For each delivery: the parameters are decoded (bad ones fail the job at once); the board
/// entry is taken with a compare-and-set (a job another worker's live lease holds is handed back
/// for later; a finished one is acknowledged); a video that exists completes the job; otherwise
/// the pipeline runs with the manifest taken over ([`Claim::Existing`]) or created. While it runs,
/// every progress report renews the lease and writes stage, step and ETA to the board; a
/// cancellation request stops it at the next window (`cancelled`, no video); a lost lease sets
/// its fence. Failures the pipeline calls retryable ([`PipelineError::is_retryable`]) are
/// [`JobError::Transient`], the rest [`JobError::Permanent`] with the board entry `Failed`.
#[derive(Clone)]
pub struct PipelineHandler {
    pipeline: Pipeline,
    board: JobBoard,
    worker: String,
    metrics: Metrics,
    url_inputs: UrlInputs,
}

impl std::fmt::Debug for PipelineHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandler")
            .field("pipeline", &self.pipeline)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl PipelineHandler {
    /// A handler that renders with `pipeline` (and its store) and records on `queue`'s board as
    /// `worker` (the name written into the board's entries).
    pub fn new(pipeline: Pipeline, queue: &Queue, worker: impl Into<String>) -> Self {
        Self {
            pipeline,
            board: queue.board().clone(),
            worker: worker.into(),
            metrics: Metrics::new(),
            url_inputs: UrlInputs::default(),
        }
    }

    /// Which inputs given by URL are downloaded (default [`UrlInputs::Public`]).
    pub fn with_url_inputs(mut self, policy: UrlInputs) -> Self {
        self.url_inputs = policy;
        self
    }

    /// Counts takeovers, refused late writes and seconds per stage into `metrics` (share it
    /// with the [`Worker`](crate::Worker)s of the process).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Writes `state` over the entry at `revision`; on `Stale` re-reads once and applies
    /// `state`'s phase over the newer entry unless another worker holds it. Returns the new
    /// revision.
    async fn settle(&self, job: &JobRef, state: JobState, revision: u64) -> Result<u64> {
        match self.board.update(job, &state, revision).await {
            Err(ServiceError::Stale { .. }) => {
                let (current, revision) = self.board.get(job).await?;
                if current.worker.as_deref() != Some(self.worker.as_str())
                    || current.attempt != state.attempt
                {
                    return Err(ServiceError::Stale {
                        job: job.clone(),
                        expected_revision: revision,
                    });
                }
                let merged = JobState {
                    cancel_requested: current.cancel_requested,
                    ..state
                };
                self.board.update(job, &merged, revision).await
            }
            other => other,
        }
    }

    /// The pipeline's [`WriteGuard`](sonic::pipeline::WriteGuard): before each manifest write
    /// and the video upload, the lease is renewed (refused once it ran out) and the board must
    /// still name this worker and attempt. A worker paused past its lease and resumed is
    /// refused here, before it writes anything.
    fn write_guard(
        &self,
        job: &JobRef,
        attempt: u32,
        lease: &Lease,
    ) -> impl Fn(WritePoint) -> WriteGuardFuture + Send + Sync + 'static {
        let (board, worker, job, lease, metrics) = (
            self.board.clone(),
            self.worker.clone(),
            job.clone(),
            lease.clone(),
            self.metrics.clone(),
        );
        move |_point| {
            let (board, worker, job, lease, metrics) = (
                board.clone(),
                worker.clone(),
                job.clone(),
                lease.clone(),
                metrics.clone(),
            );
            Box::pin(async move {
                let refused = |reason: String| {
                    metrics.late_write_refused();
                    reason
                };
                lease
                    .keep_alive()
                    .await
                    .map_err(|e| refused(e.to_string()))?;
                let (current, _) = board.get(&job).await.map_err(|e| refused(e.to_string()))?;
                if current.worker.as_deref() != Some(worker.as_str()) || current.attempt != attempt
                {
                    return Err(refused(format!(
                        "the job board gives job {job} to {} (attempt {}), not to {worker} \
                         (attempt {attempt})",
                        current.worker.as_deref().unwrap_or("nobody"),
                        current.attempt
                    )));
                }
                Ok(())
            })
        }
    }

    /// Takes the board entry for this delivery, or says why not.
    async fn take(&self, job: &JobRef, attempt: u32, lease: &Lease) -> Result<Taken> {
        let (state, revision) = match self.board.get(job).await {
            Ok(found) => found,
            Err(ServiceError::NotFound { .. }) => {
                let state = JobState::queued();
                match self.board.create(job, &state).await {
                    Ok(revision) => (state, revision),
                    Err(ServiceError::AlreadyExists { .. }) => self.board.get(job).await?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if state.is_terminal() {
            return Ok(Taken::Finished(state.state));
        }
        if state.cancel_requested {
            let cancelled = JobState {
                state: JobPhase::Cancelled,
                attempt,
                worker: Some(self.worker.clone()),
                lease_until: None,
                updated_at: Utc::now(),
                ..state
            };
            self.board.update(job, &cancelled, revision).await?;
            return Ok(Taken::Cancelled);
        }
        if state.state == JobPhase::Running
            && state.worker.as_deref() != Some(self.worker.as_str())
            && state.lease_until.is_some_and(|until| until > Utc::now())
        {
            return Ok(Taken::HeldElsewhere {
                worker: state.worker.unwrap_or_default(),
            });
        }
        if state.state == JobPhase::Running && state.worker.as_deref() != Some(self.worker.as_str())
        {
            tracing::info!(%job, from = ?state.worker, previous_attempt = state.attempt, "taking over a job whose lease ran out");
            self.metrics.taken_over();
        }
        let running = JobState {
            state: JobPhase::Running,
            attempt,
            worker: Some(self.worker.clone()),
            lease_until: Some(lease.expires_at()),
            stage: Some("download".into()),
            step: None,
            total: None,
            eta_secs: None,
            updated_at: Utc::now(),
            error: None,
            cancel_requested: false,
        };
        let revision = self.board.update(job, &running, revision).await?;
        Ok(Taken::Held { running, revision })
    }
}

enum Taken {
    Held { running: JobState, revision: u64 },
    Finished(JobPhase),
    Cancelled,
    HeldElsewhere { worker: String },
}

/// The parameters of a message: its `parameters` over Sonic's defaults (`null`: the defaults).
fn parameters(message: &JobMessage) -> std::result::Result<GenerationParams, JobError> {
    let params: GenerationParams = if message.parameters.is_null() {
        GenerationParams::default()
    } else {
        serde_json::from_value(message.parameters.clone()).map_err(JobError::permanent)?
    };
    params.validate().map_err(JobError::permanent)?;
    Ok(params)
}

/// Which inputs given by URL ([`InputRef::Url`]) a [`PipelineHandler`] downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UrlInputs {
    /// None: such a job fails (permanently).
    Refused,
    /// http(s) URLs whose host is a name other than `localhost` or a public IP address; IP
    /// literals that are loopback, private, link-local (cloud metadata), shared, unspecified or
    /// multicast are refused. (A name that resolves to such an address is not caught: put
    /// workers behind an egress policy too.) The default.
    #[default]
    Public,
    /// Any http(s) URL, loopback included (tests, trusted networks).
    Any,
}

impl UrlInputs {
    fn check(self, url: &InputUrl) -> std::result::Result<(), String> {
        use std::net::IpAddr;
        let refuse = |why: &str| Err(format!("input {}: {why}", url.redacted()));
        match self {
            UrlInputs::Refused => {
                refuse("this worker does not read inputs by URL; give object keys")
            }
            UrlInputs::Any => Ok(()),
            UrlInputs::Public => {
                let internal = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => {
                        v4.is_loopback()
                            || v4.is_private()
                            || v4.is_link_local()
                            || v4.is_unspecified()
                            || v4.is_broadcast()
                            || v4.is_multicast()
                            || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                    }
                    IpAddr::V6(v6) => {
                        v6.is_loopback()
                            || v6.is_unspecified()
                            || v6.is_multicast()
                            || (v6.segments()[0] & 0xfe00) == 0xfc00
                            || (v6.segments()[0] & 0xffc0) == 0xfe80
                            || v6.to_ipv4_mapped().is_some_and(|v4| {
                                v4.is_loopback() || v4.is_private() || v4.is_link_local()
                            })
                    }
                };
                match url.url().host() {
                    Some(url::Host::Ipv4(ip)) if internal(IpAddr::V4(ip)) => {
                        refuse("the host is not a public address")
                    }
                    Some(url::Host::Ipv6(ip)) if internal(IpAddr::V6(ip)) => {
                        refuse("the host is not a public address")
                    }
                    Some(url::Host::Domain(name))
                        if name.eq_ignore_ascii_case("localhost")
                            || name.to_ascii_lowercase().ends_with(".localhost") =>
                    {
                        refuse("the host is not a public address")
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// The key of one input: an object key as given, or, for a URL, the object it was downloaded
/// to (`inputs/{tenant}/{job}/{image|audio}.{ext}`, create-only; an attempt that finds it there
/// does not download again, so a signature that expired since does not matter).
async fn input_key(
    storage: &Storage,
    job: &JobRef,
    kind: InputKind,
    input: &InputRef,
    policy: UrlInputs,
) -> std::result::Result<ObjectKey, JobError> {
    let url = match input {
        InputRef::Key(key) => return Ok(key.clone()),
        InputRef::Url(url) => url,
    };
    policy.check(url).map_err(JobError::permanent)?;
    let ext = download::extension(url, kind == InputKind::Image).map_err(JobError::permanent)?;
    let key = job.input_key(kind, &ext).map_err(JobError::permanent)?;
    match storage.input_at(&key).await {
        Ok(_) => return Ok(key),
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(JobError::transient(e)),
    }
    let bytes = download::download(url, download::MAX_DOWNLOAD_BYTES)
        .await
        .map_err(|e| {
            if e.is_permanent() {
                JobError::permanent(e)
            } else {
                JobError::transient(e)
            }
        })?;
    tracing::info!(%job, input = %key, bytes = bytes.len(), from = %url.redacted(), "input downloaded");
    match storage.put_input_once(job, kind, &ext, bytes).await {
        Ok(key) => Ok(key),
        Err(StorageError::AlreadyExists { .. }) => Err(JobError::permanent(format!(
            "input {key} exists with other bytes than {} holds",
            url.redacted()
        ))),
        Err(e) => Err(JobError::transient(e)),
    }
}

impl JobHandler for PipelineHandler {
    async fn run(
        &self,
        delivery: &JobDelivery,
        lease: &Lease,
    ) -> std::result::Result<(), JobError> {
        let job = delivery.job();
        let message = delivery.message();
        let attempt = delivery.attempt();
        let (running, mut revision) = match self
            .take(&job, attempt, lease)
            .await
            .map_err(JobError::transient)?
        {
            Taken::Held { running, revision } => (running, revision),
            Taken::Finished(phase) => {
                tracing::info!(%job, ?phase, "the job is finished already: acknowledged");
                return Ok(());
            }
            Taken::Cancelled => {
                record_cancelled(self.pipeline.storage(), &job).await;
                return Err(JobError::Cancelled);
            }
            Taken::HeldElsewhere { worker } => {
                return Err(JobError::transient(format!(
                    "job {job} is held by worker {worker}, whose lease still runs"
                )));
            }
        };
        let storage = self.pipeline.storage();

        // The commit point exists: a run stopped between the video and its manifest.
        if storage
            .outputs()
            .exists(&job.video_key())
            .await
            .map_err(JobError::transient)?
        {
            complete_from_video(storage, &job, attempt)
                .await
                .map_err(JobError::transient)?;
            let done = running.settled(JobPhase::Succeeded, None);
            self.settle(&job, done, revision)
                .await
                .map_err(JobError::transient)?;
            return Ok(());
        }
        // Parameters and inputs (downloading those given by URL). A permanent failure here
        // fails the job (board and manifest); a transient one puts it back on the board.
        let prepared = async {
            let params = parameters(message)?;
            let image = input_key(
                storage,
                &job,
                InputKind::Image,
                &message.inputs.image,
                self.url_inputs,
            )
            .await?;
            let audio = input_key(
                storage,
                &job,
                InputKind::Audio,
                &message.inputs.audio,
                self.url_inputs,
            )
            .await?;
            Ok::<_, JobError>((params, KeyInputs { image, audio }))
        }
        .await;
        let (params, inputs) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let text = error.to_string();
                let phase = match &error {
                    JobError::Permanent(_) => JobPhase::Failed,
                    _ if delivery.is_final_attempt() => JobPhase::Failed,
                    _ => JobPhase::Queued,
                };
                if phase == JobPhase::Failed
                    && let Err(e) = record_failure(storage, &job, &text).await
                {
                    tracing::warn!(%job, error = %e, "cannot record the failure in the manifest");
                }
                let _ = self
                    .settle(&job, running.clone().settled(phase, Some(text)), revision)
                    .await;
                return Err(error);
            }
        };
        let claim = match storage.read_manifest(&job).await {
            Ok(manifest) if manifest.status == JobStatus::Succeeded => {
                return Err(JobError::permanent(format!(
                    "job {job}: its manifest says succeeded but it has no video"
                )));
            }
            Ok(_) => Claim::Existing,
            Err(StorageError::NotFound { .. }) => Claim::Create,
            Err(e) => return Err(JobError::transient(e)),
        };

        // Progress: renew the lease and write the board; a cancellation request or a lost job
        // stops the render.
        let cancel = RenderCancel::new();
        let fence = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
        let control = JobControl::default()
            .with_progress(move |p| {
                let _ = tx.send(*p);
            })
            .with_cancel(cancel.clone())
            .with_fence(fence.clone())
            .with_write_guard(self.write_guard(&job, attempt, lease));
        let request = JobRequest::new(job.clone(), params)
            .with_inputs(inputs)
            .with_claim(claim);
        let watcher = {
            let (board, worker, job, lease) = (
                self.board.clone(),
                self.worker.clone(),
                job.clone(),
                lease.clone(),
            );
            let (cancel, fence, base) = (cancel.clone(), fence.clone(), running.clone());
            async move {
                let mut last = Instant::now() - PROGRESS_EVERY;
                while let Some(progress) = rx.recv().await {
                    if last.elapsed() < PROGRESS_EVERY && progress.done < progress.total {
                        continue;
                    }
                    last = Instant::now();
                    if let Err(e) = lease.keep_alive().await {
                        tracing::warn!(%job, error = %e, "the lease is lost: stopping, writing nothing more");
                        fence.store(true, Ordering::SeqCst);
                        cancel.cancel();
                        continue;
                    }
                    let state = JobState {
                        lease_until: Some(lease.expires_at()),
                        stage: Some(progress.stage.name().to_owned()),
                        step: u32::try_from(progress.done).ok(),
                        total: u32::try_from(progress.total).ok(),
                        eta_secs: progress.eta.map(|eta| eta.as_secs_f64()),
                        updated_at: Utc::now(),
                        ..base.clone()
                    };
                    match board.update(&job, &state, revision).await {
                        Ok(next) => revision = next,
                        Err(ServiceError::Stale { .. }) => match board.get(&job).await {
                            Ok((current, _))
                                if current.worker.as_deref() != Some(worker.as_str())
                                    || current.attempt != base.attempt =>
                            {
                                tracing::warn!(%job, "the job was taken over: stopping, writing nothing more");
                                fence.store(true, Ordering::SeqCst);
                                cancel.cancel();
                            }
                            Ok((current, current_revision)) => {
                                revision = current_revision;
                                if current.cancel_requested {
                                    tracing::info!(%job, "cancellation requested: stopping");
                                    cancel.cancel();
                                }
                            }
                            Err(e) => tracing::warn!(%job, error = %e, "cannot read the board"),
                        },
                        Err(e) => tracing::warn!(%job, error = %e, "cannot write progress"),
                    }
                }
                revision
            }
        };
        let (result, revision) =
            tokio::join!(self.pipeline.generate_with(&request, control), watcher);
        let finished = |phase, error: Option<String>| running.clone().settled(phase, error);
        match result {
            Ok(outcome) => {
                self.metrics.stage_timings(&outcome.manifest.timings);
                self.settle(&job, finished(JobPhase::Succeeded, None), revision)
                    .await
                    .map_err(JobError::transient)?;
                Ok(())
            }
            Err(PipelineError::Fenced { .. }) => Err(JobError::transient(format!(
                "job {job} was taken over by another worker"
            ))),
            Err(PipelineError::Cancelled { .. }) if !lease.stopping().is_cancelled() => {
                self.settle(&job, finished(JobPhase::Cancelled, None), revision)
                    .await
                    .map_err(JobError::transient)?;
                Err(JobError::Cancelled)
            }
            Err(e) if e.is_retryable() || matches!(e, PipelineError::Cancelled { .. }) => {
                // Retryable: back to the queue (the next attempt resumes the manifest), unless
                // this was the last delivery.
                let phase = if delivery.is_final_attempt() {
                    JobPhase::Failed
                } else {
                    JobPhase::Queued
                };
                let _ = self
                    .settle(&job, finished(phase, Some(e.to_string())), revision)
                    .await;
                Err(JobError::transient(e))
            }
            Err(e) => {
                let _ = self
                    .settle(
                        &job,
                        finished(JobPhase::Failed, Some(e.to_string())),
                        revision,
                    )
                    .await;
                Err(JobError::permanent(e))
            }
        }
    }

    /// A stopping worker handed the job back: its board entry goes back to `queued` (if this
    /// delivery still holds it), so the next worker takes it at once instead of waiting for
    /// this lease to run out.
    async fn handed_back(&self, delivery: &JobDelivery, _lease: &Lease) {
        let job = delivery.job();
        for _ in 0..3 {
            let Ok((state, revision)) = self.board.get(&job).await else {
                return;
            };
            if state.state != JobPhase::Running
                || state.worker.as_deref() != Some(self.worker.as_str())
                || state.attempt != delivery.attempt()
            {
                return;
            }
            let queued = JobState {
                worker: None,
                ..state.settled(JobPhase::Queued, None)
            };
            match self.board.update(&job, &queued, revision).await {
                Err(ServiceError::Stale { .. }) => continue,
                Err(e) => {
                    tracing::warn!(%job, error = %e, "cannot release the job on the board");
                    return;
                }
                Ok(_) => {
                    tracing::info!(%job, "released on the board for the next worker");
                    return;
                }
            }
        }
    }
}

/// Records a job whose video exists as succeeded, from the video object itself.
async fn complete_from_video(
    storage: &Storage,
    job: &JobRef,
    attempt: u32,
) -> std::result::Result<(), StorageError> {
    let video = storage.outputs().head(&job.video_key()).await?;
    let mut manifest = match storage.read_manifest(job).await {
        Ok(manifest) => manifest,
        Err(StorageError::NotFound { .. }) => JobManifest::new(job.clone()),
        Err(e) => return Err(e),
    };
    if manifest.status == JobStatus::Succeeded {
        return Ok(());
    }
    manifest.attempt = manifest.attempt.max(attempt);
    manifest.outputs.retain(|record| record.role != "video");
    manifest
        .outputs
        .push(video.record("video", storage.outputs().store_url()));
    manifest.mark_succeeded();
    tracing::info!(%job, "the video exists: completed without rendering again");
    storage.write_manifest(&manifest).await.map(drop)
}

/// Records `cancelled` in the manifest of a job cancelled before it ran (best effort: the
/// board says so either way).
async fn record_cancelled(storage: &Storage, job: &JobRef) {
    match storage.read_manifest(job).await {
        Ok(mut manifest)
            if !matches!(
                manifest.status,
                JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
            ) =>
        {
            manifest.mark_cancelled(JobFailure::new("cancelled before it started"));
            if let Err(e) = storage.write_manifest(&manifest).await {
                tracing::warn!(%job, error = %e, "cannot record the cancellation");
            }
        }
        Ok(_) | Err(StorageError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(%job, error = %e, "cannot read the manifest"),
    }
}

/// One input to upload with [`submit_job`]: its bytes and extension.
#[derive(Debug, Clone)]
pub struct UploadInput {
    /// The file's bytes.
    pub bytes: bytes::Bytes,
    /// Its extension (`png`, `wav` ...).
    pub ext: String,
}

/// What [`submit_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Submission {
    /// The queue's answer (`duplicate` if the job was on the queue already).
    pub submitted: Submitted,
    /// Whether this call created the job (its manifest); `false` when the job existed and was
    /// only published again.
    pub created: bool,
}

/// Submits a job the way `sonic submit` does: claims it by creating its manifest create-only
/// (so a job id that exists keeps every object as it was), uploads the inputs create-only at
/// `inputs/{tenant}/{job}/{image|audio}.{ext}`, creates its board entry (`Queued`) and
/// publishes it with `parameters`.
///
/// Submitting a job that exists and has not finished publishes it again (deduplicated by the
/// queue): nothing is uploaded, and the stored inputs are the ones that count.
///
/// # Errors
/// [`ServiceError::Finished`] for a job that succeeded or was cancelled; [`ServiceError::Storage`] for the
/// store; the queue's errors.
pub async fn submit_job(
    queue: &Queue,
    storage: &Storage,
    job: &JobRef,
    image: UploadInput,
    audio: UploadInput,
    parameters: serde_json::Value,
) -> Result<Submission> {
    let storage_error = |source| ServiceError::Storage {
        job: job.clone(),
        source: Box::new(source),
    };
    let created = claim(storage, job, &parameters).await?.is_none();
    let mut keys = if created {
        let mut keys = Vec::new();
        for (kind, input) in [(InputKind::Image, &image), (InputKind::Audio, &audio)] {
            match storage
                .put_input_create_only(job, kind, &input.ext, input.bytes.clone())
                .await
            {
                Ok(info) => keys.push(info.key),
                Err(e) => {
                    // Release the claim: a refused submission leaves the store as it was.
                    let _ = storage.outputs().delete(&job.manifest_key()).await;
                    return Err(storage_error(e));
                }
            }
        }
        keys
    } else {
        let mut keys = Vec::new();
        for kind in [InputKind::Image, InputKind::Audio] {
            keys.push(
                storage
                    .find_input(job, kind)
                    .await
                    .map_err(storage_error)?
                    .key,
            );
        }
        keys
    };
    let audio_key = keys.pop().expect("two inputs");
    let image_key = keys.pop().expect("two inputs");
    let submitted = enqueue(queue, job, image_key, audio_key, parameters).await?;
    Ok(Submission { submitted, created })
}

/// Submits a job whose inputs are in the store already (uploaded by the client itself, e.g.
/// to presigned URLs): claims the job by creating its manifest create-only, creates its board
/// entry (`Queued`) and publishes it with the inputs at `image` and `audio`.
///
/// Like [`submit_job`], submitting a job that exists and has not finished publishes it again
/// (deduplicated by the queue) with the parameters it was first submitted with.
///
/// # Errors
/// [`ServiceError::Finished`] for a job that succeeded or was cancelled; [`ServiceError::Storage`]
/// for the store; the queue's errors.
pub async fn submit_stored_job(
    queue: &Queue,
    storage: &Storage,
    job: &JobRef,
    image: ObjectKey,
    audio: ObjectKey,
    parameters: serde_json::Value,
) -> Result<Submission> {
    let (created, parameters) = match claim(storage, job, &parameters).await? {
        None => (true, parameters),
        Some(existing) => (false, existing),
    };
    let submitted = enqueue(queue, job, image, audio, parameters).await?;
    Ok(Submission { submitted, created })
}

/// Claims `job` by creating its manifest (with `parameters`) create-only: `None` when this
/// call created it, the parameters it was created with when it exists and has not finished.
///
/// # Errors
/// [`ServiceError::Finished`] for a job that succeeded or was cancelled; the store's errors.
async fn claim(
    storage: &Storage,
    job: &JobRef,
    parameters: &serde_json::Value,
) -> Result<Option<serde_json::Value>> {
    let storage_error = |source| ServiceError::Storage {
        job: job.clone(),
        source: Box::new(source),
    };
    let mut manifest = JobManifest::new(job.clone());
    manifest.parameters = parameters.clone();
    match storage.create_manifest(&manifest).await {
        Ok(_) => Ok(None),
        Err(StorageError::AlreadyExists { .. }) => {
            let existing = storage.read_manifest(job).await.map_err(storage_error)?;
            if matches!(existing.status, JobStatus::Succeeded | JobStatus::Cancelled) {
                return Err(ServiceError::Finished {
                    job: job.clone(),
                    status: existing.status,
                });
            }
            Ok(Some(existing.parameters))
        }
        Err(e) => Err(storage_error(e)),
    }
}

/// The board entry (`Queued`, unless it has one) and the message of a claimed job.
async fn enqueue(
    queue: &Queue,
    job: &JobRef,
    image: ObjectKey,
    audio: ObjectKey,
    parameters: serde_json::Value,
) -> Result<Submitted> {
    match queue.board().create(job, &JobState::queued()).await {
        Ok(_) | Err(ServiceError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let message = JobMessage::new(job.clone(), InputRef::Key(image), InputRef::Key(audio))
        .with_parameters(parameters);
    queue.submitter().submit(&message).await
}

/// Marks a job `failed` in its manifest with `error` (used when a job fails outside the
/// pipeline: bad parameters, an input that cannot be fetched, deliveries exhausted); a job
/// without a manifest gets one. A job that succeeded or was cancelled is left as it is.
pub async fn record_failure(
    storage: &Storage,
    job: &JobRef,
    error: &str,
) -> std::result::Result<(), StorageError> {
    let mut manifest = match storage.read_manifest(job).await {
        Ok(manifest) => manifest,
        Err(StorageError::NotFound { .. }) => {
            let mut manifest = JobManifest::new(job.clone());
            manifest.mark_failed(JobFailure::new(error));
            return match storage.create_manifest(&manifest).await {
                Ok(_) => Ok(()),
                // Created meanwhile: mark that one.
                Err(StorageError::AlreadyExists { .. }) => {
                    Box::pin(record_failure(storage, job, error)).await
                }
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    if !matches!(manifest.status, JobStatus::Succeeded | JobStatus::Cancelled) {
        manifest.mark_failed(JobFailure::new(error));
        storage.write_manifest(&manifest).await?;
    }
    Ok(())
}
