//! The job service on the command line: `sonic worker`, `submit`, `status`, `cancel`, `jobs`.
//!
//! ```text
//! nats-server -js &                                   # or a cluster, see docs/service.md
//! sonic worker --nats nats://127.0.0.1:4222 --store ./sonic-data --demo &
//! sonic submit --nats nats://127.0.0.1:4222 --store ./sonic-data --demo --job hello \
//!     --inference-steps 2 --wait
//! sonic status --job hello
//! ```
//!
//! Every flag also reads an environment variable: `SONIC_NATS`, `SONIC_STORE`, `SONIC_TENANT`,
//! `SONIC_WEIGHTS`, `SONIC_DEVICE`, `SONIC_DTYPE`, `SONIC_WORKER`, `SONIC_ACK_WAIT_SECS`,
//! `SONIC_MAX_DELIVERIES`, `SONIC_METRICS`, `SONIC_URL_INPUTS`; `SONIC_LOG` sets the worker's log level (default
//! `info`).

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use sonic::backends::BackendChoice;
use sonic::pipeline::{GenerationParams, Pipeline, WeightsLayout};
use sonic::storage::{JobRef, Storage, TenantId};
use sonic_service::{
    CancellationToken, JobPhase, JobState, Metrics, PipelineHandler, Queue, QueueConfig, Reaper,
    UploadInput, UrlInputs, Worker, submit_job,
};

use crate::demo::{self, DemoWeights};
use crate::generate::ParamArgs;
use crate::input::Input;

/// Where the queue and the store are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Connection {
    /// The NATS server (JetStream on): one URL, or several separated by commas.
    #[arg(long, env = "SONIC_NATS", default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats: String,
    /// The job store: a folder, file:///..., s3://bucket/prefix, oss://..., gs://...
    #[arg(long, env = "SONIC_STORE", default_value = "./sonic-data")]
    pub(crate) store: String,
    /// Seconds a worker keeps a job without renewing its lease before the queue gives the job
    /// to another worker. Part of the queue's configuration: every process of a deployment
    /// must use the same value.
    #[arg(long, env = "SONIC_ACK_WAIT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    ack_wait_secs: u64,
    /// Deliveries of a job before it is given up. Part of the queue's configuration, like
    /// --ack-wait-secs.
    #[arg(long, env = "SONIC_MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_deliveries: u32,
}

impl Connection {
    pub(crate) async fn queue(&self) -> Result<Queue, String> {
        let config = QueueConfig {
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            max_deliveries: self.max_deliveries,
            ..QueueConfig::default()
        };
        Queue::connect(&self.nats, config)
            .await
            .map_err(|e| format!("the queue at {}: {}", self.nats, crate::report(&e)))
    }

    pub(crate) fn storage(&self) -> Result<Storage, String> {
        Storage::open(&self.store)
            .map_err(|e| format!("the store {}: {}", self.store, crate::report(&e)))
    }
}

/// Take jobs from the queue and render them, one at a time, until SIGINT or SIGTERM.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    connection: Connection,
    /// Use the tiny random demo weights (the videos are noise).
    #[arg(long, conflicts_with = "weights")]
    demo: bool,
    /// The released checkpoints folder (layout in docs/pipeline.md).
    #[arg(long, env = "SONIC_WEIGHTS", required_unless_present = "demo")]
    weights: Option<PathBuf>,
    /// Compute device: cpu, wgpu, wgpu:N, cuda, cuda:N or auto; several separated by commas
    /// (`cuda:0,cuda:1`) run one job per device at once, each with its own copy of the models.
    #[arg(long, env = "SONIC_DEVICE", default_value = "auto")]
    device: String,
    /// Precision of the large models: f32, f16 or bf16.
    #[arg(long, env = "SONIC_DTYPE", default_value = "f32")]
    dtype: String,
    /// This worker's name on the job board [default: worker-<host>-<pid>].
    #[arg(long, env = "SONIC_WORKER")]
    name: Option<String>,
    /// On SIGINT/SIGTERM, how long the job in hand may take to finish before it is handed
    /// back to the queue (seconds).
    #[arg(long, default_value_t = 0)]
    grace_secs: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a
    /// free one and prints it).
    #[arg(long, env = "SONIC_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// Inputs given by URL in a job: `public` (download http(s) URLs, except loopback, private
    /// and link-local addresses), `any` (loopback too: tests, trusted networks) or `off`.
    #[arg(long, env = "SONIC_URL_INPUTS", default_value = "public", value_parser = ["public", "any", "off"])]
    url_inputs: String,
}

