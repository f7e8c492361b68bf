//! Jobs per minute of the job service: 1, 2 and 3 in-process [`Worker`]s (each with a
//! [`PipelineHandler`]) on the fixtures' demo weights, against the same jobs run one after
//! another through [`Pipeline::generate`], and the queue's overhead per job. A plain `main`
//! (`harness = false`): a minutes-long throughput run does not fit criterion's sampling.
//!
//! ```sh
//! cargo bench -p sonic-service --bench jobs_per_minute                     # 12 jobs; 1, 2, 3 workers
//! cargo bench -p sonic-service --bench jobs_per_minute -- --jobs 24 --workers 1,2,3,4
//! cargo test  -p sonic-service --bench jobs_per_minute -- --quick          # CI smoke (dev profile)
//! ```
//!
//! Options (environment in brackets): `--jobs N` [`SONIC_BENCH_JOBS`], default 12;
//! `--workers 1,2,3` [`SONIC_BENCH_WORKERS`]; `--steps S` [`SONIC_BENCH_STEPS`], default 2;
//! `--quick` [`SONIC_BENCH_QUICK=1`]: 3 jobs, 1 and 2 workers. `--bench` / `--test` (what cargo
//! and criterion users pass) are accepted; `--test` means `--quick`.
//!
//! What runs: a throw-away `nats-server -js` on a loopback port (`testing::NatsServer`), a local
//! directory as the job store, the demo pipeline loaded once (CPU, f32). Every job is the
//! golden end-to-end fixture (64x64 portrait with its face box, 1 s of speech, `--steps` steps).
//!
//! 1. **sequential**: one untimed warm-up job, then N jobs one after another: upload the two
//!    inputs, [`Pipeline::generate`].
//! 2. **k workers** (k in `--workers`): k workers, each on its own NATS connection, idle on the
//!    queue; N jobs submitted back to back with [`submit_job`]; wall time from the first
//!    `submit_job` call to the last job's `Succeeded` board entry seen by a watch.
//!
//! Per job, every board revision is seen live by a [`JobBoard::watch`](sonic_service::JobBoard)
//! started before submission; times come from the entries' `updated_at` (the worker's wall
//! clock, the same process's clock as the submitter's):
//!
//! - *submit→start*: from the `submit_job` call to the job's first `Running` entry (with fewer
//!   workers than jobs, mostly the wait for a free worker);
//! - *pickup*: from the later of (the `submit_job` call, the same worker's previous job's
//!   `Succeeded` entry) to `Running`: what a job waits with a free worker (the submission's
//!   uploads and publish, or the previous job's ack; the pull; the board's take);
//! - *job s*: `Running` to `Succeeded` (the pipeline, with the handler's board writes).
//!
//! The queue's messages are counted by a *tap*: a plain core-NATS subscriber to `$JS.ACK.>`,
//! `$JS.API.>` and `$KV.>` on its own connection, which gets a copy of every acknowledgement
//! (`+WPI` = lease renewal, `+ACK`), pull request, board read (direct get) and board write
//! that any client publishes. *Worker NATS msgs*: messages sent plus received on the worker
//! connections (the client's own counters: also the deliveries, replies and idle pull
//! expiries). All per job: the phase's count divided by N.
//!
//! *CPU s/job*: user + system seconds of this process (the pipeline and every client) during
//! the run, per job, from `/proc/self/stat`; *cores busy*: those seconds over the wall time;
//! *nats-server CPU*: the same for the server process.
//!
//! Every wait is bounded; the bench exits non-zero if a job does not succeed exactly once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sonic::backends::BackendChoice;
use sonic::pipeline::{GenerationParams, JobRequest, Pipeline, WeightsSource};
use sonic::storage::{InputKind, Storage};
use sonic_service::testing::NatsServer;
use sonic_service::{
    CancellationToken, JobPhase, JobRef, PipelineHandler, Queue, QueueConfig, UploadInput, Worker,
    WorkerStats, submit_job,
};

/// The tenant of every bench job.
const TENANT: &str = "bench";
/// The longest any single job may take (sequential run), and the floor of a phase's limit.
const JOB_LIMIT: Duration = Duration::from_secs(300);
/// Connecting, submitting one job, stopping the workers: each bounded by this.
const STEP_LIMIT: Duration = Duration::from_secs(30);

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
struct Options {
    jobs: usize,
    workers: Vec<usize>,
    steps: u32,
    quick: bool,
}

