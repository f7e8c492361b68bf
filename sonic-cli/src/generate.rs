//! `sonic generate`: a talking-head video from one portrait and one speech recording.
//!
//! ```text
//! # No weights needed: tiny random weights on a bundled portrait and speech clip (noise out).
//! sonic generate --demo
//!
//! # The released checkpoints (layout in docs/pipeline.md), outputs in ./sonic-data.
//! sonic generate --image face.png --audio speech.wav --weights checkpoints --out video.mp4
//!
//! # Any store (file:///..., s3://bucket/prefix, oss://..., memory://), any device
//! # (built with `--features cuda`).
//! sonic generate --image face.png --audio speech.wav --weights checkpoints \
//!     --store s3://my-bucket/sonic --device cuda --dtype f16 --inference-steps 25 --seed 0
//! ```
//!
//! The inputs are uploaded to the store under `inputs/{tenant}/{job}/`, the pipeline writes
//! `outputs/{tenant}/{job}/video.mp4` and `manifest.json`; the command prints their keys and,
//! when the store can sign URLs, a download URL valid for an hour. Every parameter of
//! `GenerationParams` has a flag (`--help` lists them with Sonic's defaults).
//!
//! Ctrl-C (SIGINT) or SIGTERM cancels the job: the manifest records it, no video is written
//! and the temporary files are removed. A second Ctrl-C exits at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use sonic::backends::BackendChoice;
use sonic::pipeline::{
    CancellationToken, Claim, FaceSpec, GenerationParams, JobControl, JobInputs, JobOutcome,
    JobRequest, Pipeline, Progress, Stage, WeightsLayout, human_bytes,
};
use sonic::storage::{
    InputKind, JobFailure, JobManifest, JobRef, JobStatus, ObjectKey, ObjectStorageExt, Storage,
    StorageError,
};

use crate::demo::{self, DemoWeights};
use crate::input::Input;

const NOISE_WARNING: &str = "The demo runs the tiny RANDOM weights of the test fixtures: the video is noise, \
not a talking face. Download the released checkpoints (docs/pipeline.md) and pass --weights DIR for real output.";

/// Generate a lip-synced talking-head video (Sonic) from a portrait and a speech recording.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Run the whole pipeline with tiny random weights, on a bundled portrait and speech clip
    /// unless --image/--audio name others (no download needed; the video is noise).
    #[arg(long, conflicts_with = "weights")]
    demo: bool,
    /// The portrait (PNG, JPEG or WebP).
    #[arg(long, required_unless_present = "demo")]
    image: Option<PathBuf>,
    /// The speech (WAV, MP3, FLAC, AAC/M4A or Ogg Vorbis).
    #[arg(long, required_unless_present = "demo")]
    audio: Option<PathBuf>,
    /// The released checkpoints folder (layout in docs/pipeline.md).
    #[arg(long, required_unless_present = "demo")]
    weights: Option<PathBuf>,
    /// Also copy the video to this local file (its folder must exist).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The object store for inputs and outputs: a folder, file:///..., s3://bucket/prefix,
    /// oss://..., gs://..., memory://.
    #[arg(long, default_value = "./sonic-data")]
    store: String,
    /// Tenant of the job (first segment of its keys).
    #[arg(long, default_value = "local")]
    tenant: String,
    /// Job id (default: `job-<unix time in ms>`). A job id that exists is refused, with every
    /// stored object left as it was (see --resume).
    #[arg(long)]
    job: Option<String>,
    /// Run a job that exists but did not succeed again: one left `running` by a process that
    /// was killed, one that failed, or one that was cancelled. Its stored inputs must be the
    /// same files. Only one process may run a job at a time.
    #[arg(long, requires = "job")]
    resume: bool,
    /// Compute device: cpu, wgpu, wgpu:N, cuda, cuda:N or auto (the fastest one compiled in
    /// and present).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Precision of the large models: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    params: ParamArgs,
}