/// Upload a job's inputs to the store and put the job on the queue.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    connection: Connection,
    /// The demo's size and face box, and the bundled sample portrait and speech unless
    /// --image/--audio name others.
    #[arg(long)]
    demo: bool,
    /// The portrait (PNG, JPEG or WebP).
    #[arg(long, required_unless_present = "demo")]
    image: Option<PathBuf>,
    /// The speech (WAV, MP3, FLAC, AAC/M4A or Ogg Vorbis).
    #[arg(long, required_unless_present = "demo")]
    audio: Option<PathBuf>,
    /// Tenant of the job.
    #[arg(long, env = "SONIC_TENANT", default_value = "local")]
    tenant: String,
    /// Job id.
    #[arg(long)]
    job: String,
    /// Follow the job until it ends, then print its video's key and signed link.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    params: ParamArgs,
}

/// Which job.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    connection: Connection,
    /// Tenant of the job.
    #[arg(long, env = "SONIC_TENANT", default_value = "local")]
    tenant: String,
    /// Job id.
    #[arg(long)]
    job: String,
}

/// Which tenant.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    connection: Connection,
    /// The tenant whose jobs to list.
    #[arg(long, env = "SONIC_TENANT", default_value = "local")]
    tenant: String,
}

/// Runs `sonic worker`.
///
/// # Errors
/// A message for a bad argument, an unreachable queue or store, or weights that do not load.
pub async fn worker(args: WorkerArgs) -> Result<(), String> {
    init_logs();
    let devices: Vec<&str> = args.device.split(',').map(str::trim).collect();
    let backends = devices
        .iter()
        .map(|device| BackendChoice::parse(device, &args.dtype).map_err(|e| crate::report(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    let (layout, _demo) = if args.demo {
        let weights = DemoWeights::unpack()?;
        (weights.layout().clone(), Some(weights))
    } else {
        let dir = args
            .weights
            .clone()
            .ok_or("--weights or --demo is required")?;
        let layout = WeightsLayout::released(dir);
        layout.check().map_err(|e| crate::report(&e))?;
        (layout, None)
    };
    let storage = args.connection.storage()?;
    storage.probe().await.map_err(|e| {
        format!(
            "the store {} cannot be used: {}",
            args.connection.store,
            crate::report(&e)
        )
    })?;
    let queue = args.connection.queue().await?;
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("worker-{}-{}", host.trim(), std::process::id())
    });
    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let signals = stop_on_signals(stop.clone());

    // One worker (consumer) per device, each with its own copy of the models.
    let mut workers = Vec::new();
    for (index, (device, backend)) in devices.iter().zip(backends).enumerate() {
        let worker_name = match devices.len() {
            1 => name.clone(),
            _ if devices[..index].contains(device) => format!("{name}/{device}#{index}"),
            _ => format!("{name}/{device}"),
        };
        eprintln!("loading the models on {backend} ...");
        let storage = storage.clone();
        let layout = layout.clone();
        let pipeline = tokio::task::spawn_blocking(move || {
            Pipeline::builder(backend, storage).weights(layout).build()
        })
        .await
        .map_err(|e| crate::report(&e))?
        .map_err(|e| format!("cannot load the models: {}", crate::report(&e)))?;
        eprintln!(
            "worker {worker_name} takes jobs from {} ({})",
            args.connection.nats,
            pipeline.description()
        );
        let handler = PipelineHandler::new(pipeline, &queue, worker_name.clone())
            .with_metrics(metrics.clone())
            .with_url_inputs(match args.url_inputs.as_str() {
                "any" => UrlInputs::Any,
                "off" => UrlInputs::Refused,
                _ => UrlInputs::Public,
            });
        workers.push(
            Worker::new(&queue, worker_name, handler)
                .with_grace(Duration::from_secs(args.grace_secs))
                .with_metrics(metrics.clone()),
        );
    }
    let endpoint = match args.metrics {
        Some(addr) => Some(serve_metrics(addr, metrics.clone(), stop.clone()).await?),
        None => None,
    };
    // Jobs whose last delivery ran out of time (a hung or killed worker) are recorded failed.
    let reaper = Reaper::new(&queue, Some(storage.clone()), name.clone());
    let reaping = tokio::spawn({
        let stop = stop.clone();
        async move { reaper.run(stop).await }
    });
    eprintln!("Ctrl-C stops the worker");
    let all =
        futures::future::join_all(workers.iter().map(|worker| worker.run(stop.clone()))).await;
    stop.cancel();
    signals.abort();
    let _ = reaping.await;
    if let Some(endpoint) = endpoint {
        let _ = endpoint.await;
    }
    let (mut succeeded, mut failed, mut retried, mut handed_back) = (0, 0, 0, 0);
    for stats in &all {
        succeeded += stats.succeeded;
        failed += stats.failed + stats.exhausted + stats.poison;
        retried += stats.retried;
        handed_back += stats.handed_back;
    }
    eprintln!(
        "worker {name} stopped: {succeeded} succeeded, {failed} failed, {retried} retried, \
         {handed_back} handed back"
    );
    Ok(())
}

/// Serves `metrics` at `http://{addr}/metrics` until `stop`; prints the address it listens on.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    eprintln!("metrics: http://{bound}/metrics");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            eprintln!("the metrics endpoint stopped: {e}");
        }
    }))
}