const USAGE: &str = "usage: jobs_per_minute [--quick] [--jobs N] [--workers 1,2,3] [--steps S]";

fn parse_workers(text: &str) -> Result<Vec<usize>> {
    let workers: Vec<usize> = text
        .split(',')
        .map(|w| w.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("--workers {text:?}: {e}"))?;
    if workers.is_empty() || workers.contains(&0) {
        return Err(format!("--workers {text:?}: give counts of 1 or more").into());
    }
    Ok(workers)
}

fn options() -> Result<Options> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut quick = env("SONIC_BENCH_QUICK").is_some_and(|v| v != "0");
    let mut jobs = env("SONIC_BENCH_JOBS")
        .map(|v| v.parse::<usize>())
        .transpose()?;
    let mut workers = env("SONIC_BENCH_WORKERS")
        .map(|v| parse_workers(&v))
        .transpose()?;
    let mut steps = env("SONIC_BENCH_STEPS")
        .map(|v| v.parse::<u32>())
        .transpose()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--quick" | "--test" => quick = true,
            "--jobs" => jobs = Some(value("--jobs")?.parse()?),
            "--workers" => workers = Some(parse_workers(&value("--workers")?)?),
            "--steps" => steps = Some(value("--steps")?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let options = Options {
        jobs: jobs.unwrap_or(if quick { 3 } else { 12 }),
        workers: workers.unwrap_or_else(|| if quick { vec![1, 2] } else { vec![1, 2, 3] }),
        steps: steps.unwrap_or(2),
        quick,
    };
    if options.jobs == 0 || options.steps == 0 {
        return Err("--jobs and --steps must be at least 1".into());
    }
    Ok(options)
}

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

/// The job parameters: the golden fixture's portrait with its face box, 1 s of speech.
fn parameters(steps: u32) -> serde_json::Value {
    serde_json::json!({
        "min_resolution": 64,
        "inference_steps": steps,
        "duration": 1.0,
        "face": {"mode": "box", "x": 18.6, "y": 12.3, "width": 27.2, "height": 33.9},
    })
}

struct Inputs {
    image: bytes::Bytes,
    audio: bytes::Bytes,
}

impl Inputs {
    fn read() -> Result<Self> {
        let read = |path: &str| -> Result<bytes::Bytes> {
            Ok(std::fs::read(golden().join(path))
                .map_err(|e| format!("read fixture {path}: {e}"))?
                .into())
        };
        Ok(Self {
            image: read("pipeline_e2e/portrait.png")?,
            audio: read("pipeline_e2e/speech.wav")?,
        })
    }

    fn uploads(&self) -> (UploadInput, UploadInput) {
        (
            UploadInput {
                bytes: self.image.clone(),
                ext: "png".into(),
            },
            UploadInput {
                bytes: self.audio.clone(),
                ext: "wav".into(),
            },
        )
    }
}

/// `/proc/cpuinfo`'s model name and processor count, `/proc/meminfo`'s total.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.0}", kib / 1024.0 / 1024.0),
        );
    format!("{model}, {cpus} logical CPUs, {mem_gib} GiB RAM")
}

/// The 1-minute load average (`/proc/loadavg`).
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system, all threads) of process `pid` so far, from `/proc/<pid>/stat`
/// (in clock ticks of 1/100 s, Linux's `USER_HZ`); NaN where it cannot be read.
fn cpu_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// CPU seconds of this process and of the nats-server.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    bench: f64,
    server: f64,
}

impl Cpu {
    fn now(server: Option<&NatsServer>) -> Self {
        Self {
            bench: cpu_seconds("self"),
            server: server.map_or(f64::NAN, |s| cpu_seconds(&s.pid().to_string())),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            bench: self.bench - before.bench,
            server: self.server - before.server,
        }
    }
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().map_or(f64::NAN, |us| us as f64 / 1e6)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("timed out after {limit:?}: {what}").into())
}