/// The generation parameters; unset flags keep the defaults (Sonic's, or the demo's).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ParamArgs {
    /// Use at most this many seconds of the audio [default: all, at most 400].
    #[arg(long, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Short side of the model input in pixels, before rounding to multiples of 64 [default:
    /// 512; demo: 64].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<u32>)]
    min_resolution: Option<u32>,
    /// Growth of the face box on every side before the square crop (with --crop) [default: 0.5].
    #[arg(long, allow_negative_numbers = true)]
    expand_ratio: Option<f64>,
    /// Crop the picture to a square around the face first.
    #[arg(long)]
    crop: bool,
    /// Denoising steps [default: 25].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>)]
    inference_steps: Option<usize>,
    /// Scale of both motion buckets (head motion and expression) [default: 1.0].
    #[arg(long, allow_negative_numbers = true)]
    dynamic_scale: Option<f32>,
    /// Extra scale of the head-motion bucket only (1.0 = Sonic) [default: 1.0].
    #[arg(long, allow_negative_numbers = true)]
    motion_scale: Option<f32>,
    /// Seconds by which the mouth follows (+) or leads (-) the sound [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    lip_sync_offset: Option<f64>,
    /// Audio guidance scale [default: 7.5].
    #[arg(long, allow_negative_numbers = true)]
    audio_guidance: Option<f32>,
    /// Image guidance scale [default: 2.0].
    #[arg(long, allow_negative_numbers = true)]
    image_guidance: Option<f32>,
    /// Frames the window cut moves per denoising step [default: 7].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>)]
    shift_offset: Option<usize>,
    /// Frames the VAE decodes at once [default: 8].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>)]
    decode_chunk_size: Option<usize>,
    /// No RIFE frame interpolation (12.5 fps instead of 25).
    #[arg(long)]
    no_interpolation: bool,
    /// Write the video at the picture's own size instead of the model's.
    #[arg(long)]
    keep_resolution: bool,
    /// Frame rate of the written video [default: 25, or 12.5 without interpolation].
    #[arg(long, allow_negative_numbers = true)]
    fps: Option<f64>,
    /// Seed of the initial noise (any u64, 0 included) [default: 72589].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<u64>)]
    seed: Option<u64>,
    /// Refuse the job before the first step if its estimated peak memory is above this
    /// (bytes, or with a K/M/G/T suffix, powers of 1024: 12G).
    #[arg(long, value_parser = parse_bytes)]
    memory_budget: Option<u64>,
    /// The face box `x,y,width,height` in pixels of the picture [default: detect; demo: the
    /// sample's box].
    #[arg(long, value_parser = parse_face_box, conflicts_with = "whole_frame")]
    face_box: Option<FaceSpec>,
    /// Use the whole picture as the face region instead of detecting a face.
    #[arg(long)]
    whole_frame: bool,
}

impl ParamArgs {
    /// `base` with every flag that was given applied.
    pub(crate) fn apply(&self, base: GenerationParams) -> GenerationParams {
        let mut p = base;
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = self.$field { p.$field = v; })*};
        }
        set!(
            min_resolution,
            expand_ratio,
            inference_steps,
            dynamic_scale,
            motion_scale,
            lip_sync_offset,
            audio_guidance,
            image_guidance,
            shift_offset,
            decode_chunk_size,
            seed
        );
        if self.duration.is_some() {
            p.duration = self.duration;
        }
        if self.fps.is_some() {
            p.fps = self.fps;
        }
        if self.memory_budget.is_some() {
            p.memory_budget = self.memory_budget;
        }
        p.crop |= self.crop;
        p.keep_resolution |= self.keep_resolution;
        if self.no_interpolation {
            p.interpolation = false;
        }
        if let Some(face) = self.face_box {
            p.face = face;
        }
        if self.whole_frame {
            p.face = FaceSpec::WholeFrame;
        }
        p
    }
}