/// A worker logs what it does (one line per job event) on stderr, at the level of `SONIC_LOG`
/// (`error`, `warn`, `info`, `debug`, `trace`; default `info`).
pub(crate) fn init_logs() {
    let level = std::env::var("SONIC_LOG")
        .ok()
        .and_then(|level| {
            level
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .ok()
        })
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Cancels `stop` on the first SIGINT or SIGTERM.
pub(crate) fn stop_on_signals(stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if crate::generate::signal().await.is_ok() {
            eprintln!(
                "stopping: the job in hand is finished within the grace period or handed back"
            );
            stop.cancel();
        }
    })
}

/// Runs `sonic submit`.
///
/// # Errors
/// A message for a bad argument, an unreachable queue or store, a job id that finished, or
/// (with `--wait`) a job that did not succeed.
pub async fn submit(args: SubmitArgs) -> Result<(), String> {
    let job = JobRef::parse(&args.tenant, &args.job).map_err(|e| crate::report(&e))?;
    let base = if args.demo {
        demo::params(args.image.is_some())
    } else {
        GenerationParams::default()
    };
    let params = args.params.apply(base);
    params.validate().map_err(|e| crate::report(&e))?;
    // clap requires both files without --demo; with it, each defaults to the bundled sample.
    let image: UploadInput = Input::or_sample(args.image.as_deref(), demo::PORTRAIT, "png")?.into();
    let audio: UploadInput = Input::or_sample(args.audio.as_deref(), demo::SPEECH, "wav")?.into();
    let storage = args.connection.storage()?;
    let queue = args.connection.queue().await?;
    let parameters = serde_json::to_value(&params).map_err(|e| e.to_string())?;
    let submission = submit_job(&queue, &storage, &job, image, audio, parameters)
        .await
        .map_err(|e| crate::report(&e))?;
    if submission.submitted.duplicate {
        println!("job:      {job} (on the queue already)");
    } else {
        println!("job:      {job}");
    }
    if !args.wait {
        return Ok(());
    }
    let state = follow(&queue, &job).await?;
    match state.state {
        JobPhase::Succeeded => {
            println!("video:    {}", job.video_key());
            match storage.sign_video(&job, Duration::from_secs(3600)).await {
                Ok(signed) => println!("url:      {} (valid 1 h)", signed.url),
                // A folder store cannot sign links: its video is a file.
                Err(_) => {
                    if let Some(path) = local_file(&args.connection.store, job.video_key().as_str())
                    {
                        println!("file:     {}", path.display());
                    }
                }
            }
            Ok(())
        }
        phase => Err(format!(
            "job {job} ended {}{}",
            phase_name(phase),
            state.error.map(|e| format!(": {e}")).unwrap_or_default()
        )),
    }
}