/// [`Queue::connect`], retried twice on failure (each try bounded).
async fn connect(url: &str) -> Result<Queue> {
    let mut last = None;
    for _ in 0..3 {
        match within(
            "connect",
            STEP_LIMIT,
            Queue::connect(url, QueueConfig::default()),
        )
        .await
        {
            Ok(Ok(queue)) => return Ok(queue),
            Ok(Err(e)) => last = Some(Error::from(e)),
            Err(e) => last = Some(e),
        }
        eprintln!(
            "connect failed ({}); retrying",
            last.as_ref().expect("an error")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.expect("an error"))
}

/// The demo models on the CPU in f32, loaded once.
async fn load_pipeline() -> Result<Pipeline> {
    let cpu = BackendChoice::parse("cpu", "f32")?;
    let pipeline = Pipeline::builder(cpu, Storage::open("memory://")?)
        .weights(WeightsSource::demo(golden()))
        .build_async()
        .await?;
    Ok(pipeline)
}

fn job_ref(phase: &str, i: usize) -> Result<JobRef> {
    Ok(JobRef::parse(TENANT, &format!("{phase}-{i:03}"))?)
}

/// One job through `Pipeline::generate`, as a caller without the queue runs it: upload the
/// inputs, generate. Returns its wall time.
async fn generate_one(
    pipeline: &Pipeline,
    inputs: &Inputs,
    params: &GenerationParams,
    job: &JobRef,
) -> Result<f64> {
    let storage = pipeline.storage();
    let started = Instant::now();
    storage
        .put_input_create_only(job, InputKind::Image, "png", inputs.image.clone())
        .await?;
    storage
        .put_input_create_only(job, InputKind::Audio, "wav", inputs.audio.clone())
        .await?;
    let request = JobRequest::new(job.clone(), params.clone());
    within(
        &format!("generate {job}"),
        JOB_LIMIT,
        pipeline.generate(&request),
    )
    .await??;
    Ok(started.elapsed().as_secs_f64())
}

struct Sequential {
    wall: f64,
    per_job: Vec<f64>,
    load: (f64, f64),
    cpu: Cpu,
}

async fn sequential(
    pipeline: &Pipeline,
    inputs: &Inputs,
    options: &Options,
    root: &std::path::Path,
) -> Result<Sequential> {
    let dir = root.join("sequential");
    std::fs::create_dir_all(&dir)?;
    let pipeline = pipeline
        .clone()
        .with_storage(Storage::open(dir.to_str().ok_or("non-UTF-8 temp dir")?)?);
    let params: GenerationParams = serde_json::from_value(parameters(options.steps))?;
    params.validate()?;
    let warm = generate_one(&pipeline, inputs, &params, &job_ref("warmup", 0)?).await?;
    eprintln!("warm-up job: {warm:.2} s");
    let load_before = load();
    let cpu_before = Cpu::now(None);
    let started = Instant::now();
    let mut per_job = Vec::with_capacity(options.jobs);
    for i in 0..options.jobs {
        let seconds = generate_one(&pipeline, inputs, &params, &job_ref("seq", i)?).await?;
        eprintln!(
            "  sequential job {}/{}: {seconds:.2} s",
            i + 1,
            options.jobs
        );
        per_job.push(seconds);
    }
    Ok(Sequential {
        wall: started.elapsed().as_secs_f64(),
        per_job,
        load: (load_before, load()),
        cpu: Cpu::now(None).since(cpu_before),
    })
}

/// What a job's board watch saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    revisions: u32,
    worker: Option<String>,
    attempts: u32,
    running_at: Option<DateTime<Utc>>,
    done_at: Option<DateTime<Utc>>,
    done_seen: Option<Instant>,
    phase: Option<JobPhase>,
}

/// Watches `job`'s board entry until it is terminal (bounded by the caller).
async fn watch(queue: Queue, job: JobRef) -> Result<Seen> {
    let mut stream = queue.board().watch(&job).await?;
    let mut seen = Seen::default();
    while let Some(entry) = stream.next().await {
        let (state, _revision) = entry?;
        seen.revisions += 1;
        if state.state == JobPhase::Running && seen.running_at.is_none() {
            seen.running_at = Some(state.updated_at);
            seen.worker.clone_from(&state.worker);
        }
        seen.attempts = seen.attempts.max(state.attempt);
        if state.is_terminal() {
            seen.done_at = Some(state.updated_at);
            seen.done_seen = Some(Instant::now());
            seen.phase = Some(state.state);
            return Ok(seen);
        }
    }
    Err(format!("the board watch of {job} ended before the job finished").into())
}

#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    messages: u64,
    bytes: u64,
}