/// A whole number of type `T` (a seed, a step count ...), with a message that says what is
/// wrong with `-1` or `2.5` rather than clap's "unexpected argument".
fn whole<T: TryFrom<i128>>(text: &str) -> Result<T, String> {
    let value: i128 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if value < 0 {
        return Err(format!("`{text}` is negative; it must be 0 or more"));
    }
    T::try_from(value).map_err(|_| format!("`{text}` is too large"))
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        Some('T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let value: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size (bytes, or a number with K/M/G/T)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{text}` is not a size"));
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

fn parse_face_box(text: &str) -> Result<FaceSpec, String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{text}` is not `x,y,width,height`"))?;
    let [x, y, width, height] = values[..] else {
        return Err(format!("`{text}` is not `x,y,width,height` (four numbers)"));
    };
    Ok(FaceSpec::Box {
        x,
        y,
        width,
        height,
    })
}

/// Everything the run needs, resolved from the command line.
#[derive(Debug)]
struct Plan {
    layout: WeightsLayout,
    /// The unpacked demo weights (`layout` points into them): kept until the job is done,
    /// since the manifest hashes the checkpoint files.
    demo: Option<DemoWeights>,
    backend: BackendChoice,
    image: Input,
    audio: Input,
    params: GenerationParams,
    job: JobRef,
}

/// Refuses an `--out` path whose folder does not exist or that is a folder itself, before any
/// compute.
fn check_out(out: &Path) -> Result<(), String> {
    if out.is_dir() {
        return Err(format!("--out {}: is a folder, not a file", out.display()));
    }
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "--out {}: the folder {} does not exist",
            out.display(),
            parent.display()
        ));
    }
    Ok(())
}

impl GenerateArgs {
    /// The demo's parameters (see [`demo::params`]), Sonic's settings otherwise.
    fn base_params(&self) -> GenerationParams {
        if self.demo {
            demo::params(self.image.is_some())
        } else {
            GenerationParams::default()
        }
    }

    /// Checks every argument and resolves the inputs (for `--demo`: unpacks the embedded
    /// weights), before anything is loaded or uploaded.
    fn plan(&self) -> Result<Plan, String> {
        let params = self.params.apply(self.base_params());
        params.validate().map_err(|e| crate::report(&e))?;
        let backend =
            BackendChoice::parse(&self.device, &self.dtype).map_err(|e| crate::report(&e))?;
        let job_id = self.job.clone().unwrap_or_else(|| {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            format!("job-{ms}")
        });
        let job = JobRef::parse(&self.tenant, &job_id).map_err(|e| crate::report(&e))?;
        if let Some(out) = &self.out {
            check_out(out)?;
        }
        let (layout, demo, image, audio) = if self.demo {
            let image = Input::or_sample(self.image.as_deref(), demo::PORTRAIT, "png")?;
            let audio = Input::or_sample(self.audio.as_deref(), demo::SPEECH, "wav")?;
            let weights = DemoWeights::unpack()?;
            (weights.layout().clone(), Some(weights), image, audio)
        } else {
            // clap enforces these without --demo.
            let [Some(image), Some(audio), Some(weights)] =
                [&self.image, &self.audio, &self.weights]
            else {
                return Err("--image, --audio and --weights are required without --demo".into());
            };
            let layout = WeightsLayout::released(weights);
            layout.check().map_err(|e| crate::report(&e))?;
            (layout, None, Input::read(image)?, Input::read(audio)?)
        };
        Ok(Plan {
            layout,
            demo,
            backend,
            image,
            audio,
            params,
            job,
        })
    }
}

/// A progress bar per stage, fed by the pipeline's progress reports.
fn progress_bar(quiet: bool) -> (ProgressBar, JobControl) {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let sink = bar.clone();
    let control = JobControl::default().with_progress(move |p: &Progress| {
        if sink.prefix() != p.stage.name() {
            sink.set_prefix(p.stage.name());
            sink.reset_elapsed();
        }
        sink.set_length(p.total.max(1));
        sink.set_position(p.done);
        sink.set_message(describe(p));
    });
    (bar, control)
}

fn describe(p: &Progress) -> String {
    let mut text = String::new();
    if p.stage == Stage::Denoise
        && let (Some(step), Some(window)) = (p.step, p.window)
    {
        text = format!(
            "step {}/{} window {}/{}",
            step + 1,
            p.num_steps,
            window + 1,
            p.windows_per_step
        );
    } else if p.stage == Stage::Decode {
        text = "frames".into();
    }
    if let Some(eta) = p.eta {
        text.push_str(&format!(" eta {:.0}s", eta.as_secs_f64().ceil()));
    }
    text
}

/// Cancels `token` on the first SIGINT (Ctrl-C) or SIGTERM; exits the process at once on the
/// second.
fn cancel_on_signals(token: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if signal().await.is_err() {
            return;
        }
        eprintln!("\ncancelling the job (press Ctrl-C again to exit at once) ...");
        token.cancel();
        if signal().await.is_ok() {
            std::process::exit(130);
        }
    })
}

/// The next SIGINT or SIGTERM (Ctrl-C only, off Unix).
pub(crate) async fn signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = interrupt.recv() => Ok(()),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Runs `sonic generate`.
///
/// # Errors
/// A message saying what went wrong (bad argument, missing file, failed job).
pub async fn main(args: GenerateArgs) -> Result<(), String> {
    let cancel = CancellationToken::new();
    let signals = cancel_on_signals(cancel.clone());
    let result = run(args, cancel).await;
    signals.abort();
    result.map(drop)
}

/// Runs the command line's job; returns the pipeline (for its store) and the outcome.
///
/// The order makes every refusal cheap and leaves nothing half done: arguments and local
/// files, the store (one probe), the claim (the manifest, create-only), the inputs
/// (create-only, at exact keys), then the models and the render.
async fn run(
    args: GenerateArgs,
    cancel: CancellationToken,
) -> Result<(Pipeline, JobOutcome), String> {
    let plan = args.plan()?;
    if args.demo {
        eprintln!("note: {NOISE_WARNING}");
    }
    if args.store.trim_start().starts_with("memory:") && args.out.is_none() {
        eprintln!(
            "note: a memory:// store lives only while this command runs: the video is gone when \
             it exits (pass --out FILE to keep a copy)"
        );
    }
    let unusable = |e: StorageError| {
        format!(
            "the store {} cannot be used: {}",
            args.store,
            crate::report(&e)
        )
    };
    let storage = Storage::open(&args.store).map_err(unusable)?;
    storage.probe().await.map_err(unusable)?;
    let inputs = claim(&storage, &plan, args.resume).await?;

    eprintln!("loading the models on {} ...", plan.backend);
    let layout = plan.layout.clone();
    let backend = plan.backend;
    let builder_storage = storage.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        Pipeline::builder(backend, builder_storage)
            .weights(layout)
            .build()
    })
    .await
    .map_err(|e| crate::report(&e))?;
    let pipeline = match loaded {
        Ok(pipeline) => pipeline,
        Err(e) => {
            let text = format!("cannot load the models: {}", crate::report(&e));
            record_failure(&storage, &plan.job, &e).await;
            return Err(format!(
                "{text}\n(recorded in {} as failed; fix the weights and run the same command with --resume)",
                plan.job.manifest_key()
            ));
        }
    };

    let (bar, control) = progress_bar(args.quiet);
    let request = JobRequest::new(plan.job.clone(), plan.params.clone())
        .with_inputs(inputs)
        .with_claim(Claim::Existing);
    let result = pipeline
        .generate_with(&request, control.with_cancel(cancel))
        .await;
    bar.finish_and_clear();
    let outcome = result.map_err(|e| {
        let mut text = format!("generation failed: {}", crate::report(&e));
        text.push_str(&format!(
            "\n(recorded in {}; run the same command with --resume to try again)",
            plan.job.manifest_key()
        ));
        text
    })?;
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    report(&pipeline, &plan.job, &outcome, args.out.as_deref()).await?;
    if args.demo {
        eprintln!("note: {NOISE_WARNING}");
    }
    drop(plan.demo);
    Ok((pipeline, outcome))
}

/// Claims the job and uploads its inputs; returns their keys.
///
/// A new job is claimed by creating its manifest (create-only) before any input is written,
/// so a job id that exists is refused with every object as it was. Inputs are written
/// create-only at exact keys: bytes already there are fine if identical, refused otherwise.
/// With `resume` the job must exist and not have succeeded; its manifest is taken over by the
/// pipeline.
async fn claim(storage: &Storage, plan: &Plan, resume: bool) -> Result<JobInputs, String> {
    let job = &plan.job;
    if resume {
        match storage.read_manifest(job).await {
            Ok(manifest) if manifest.status == JobStatus::Succeeded => {
                return Err(format!(
                    "job {job} succeeded already (its video is {}); nothing was changed: there is \
                     nothing to resume",
                    job.video_key()
                ));
            }
            Ok(_) => {}
            Err(StorageError::NotFound { .. }) => {
                return Err(format!(
                    "job {job} does not exist: nothing to resume (drop --resume to start it)"
                ));
            }
            Err(e) => return Err(crate::report(&e)),
        }
    } else {
        let mut manifest = JobManifest::new(job.clone());
        manifest.parameters = serde_json::to_value(&plan.params).map_err(|e| e.to_string())?;
        manifest.seed = Some(plan.params.seed);
        match storage.create_manifest(&manifest).await {
            Ok(_) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(refusal(storage, job).await),
            Err(e) => return Err(format!("cannot claim job {job}: {}", crate::report(&e))),
        }
    }
    let mut keys = Vec::new();
    for (kind, input) in [
        (InputKind::Image, &plan.image),
        (InputKind::Audio, &plan.audio),
    ] {
        match upload(storage, job, kind, input).await {
            Ok(key) => keys.push(key),
            Err(text) => {
                if !resume {
                    // Release the claim: the refused job leaves the store as it was.
                    let _ = storage.outputs().delete(&job.manifest_key()).await;
                }
                return Err(text);
            }
        }
    }
    let audio = keys.pop().expect("two inputs");
    let image = keys.pop().expect("two inputs");
    Ok(JobInputs { image, audio })
}

/// Writes one input create-only at `inputs/{tenant}/{job}/{kind}.{ext}`; an object already
/// there must hold the same bytes.
async fn upload(
    storage: &Storage,
    job: &JobRef,
    kind: InputKind,
    input: &Input,
) -> Result<ObjectKey, String> {
    match storage
        .put_input_once(job, kind, &input.ext, input.bytes.clone().into())
        .await
    {
        Ok(key) => Ok(key),
        Err(StorageError::AlreadyExists { key, .. }) => Err(format!(
            "the {kind} input {key} exists with other content; nothing was changed \
             (use another --job, or the same {kind} file)"
        )),
        Err(e) => Err(format!(
            "cannot upload the {kind} input: {}",
            crate::report(&e)
        )),
    }
}

/// Why a job id that exists is refused, and what to do.
async fn refusal(storage: &Storage, job: &JobRef) -> String {
    let manifest = match storage.read_manifest(job).await {
        Ok(manifest) => manifest,
        Err(e) => {
            return format!(
                "job {job} exists, but its manifest cannot be read: {}; nothing was changed",
                crate::report(&e)
            );
        }
    };
    match manifest.status {
        JobStatus::Succeeded => format!(
            "job {job} exists and succeeded (its video is {}); nothing was changed: choose \
             another --job",
            job.video_key()
        ),
        JobStatus::Created | JobStatus::Running => format!(
            "job {job} is recorded as {} (attempt {}, since {}): another process is running it, \
             or one that was killed left it so. Nothing was changed. If no process runs it, \
             resume it: run the same command with --resume",
            manifest.status,
            manifest.attempt,
            manifest
                .started_at
                .unwrap_or(manifest.created_at)
                .format("%Y-%m-%d %H:%M:%S UTC")
        ),
        status => format!(
            "job {job} {status}{}. Nothing was changed. Run the same command with --resume to try \
             again, or choose another --job",
            manifest
                .error
                .map(|e| format!(": {}", e.message))
                .unwrap_or_default()
        ),
    }
}

/// Marks a claimed job failed with `error` (best effort: the command fails either way).
async fn record_failure(
    storage: &Storage,
    job: &JobRef,
    error: &(dyn std::error::Error + 'static),
) {
    if let Ok(mut manifest) = storage.read_manifest(job).await {
        manifest.mark_failed(JobFailure::from_error(error));
        if let Err(e) = storage.write_manifest(&manifest).await {
            eprintln!("warning: cannot record the failure of job {job}: {e}");
        }
    }
}

async fn report(
    pipeline: &Pipeline,
    job: &JobRef,
    outcome: &JobOutcome,
    out: Option<&Path>,
) -> Result<(), String> {
    let storage = pipeline.storage();
    let summary = &outcome.summary;
    println!("store:    {}", storage.outputs().store_url());
    println!(
        "video:    {} ({} frames, {}x{}, {:.2} s, {})",
        outcome.video.key,
        summary.frames,
        summary.width,
        summary.height,
        summary.duration_secs,
        human_bytes(summary.bytes)
    );
    println!("manifest: {}", job.manifest_key());
    println!(
        "memory:   estimated peak {} (largest stage: {})",
        human_bytes(outcome.estimate.total),
        outcome.estimate.peak_stage
    );
    // Stores that cannot sign (a local folder, memory) answer NotSupported: print nothing.
    if let Ok(signed) = storage.sign_video(job, Duration::from_secs(3600)).await {
        println!("url:      {} (valid 1 h)", signed.url);
    }
    if let Some(out) = out {
        let bytes = storage
            .outputs()
            .get_bytes(&outcome.video.key)
            .await
            .map_err(|e| crate::report(&e))?;
        std::fs::write(out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        println!("copied:   {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `sonic generate ARGS`, through the top-level command line.
    fn parse(args: &[&str]) -> Result<GenerateArgs, clap::Error> {
        let cli = crate::Cli::try_parse_from(
            ["sonic", "generate"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            crate::Command::Generate(args) => Ok(args),
            other => panic!("not `generate`: {other:?}"),
        }
    }

    #[test]
    fn demo_needs_no_inputs_and_uses_the_fixture_size() {
        let cli = parse(&["--demo"]).unwrap();
        assert_eq!(cli.store, "./sonic-data");
        let plan = cli.plan().unwrap();
        assert_eq!(plan.params.min_resolution, 64);
        assert_eq!(plan.params.face, demo::FACE);
        assert_eq!(plan.params.seed, GenerationParams::default().seed);
        assert_eq!(plan.image.ext, "png");
        assert_eq!(&plan.audio.bytes[..4], b"RIFF");
        assert!(plan.layout.unet.exists());
        assert_eq!(plan.job.to_string().split('/').next(), Some("local"));
        // Demo flags can still be overridden.
        let plan = parse(&["--demo", "--inference-steps", "3", "--whole-frame"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(plan.params.inference_steps, 3);
        assert_eq!(plan.params.face, FaceSpec::WholeFrame);
    }

    #[test]
    fn inputs_are_required_without_demo() {
        for args in [
            &["--image", "a.png", "--audio", "b.wav"][..],
            &["--image", "a.png", "--weights", "w"],
            &["--audio", "b.wav", "--weights", "w"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
        let err = parse(&["--demo", "--weights", "w"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        // The demo weights on the user's own picture: the file must exist.
        let err = parse(&["--demo", "--image", "/nonexistent/a.png"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("/nonexistent/a.png"), "{err}");
    }

    #[test]
    fn every_parameter_has_a_flag() {
        let cli = parse(&[
            "--image",
            "a.png",
            "--audio",
            "b.wav",
            "--weights",
            "w",
            "--duration",
            "12.5",
            "--min-resolution",
            "256",
            "--expand-ratio",
            "0.25",
            "--crop",
            "--inference-steps",
            "10",
            "--dynamic-scale",
            "1.5",
            "--motion-scale",
            "0.5",
            "--lip-sync-offset",
            "-0.08",
            "--audio-guidance",
            "5",
            "--image-guidance",
            "1.5",
            "--shift-offset",
            "3",
            "--decode-chunk-size",
            "4",
            "--no-interpolation",
            "--keep-resolution",
            "--fps",
            "30",
            "--seed",
            "0",
            "--memory-budget",
            "1.5G",
            "--face-box",
            "10,20,30,40",
        ])
        .unwrap();
        assert!(!cli.demo);
        let params = cli.params.apply(cli.base_params());
        let expected = GenerationParams {
            duration: Some(12.5),
            min_resolution: 256,
            expand_ratio: 0.25,
            crop: true,
            inference_steps: 10,
            dynamic_scale: 1.5,
            motion_scale: 0.5,
            lip_sync_offset: -0.08,
            audio_guidance: 5.0,
            image_guidance: 1.5,
            shift_offset: 3,
            decode_chunk_size: 4,
            interpolation: false,
            keep_resolution: true,
            fps: Some(30.0),
            seed: 0,
            memory_budget: Some(3 << 29),
            face: FaceSpec::Box {
                x: 10.0,
                y: 20.0,
                width: 30.0,
                height: 40.0,
            },
        };
        assert_eq!(params, expected);
        // Nothing given: Sonic's defaults.
        let cli = parse(&["--image", "a.png", "--audio", "b.wav", "--weights", "w"]).unwrap();
        assert_eq!(
            cli.params.apply(cli.base_params()),
            GenerationParams::default()
        );
    }

    #[test]
    fn bad_values_are_refused_before_loading() {
        // Out of range: refused by the parameters' own check, naming the parameter.
        let err = parse(&["--demo", "--inference-steps", "0"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("inference_steps"), "{err}");
        let err = parse(&["--demo", "--device", "tpu"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("tpu"), "{err}");
        let err = parse(&["--demo", "--dtype", "f8"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("f8"), "{err}");
        let err = parse(&["--demo", "--job", "../x"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("../x"), "{err}");
        // Negative or not whole: refused by clap with what is wrong (finding 9 of issue #13:
        // `--seed -1` and `--duration -5` gave "unexpected argument").
        let err = parse(&["--demo", "--seed", "-1"]).unwrap_err().to_string();
        assert!(err.contains("`-1` is negative"), "{err}");
        let err = parse(&["--demo", "--inference-steps", "2.5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a whole number"), "{err}");
        let err = parse(&["--demo", "--duration", "-5"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("duration"), "{err}");
        let err = parse(&["--demo", "--dynamic-scale", "-1"])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("dynamic_scale"), "{err}");
        assert!(parse(&["--demo", "--face-box", "1,2,3"]).is_err());
        assert!(parse(&["--demo", "--face-box", "1,2,3", "--whole-frame"]).is_err());
        // Missing weights are named before any upload.
        let err = parse(&[
            "--image",
            "a.png",
            "--audio",
            "b.wav",
            "--weights",
            "/nonexistent",
        ])
        .unwrap()
        .plan()
        .unwrap_err();
        assert!(err.contains("unet.pth"), "{err}");
    }

    #[test]
    fn a_bad_out_path_is_refused_before_any_compute() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder/video.mp4");
        let err = parse(&["--demo", "--out", missing.to_str().unwrap()])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("no-such-folder"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        let err = parse(&["--demo", "--out", dir.path().to_str().unwrap()])
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(err.contains("is a folder"), "{err}");
        // A bare file name is in the current folder, which exists.
        check_out(Path::new("video.mp4")).unwrap();
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("12g"), Ok(12 << 30));
        assert_eq!(parse_bytes("2K"), Ok(2048));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1G").is_err());
    }

    /// The whole demo path (upload, render, upload, report, copy) with 2 steps in memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_writes_a_video_and_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("demo.mp4");
        let out_arg = out.to_str().unwrap();
        let args = [
            "--demo",
            "--store",
            "memory://",
            "--quiet",
            "--inference-steps",
            "2",
        ];
        let cli = parse(&[&args[..], &["--job", "demo", "--out", out_arg]].concat()).unwrap();
        let (pipeline, outcome) = run(cli, CancellationToken::new()).await.unwrap();
        // 2.66 s of speech: 33 generated frames, 65 after RIFE, 67 to cover the audio at 25 fps.
        assert_eq!(outcome.summary.frames, 67);
        assert_eq!((outcome.summary.width, outcome.summary.height), (64, 64));
        assert!(outcome.summary.audio_frames > 0);
        let job = JobRef::parse("local", "demo").unwrap();
        let manifest = pipeline.storage().read_manifest(&job).await.unwrap();
        assert_eq!(manifest.status, sonic::storage::JobStatus::Succeeded);
        assert_eq!(manifest.seed, Some(72589));
        let video = std::fs::read(&out).unwrap();
        assert_eq!(video.len() as u64, outcome.summary.bytes);
        assert_eq!(&video[4..8], b"ftyp");
    }
}