/// The file behind `key` when `store` is a folder (`./sonic-data`, `file:///...`).
fn local_file(store: &str, key: &str) -> Option<PathBuf> {
    let root = match store.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None if !store.contains("://") => PathBuf::from(store),
        None => return None,
    };
    let path = root.join(key);
    Some(std::path::absolute(&path).unwrap_or(path))
}

/// Follows the job's board entry until it is terminal, with a progress line.
async fn follow(queue: &Queue, job: &JobRef) -> Result<JobState, String> {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix:>10} [{bar:30}] {pos}/{len} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut updates = queue
        .board()
        .watch(job)
        .await
        .map_err(|e| crate::report(&e))?;
    while let Some(update) = updates.next().await {
        let (state, _) = update.map_err(|e| crate::report(&e))?;
        bar.set_prefix(
            state
                .stage
                .clone()
                .unwrap_or_else(|| phase_name(state.state).into()),
        );
        bar.set_length(u64::from(state.total.unwrap_or(1).max(1)));
        bar.set_position(u64::from(state.step.unwrap_or(0)));
        let mut message = format!("attempt {}", state.attempt);
        if let Some(worker) = &state.worker {
            message.push_str(&format!(" on {worker}"));
        }
        if let Some(eta) = state.eta_secs {
            message.push_str(&format!(" eta {eta:.0}s"));
        }
        bar.set_message(message);
        if state.is_terminal() {
            bar.finish_and_clear();
            return Ok(state);
        }
    }
    bar.finish_and_clear();
    Err(format!("lost the job board while following {job}"))
}

fn phase_name(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Queued => "queued",
        JobPhase::Running => "running",
        JobPhase::Succeeded => "succeeded",
        JobPhase::Failed => "failed",
        JobPhase::Cancelled => "cancelled",
    }
}

/// Runs `sonic status`.
///
/// # Errors
/// A message for an unknown job or an unreachable queue.
pub async fn status(args: JobArgs) -> Result<(), String> {
    let job = JobRef::parse(&args.tenant, &args.job).map_err(|e| crate::report(&e))?;
    let queue = args.connection.queue().await?;
    let (state, revision) = queue
        .board()
        .get(&job)
        .await
        .map_err(|e| crate::report(&e))?;
    println!("job:      {job}");
    println!(
        "state:    {} (attempt {}, revision {revision})",
        phase_name(state.state),
        state.attempt
    );
    if let Some(worker) = &state.worker {
        println!("worker:   {worker}");
    }
    if let (Some(stage), Some(step), Some(total)) = (&state.stage, state.step, state.total) {
        println!("progress: {stage} {step}/{total}");
    }
    if let Some(error) = &state.error {
        println!("error:    {error}");
    }
    if state.cancel_requested && !state.is_terminal() {
        println!("cancel:   requested");
    }
    Ok(())
}

/// Runs `sonic cancel`.
///
/// # Errors
/// A message for an unknown job or an unreachable queue.
pub async fn cancel(args: JobArgs) -> Result<(), String> {
    let job = JobRef::parse(&args.tenant, &args.job).map_err(|e| crate::report(&e))?;
    let queue = args.connection.queue().await?;
    let (state, _) = queue
        .board()
        .request_cancel(&job)
        .await
        .map_err(|e| crate::report(&e))?;
    if state.is_terminal() {
        println!(
            "job {job} is {} already: nothing to cancel",
            phase_name(state.state)
        );
    } else {
        println!("job {job}: cancellation requested (it stops at its next window)");
    }
    Ok(())
}

/// Runs `sonic jobs`.
///
/// # Errors
/// A message for a bad tenant or an unreachable queue.
pub async fn jobs(args: JobsArgs) -> Result<(), String> {
    let tenant = TenantId::new(&args.tenant).map_err(|e| crate::report(&e))?;
    let queue = args.connection.queue().await?;
    let entries = queue
        .board()
        .list(&tenant)
        .await
        .map_err(|e| crate::report(&e))?;
    for entry in entries {
        println!(
            "{:<40} {:<10} attempt {}",
            entry.job.job.as_str(),
            phase_name(entry.state.state),
            entry.state.attempt
        );
    }
    Ok(())
}