fn traffic(queues: &[Queue]) -> Traffic {
    queues.iter().fold(Traffic::default(), |acc, q| {
        let s = q.client().statistics();
        Traffic {
            messages: acc.messages
                + s.in_messages.load(Ordering::Relaxed)
                + s.out_messages.load(Ordering::Relaxed),
            bytes: acc.bytes
                + s.in_bytes.load(Ordering::Relaxed)
                + s.out_bytes.load(Ordering::Relaxed),
        }
    })
}

/// What the tap counts, by subject (and for acknowledgements, by payload).
#[derive(Debug, Default, Clone, Copy)]
struct Taps {
    /// `+WPI` on `$JS.ACK.>`: lease renewals (`AckKind::Progress`).
    renewals: u64,
    /// `+ACK` on `$JS.ACK.>`: final acknowledgements.
    acks: u64,
    /// Any other acknowledgement (`-NAK`, `+TERM`, `+NXT`).
    other_acks: u64,
    /// `$JS.API.CONSUMER.MSG.NEXT.>`: pull requests.
    pulls: u64,
    /// `$JS.API.DIRECT.GET.>`: board reads.
    board_reads: u64,
    /// `$KV.>`: board writes (create and compare-and-set updates).
    board_writes: u64,
    /// Any other JetStream API request.
    other_api: u64,
}

impl std::ops::Sub for Taps {
    type Output = Taps;
    fn sub(self, o: Taps) -> Taps {
        Taps {
            renewals: self.renewals - o.renewals,
            acks: self.acks - o.acks,
            other_acks: self.other_acks - o.other_acks,
            pulls: self.pulls - o.pulls,
            board_reads: self.board_reads - o.board_reads,
            board_writes: self.board_writes - o.board_writes,
            other_api: self.other_api - o.other_api,
        }
    }
}

/// A plain core-NATS subscriber to `$JS.ACK.>`, `$JS.API.>` and `$KV.>` on its own
/// connection: it receives a copy of every acknowledgement, JetStream API request and KV write
/// any client publishes (the server still handles them as usual), and counts them.
struct Tap {
    client: sonic_service::async_nats::Client,
    counts: std::sync::Arc<std::sync::Mutex<Taps>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tap {
    async fn start(url: &str) -> Result<Self> {
        let client = within(
            "connect the tap",
            STEP_LIMIT,
            sonic_service::async_nats::connect(url),
        )
        .await??;
        let counts = std::sync::Arc::new(std::sync::Mutex::new(Taps::default()));
        let mut tasks = Vec::new();
        for subject in ["$JS.ACK.>", "$JS.API.>", "$KV.>"] {
            let mut subscriber = client.subscribe(subject).await?;
            let counts = counts.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    let subject = message.subject.as_str();
                    let mut c = counts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if subject.starts_with("$JS.ACK.") {
                        match &message.payload[..] {
                            b"+WPI" => c.renewals += 1,
                            b"+ACK" => c.acks += 1,
                            _ => c.other_acks += 1,
                        }
                    } else if subject.starts_with("$JS.API.CONSUMER.MSG.NEXT.") {
                        c.pulls += 1;
                    } else if subject.starts_with("$JS.API.DIRECT.GET.") {
                        c.board_reads += 1;
                    } else if subject.starts_with("$KV.") {
                        c.board_writes += 1;
                    } else {
                        c.other_api += 1;
                    }
                }
            }));
        }
        within("flush the tap", STEP_LIMIT, client.flush()).await??;
        Ok(Self {
            client,
            counts,
            tasks,
        })
    }

    /// The counts so far, after letting in-flight copies arrive (a round trip to the server
    /// and a short pause).
    async fn snapshot(&self) -> Result<Taps> {
        within("flush the tap", STEP_LIMIT, self.client.flush()).await??;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(*self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Consumer {
    delivered: u64,
    redelivered: usize,
    ack_pending: usize,
}

async fn consumer(queue: &Queue) -> Result<Consumer> {
    let config = queue.config();
    let stream = queue.jetstream().get_stream(config.stream.as_str()).await?;
    let info = stream.consumer_info(config.consumer.as_str()).await?;
    Ok(Consumer {
        delivered: info.delivered.consumer_sequence,
        redelivered: info.num_redelivered,
        ack_pending: info.num_ack_pending,
    })
}

struct Queued {
    workers: usize,
    wall: f64,
    submit: Vec<f64>,
    submit_to_start: Vec<f64>,
    pickup: Vec<f64>,
    render: Vec<f64>,
    revisions: u64,
    taps: Taps,
    traffic: Traffic,
    deliveries: u64,
    redelivered: usize,
    unacked: usize,
    load: (f64, f64),
    cpu: Cpu,
    stats: Vec<WorkerStats>,
}

/// What every queued run shares.
struct Setup<'a> {
    pipeline: &'a Pipeline,
    inputs: &'a Inputs,
    options: &'a Options,
    server: &'a NatsServer,
    tap: &'a Tap,
    root: &'a std::path::Path,
    /// The submitter's and the watches' connection.
    client: &'a Queue,
    /// One connection per worker (as separate processes would have), made once: the runs use
    /// the first k.
    worker_queues: &'a [Queue],
}

async fn queued(setup: &Setup<'_>, workers: usize, limit: Duration) -> Result<Queued> {
    let Setup {
        pipeline,
        inputs,
        options,
        server,
        tap,
        root,
        client,
        ..
    } = *setup;
    let config = client.config().clone();
    let dir = root.join(format!("workers-{workers}"));
    std::fs::create_dir_all(&dir)?;
    let storage = Storage::open(dir.to_str().ok_or("non-UTF-8 temp dir")?)?;
    let phase = format!("w{workers}");
    let jobs: Vec<JobRef> = (0..options.jobs)
        .map(|i| job_ref(&phase, i))
        .collect::<Result<_>>()?;

    // The workers, each on its own connection (as separate processes would be).
    let worker_queues = &setup.worker_queues[..workers];
    let stop = CancellationToken::new();
    let running: Vec<_> = worker_queues
        .iter()
        .enumerate()
        .map(|(w, queue)| {
            let name = format!("{phase}-worker-{w}");
            let handler =
                PipelineHandler::new(pipeline.clone().with_storage(storage.clone()), queue, &name);
            let worker = Worker::new(queue, name, handler);
            let stop = stop.clone();
            tokio::spawn(async move { worker.run(stop).await })
        })
        .collect();

    // Watches first, so that every revision is seen live.
    let watches: Vec<_> = jobs
        .iter()
        .map(|job| tokio::spawn(watch(client.clone(), job.clone())))
        .collect();
    // Let the watches subscribe and the workers' pull requests reach the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = consumer(client).await?;
    let taps_before = tap.snapshot().await?;
    let traffic_before = traffic(worker_queues);
    let load_before = load();
    let cpu_before = Cpu::now(Some(server));

    let params = parameters(options.steps);
    let started = Instant::now();
    let mut submitted_at = HashMap::new();
    let mut submit = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let (image, audio) = inputs.uploads();
        let called = Utc::now();
        let t = Instant::now();
        let submission = within(
            &format!("submit {job}"),
            STEP_LIMIT,
            submit_job(client, &storage, job, image, audio, params.clone()),
        )
        .await??;
        submit.push(t.elapsed().as_secs_f64());
        if !submission.created || submission.submitted.duplicate {
            return Err(format!("{job} was not a new job: {submission:?}").into());
        }
        submitted_at.insert(job.clone(), called);
    }

    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::with_capacity(jobs.len());
    for (job, watch) in jobs.iter().zip(watches) {
        let result = tokio::time::timeout_at(deadline, watch)
            .await
            .map_err(|_| format!("timed out after {limit:?}: the {workers}-worker jobs"))??;
        seen.push((job.clone(), result?));
    }
    let last_done = seen
        .iter()
        .filter_map(|(_, s)| s.done_seen)
        .max()
        .ok_or("no job finished")?;
    let wall = last_done.duration_since(started).as_secs_f64();
    let cpu = Cpu::now(Some(server)).since(cpu_before);
    let traffic_after = traffic(worker_queues);
    let load_after = load();
    let taps = tap.snapshot().await? - taps_before;
    let after = consumer(client).await?;

    stop.cancel();
    let mut stats = Vec::with_capacity(workers);
    for handle in running {
        // A worker's pending pull runs out within `fetch_wait`.
        stats.push(within("a worker to stop", config.fetch_wait + STEP_LIMIT, handle).await??);
    }
    if after.ack_pending != 0 {
        // A lost acknowledgement: the server redelivers after the ack wait, and the handler
        // acknowledges the finished job then. Reported, not fatal.
        eprintln!(
            "note ({workers} workers): {} deliveries unacknowledged at the end",
            after.ack_pending
        );
    }

    // Per job: submit→start and pickup (since the later of the submission and the same
    // worker's previous job finishing).
    for (job, s) in &seen {
        if s.phase != Some(JobPhase::Succeeded) || s.attempts != 1 {
            return Err(format!("{job}: {:?} after {} attempt(s)", s.phase, s.attempts).into());
        }
    }
    let mut by_worker: HashMap<String, Vec<(&Seen, DateTime<Utc>)>> = HashMap::new();
    for (job, s) in &seen {
        by_worker
            .entry(s.worker.clone().unwrap_or_default())
            .or_default()
            .push((s, submitted_at[job]));
    }
    let mut submit_to_start = Vec::new();
    let mut pickup = Vec::new();
    let mut render = Vec::new();
    let mut revisions = 0;
    for runs in by_worker.values_mut() {
        runs.sort_by_key(|(s, _)| s.running_at);
        let mut previous_done: Option<DateTime<Utc>> = None;
        for (s, submitted) in runs.iter() {
            let running = s.running_at.ok_or("a job never ran")?;
            let done = s.done_at.ok_or("a job never finished")?;
            submit_to_start.push(secs(running - *submitted));
            let free_since = previous_done.map_or(*submitted, |d| d.max(*submitted));
            pickup.push(secs(running - free_since));
            render.push(secs(done - running));
            revisions += u64::from(s.revisions);
            previous_done = Some(done);
        }
    }

    Ok(Queued {
        workers,
        wall,
        submit,
        submit_to_start,
        pickup,
        render,
        revisions,
        taps,
        traffic: Traffic {
            messages: traffic_after.messages - traffic_before.messages,
            bytes: traffic_after.bytes - traffic_before.bytes,
        },
        deliveries: after.delivered - before.delivered,
        redelivered: after.redelivered - before.redelivered,
        unacked: after.ack_pending,
        load: (load_before, load_after),
        cpu,
        stats,
    })
}

fn jobs_per_minute(jobs: usize, wall: f64) -> f64 {
    jobs as f64 * 60.0 / wall
}

async fn run(options: Options) -> Result<()> {
    let machine = machine();
    let rayon = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into());
    eprintln!("options: {options:?}");
    let inputs = Inputs::read()?;
    let root = tempfile::Builder::new().prefix("sonic-jpm-").tempdir()?;
    let server = NatsServer::try_start()?;
    eprintln!(
        "nats-server {} on {}",
        server.binary().display(),
        server.url()
    );
    let tap = Tap::start(server.url()).await?;

    let t = Instant::now();
    let pipeline = load_pipeline().await?;
    eprintln!(
        "pipeline: {} (loaded in {:.1} s)",
        pipeline.description(),
        t.elapsed().as_secs_f64()
    );

    let seq = sequential(&pipeline, &inputs, &options, root.path()).await?;
    let seq_jpm = jobs_per_minute(options.jobs, seq.wall);
    let seq_sorted = sorted(seq.per_job.clone());
    eprintln!("sequential: {:.1} s, {seq_jpm:.1} jobs/min", seq.wall);

    // A phase may take, with one worker, the sequential time plus the queue's overhead; allow
    // four times that (the machine is shared), and never less than a job's limit.
    let limit = JOB_LIMIT.max(Duration::from_secs_f64(seq.wall * 4.0 + 60.0));
    let client = connect(server.url()).await?;
    let mut worker_queues = Vec::new();
    for _ in 0..options.workers.iter().copied().max().unwrap_or(1) {
        worker_queues.push(connect(server.url()).await?);
    }
    let setup = Setup {
        pipeline: &pipeline,
        inputs: &inputs,
        options: &options,
        server: &server,
        tap: &tap,
        root: root.path(),
        client: &client,
        worker_queues: &worker_queues,
    };
    let mut phases = Vec::new();
    for &workers in &options.workers {
        let phase = queued(&setup, workers, limit).await?;
        eprintln!(
            "{workers} worker(s): {:.1} s, {:.1} jobs/min; stats {:?}",
            phase.wall,
            jobs_per_minute(options.jobs, phase.wall),
            phase.stats
        );
        phases.push(phase);
    }

    println!();
    println!(
        "Machine: {machine}; RAYON_NUM_THREADS={rayon}; pipeline {}",
        pipeline.description()
    );
    println!(
        "Jobs: {} per run ({}), 64x64 fixture portrait, 1 s of speech, {} step(s); nats-server {}",
        options.jobs,
        if options.quick { "quick" } else { "full" },
        options.steps,
        server.binary().display()
    );
    println!();
    println!(
        "| run | jobs | wall s | jobs/min | vs sequential | job s p50 (max) | CPU s/job | cores busy | load 1m start→end |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| sequential `Pipeline::generate` | {} | {:.1} | {:.1} | 1.00 | {:.2} ({:.2}) | {:.2} | {:.2} | {:.2}→{:.2} |",
        options.jobs,
        seq.wall,
        seq_jpm,
        percentile(&seq_sorted, 50.0),
        percentile(&seq_sorted, 100.0),
        seq.cpu.bench / options.jobs as f64,
        seq.cpu.bench / seq.wall,
        seq.load.0,
        seq.load.1,
    );
    for p in &phases {
        let jpm = jobs_per_minute(options.jobs, p.wall);
        let render = sorted(p.render.clone());
        println!(
            "| {} worker{} | {} | {:.1} | {:.1} | {:.2} | {:.2} ({:.2}) | {:.2} | {:.2} | {:.2}→{:.2} |",
            p.workers,
            if p.workers == 1 { "" } else { "s" },
            options.jobs,
            p.wall,
            jpm,
            jpm / seq_jpm,
            percentile(&render, 50.0),
            percentile(&render, 100.0),
            p.cpu.bench / options.jobs as f64,
            p.cpu.bench / p.wall,
            p.load.0,
            p.load.1,
        );
    }
    println!();
    println!(
        "| workers | submit_job s p50 (max) | submit→start s p50 / max | pickup ms p50 / max | pulls/job | renewals (+WPI)/job | acks (+ACK)/job | board writes/job | board reads/job | worker NATS msgs/job | worker KiB/job | nats-server CPU ms/job | deliveries (redelivered, unacked) | worker loop errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &phases {
        let n = options.jobs as f64;
        let per_job = |count: u64| count as f64 / n;
        let s2s = sorted(p.submit_to_start.clone());
        let pickup = sorted(p.pickup.clone());
        let submit = sorted(p.submit.clone());
        println!(
            "| {} | {:.3} ({:.3}) | {:.2} / {:.2} | {:.0} / {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {} ({}, {}) | {} |",
            p.workers,
            percentile(&submit, 50.0),
            percentile(&submit, 100.0),
            percentile(&s2s, 50.0),
            percentile(&s2s, 100.0),
            percentile(&pickup, 50.0) * 1e3,
            percentile(&pickup, 100.0) * 1e3,
            per_job(p.taps.pulls),
            per_job(p.taps.renewals),
            per_job(p.taps.acks),
            per_job(p.taps.board_writes),
            per_job(p.taps.board_reads),
            per_job(p.traffic.messages),
            per_job(p.traffic.bytes) / 1024.0,
            p.cpu.server * 1e3 / n,
            p.deliveries,
            p.redelivered,
            p.unacked,
            p.stats.iter().map(|s| s.errors).sum::<u64>(),
        );
        if p.taps.board_writes != p.revisions || p.taps.other_acks != 0 {
            eprintln!(
                "note ({} workers): the tap counted {} board writes and {} other acks; the watches saw {} revisions",
                p.workers, p.taps.board_writes, p.taps.other_acks, p.revisions
            );
        }
    }
    println!();
    println!(
        "job s: sequential = upload + generate per job; workers = Running→Succeeded on the board. \
         submit→start: submit_job call → first Running entry (includes waiting for a free worker). \
         pickup: max(submit_job call, the worker's previous Succeeded) → Running. \
         Counts per job are the tap's copies of what every client sent during the run. \
         CPU s/job: this process (pipeline, clients), user + system; cores busy: CPU s / wall s."
    );
    if phases
        .iter()
        .any(|p| p.unacked > 0 || p.stats.iter().any(|s| s.errors > 0))
    {
        eprintln!(
            "worker loop errors: the end of the nats-server log:\n{}",
            server.log()
        );
    }
    drop(server);
    Ok(())
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("jobs_per_minute failed: {e}");
        std::process::exit(1);
    }
}
