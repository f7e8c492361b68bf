//! The seed's flow with a real nats-server and the real `Pipeline` (the fixtures' tiny demo
//! weights on the CPU): inputs to the store, the job on the queue, a worker renders it, the
//! video in the store. Bounded: every wait has a limit, jobs are short (1 s of speech, 1 step).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::{FnHandler, WAIT, advisories, connect, next_advisory, stream_messages, within};
use sha2::{Digest, Sha256};
use sonic::backends::BackendChoice;
use sonic::pipeline::{Pipeline, WeightsSource};
use sonic::storage::{JobStatus, ObjectStorageExt, Storage};
use sonic_service::testing::NatsServer;
use sonic_service::{
    AdvisoryKind, CancellationToken, JobPhase, JobRef, PipelineHandler, Queue, QueueConfig, Reaped,
    Reaper, ServiceError, UploadInput, Worker, submit_job,
};

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

/// The demo models, loaded once; each test gives them its own store.
fn pipeline(storage: Storage) -> Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let cpu = BackendChoice::parse("cpu", "f32").unwrap();
            Pipeline::builder(cpu, Storage::open("memory://").unwrap())
                .weights(WeightsSource::demo(golden()))
                .build()
                .unwrap()
        })
        .clone()
        .with_storage(storage)
}

fn input(path: &str, ext: &str) -> UploadInput {
    UploadInput {
        bytes: std::fs::read(golden().join(path)).unwrap().into(),
        ext: ext.into(),
    }
}

/// The fixture's 64x64 portrait with its face box, one step.
fn quick() -> serde_json::Value {
    serde_json::json!({
        "min_resolution": 64,
        "inference_steps": 1,
        "duration": 1.0,
        "face": {"mode": "box", "x": 18.6, "y": 12.3, "width": 27.2, "height": 33.9},
    })
}

fn config() -> QueueConfig {
    QueueConfig {
        // Long enough that a loaded machine (CI, parallel tests) does not lose leases.
        ack_wait: Duration::from_secs(20),
        max_deliveries: 3,
        retry_delay: Duration::from_millis(200),
        fetch_wait: Duration::from_millis(250),
        ..QueueConfig::default()
    }
}

/// Asserts that `job` succeeded with exactly one video, the one its manifest records (size and
/// sha256), and nothing but the video and the manifest under its outputs; returns the manifest.
async fn assert_one_video(storage: &Storage, job: &JobRef) -> sonic::storage::JobManifest {
    let manifest = storage.read_manifest(job).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Succeeded, "{manifest:?}");
    let video = storage.outputs().get_bytes(&job.video_key()).await.unwrap();
    let records: Vec<_> = manifest
        .outputs
        .iter()
        .filter(|o| o.role == "video")
        .collect();
    assert_eq!(records.len(), 1, "{manifest:?}");
    assert_eq!(records[0].size, video.len() as u64);
    assert_eq!(
        records[0].sha256.unwrap().to_hex(),
        hex::encode(Sha256::digest(&video))
    );
    let outputs = storage
        .outputs()
        .list_all(Some(&job.output_prefix()))
        .await
        .unwrap();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    manifest
}

/// Waits until every job's board entry is terminal; returns their phases.
async fn settled(queue: &Queue, jobs: &[JobRef]) -> Vec<JobPhase> {
    within("the jobs to finish", Duration::from_secs(120), async {
        loop {
            let mut phases = Vec::new();
            for job in jobs {
                let (state, _) = queue.board().get(job).await.unwrap();
                phases.push(state.state);
            }
            if phases.iter().all(|p| p.is_terminal()) {
                return phases;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn submitted_jobs_are_rendered_once_each_by_a_worker() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();

    let jobs: Vec<JobRef> = ["one", "two"]
        .iter()
        .map(|id| JobRef::parse("acme", id).unwrap())
        .collect();
    for job in &jobs {
        let submission = submit_job(
            &queue,
            &storage,
            job,
            input("pipeline_e2e/portrait.png", "png"),
            input("pipeline_e2e/speech.wav", "wav"),
            quick(),
        )
        .await
        .unwrap();
        assert!(submission.created && !submission.submitted.duplicate);
    }
    // The same job again before it ran: one job on the queue, nothing uploaded.
    let again = submit_job(
        &queue,
        &storage,
        &jobs[0],
        input("pipeline_e2e/portrait.png", "png"),
        input("pipeline_e2e/speech.wav", "wav"),
        quick(),
    )
    .await
    .unwrap();
    assert!(!again.created && again.submitted.duplicate, "{again:?}");

    let stop = CancellationToken::new();
    let handler = PipelineHandler::new(pipeline(storage.clone()), &queue, "worker-a");
    let worker = Worker::new(&queue, "worker-a", handler);
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    let phases = settled(&queue, &jobs).await;
    stop.cancel();
    let stats = within("the worker to stop", WAIT, running).await.unwrap();
    assert_eq!(phases, vec![JobPhase::Succeeded; 2]);
    assert_eq!(stats.succeeded, 2, "{stats:?}");

    for job in &jobs {
        let manifest = assert_one_video(&storage, job).await;
        assert_eq!(manifest.attempt, 1);
    }

    // A finished job is not submitted again.
    let err = submit_job(
        &queue,
        &storage,
        &jobs[1],
        input("pipeline_e2e/portrait.png", "png"),
        input("pipeline_e2e/speech.wav", "wav"),
        quick(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServiceError::Finished { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_poison_job_fails_after_one_attempt_and_a_cancelled_one_writes_no_video() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();

    // Corrupt audio: a permanent failure, recorded once and not retried.
    let poison = JobRef::parse("acme", "poison").unwrap();
    submit_job(
        &queue,
        &storage,
        &poison,
        input("pipeline_e2e/portrait.png", "png"),
        UploadInput {
            bytes: b"RIFF\x00\x00\x00\x00WAVEnot audio at all".to_vec().into(),
            ext: "wav".into(),
        },
        quick(),
    )
    .await
    .unwrap();
    // Cancelled before a worker takes it.
    let cancelled = JobRef::parse("acme", "cancelled").unwrap();
    submit_job(
        &queue,
        &storage,
        &cancelled,
        input("pipeline_e2e/portrait.png", "png"),
        input("pipeline_e2e/speech.wav", "wav"),
        quick(),
    )
    .await
    .unwrap();
    queue.board().request_cancel(&cancelled).await.unwrap();

    let stop = CancellationToken::new();
    let handler = PipelineHandler::new(pipeline(storage.clone()), &queue, "worker-b");
    let worker = Worker::new(&queue, "worker-b", handler);
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    let phases = settled(&queue, &[poison.clone(), cancelled.clone()]).await;
    stop.cancel();
    let stats = within("the worker to stop", WAIT, running).await.unwrap();
    assert_eq!(phases, vec![JobPhase::Failed, JobPhase::Cancelled]);
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.retried, 0, "a poison job is not retried: {stats:?}");

    let (state, _) = queue.board().get(&poison).await.unwrap();
    assert_eq!(state.attempt, 1);
    assert!(state.error.is_some());
    let manifest = storage.read_manifest(&poison).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Failed);
    let manifest = storage.read_manifest(&cancelled).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Cancelled);
    for job in [&poison, &cancelled] {
        assert!(!storage.outputs().exists(&job.video_key()).await.unwrap());
    }
}

/// A worker that hangs on a job's last delivery cannot record anything, and the server does not
/// redeliver it: the reaper reads the server's max-deliveries advisory and records the job
/// failed (board and manifest), publishes the advisory and removes the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_job_whose_last_delivery_hangs_is_recorded_failed_by_the_reaper() {
    let server = NatsServer::start();
    let config = QueueConfig {
        ack_wait: Duration::from_secs(1),
        max_deliveries: 2,
        ..config()
    };
    let queue = connect(server.url(), config).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
    let job = JobRef::parse("acme", "hangs").unwrap();
    submit_job(
        &queue,
        &storage,
        &job,
        input("pipeline_e2e/portrait.png", "png"),
        input("pipeline_e2e/speech.wav", "wav"),
        quick(),
    )
    .await
    .unwrap();
    let mut advisories = advisories(&queue).await;

    // Two hung workers (a worker takes one job at a time): each delivery hangs, unrenewed.
    let stop = CancellationToken::new();
    let delivered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut hung = Vec::new();
    for name in ["hung-1", "hung-2"] {
        let delivered = delivered.clone();
        let worker = Worker::new(
            &queue,
            name,
            FnHandler(move |_, _| {
                delivered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok(())
                }
            }),
        );
        let stop = stop.clone();
        hung.push(tokio::spawn(async move { worker.run(stop).await }));
    }
    within("both deliveries to hang", WAIT, async {
        while delivered.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // The server gives a job up (and says so) when it would deliver it again: to a worker that
    // is asking for jobs. This idle one must never get it.
    let idle = Worker::new(
        &queue,
        "idle",
        FnHandler(|delivery: sonic_service::JobDelivery, _| async move {
            panic!("a job past its max deliveries was delivered: {delivery:?}")
        }),
    );
    hung.push(tokio::spawn({
        let stop = stop.clone();
        async move { idle.run(stop).await }
    }));

    let reaper = Reaper::new(&queue, Some(storage.clone()), "reaper-test");
    let reaped = within("the reaper to record the job", WAIT, async {
        loop {
            if let Some(reaped) = reaper.run_once(&CancellationToken::new()).await.unwrap() {
                return reaped;
            }
        }
    })
    .await;
    assert_eq!(
        reaped,
        Reaped::Failed {
            job: job.clone(),
            deliveries: 2
        }
    );
    let (state, _) = queue.board().get(&job).await.unwrap();
    assert_eq!(state.state, JobPhase::Failed, "{state:?}");
    assert!(
        state
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("2 deliveries"),
        "{state:?}"
    );
    let manifest = storage.read_manifest(&job).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Failed, "{manifest:?}");
    let advisory = next_advisory(&mut advisories).await;
    assert_eq!(advisory.kind, AdvisoryKind::Exhausted);
    assert_eq!(advisory.job.as_ref(), Some(&job.job));
    assert_eq!(advisory.attempts, 2);
    assert_eq!(stream_messages(&queue).await, 0, "the message was removed");
    assert!(!storage.outputs().exists(&job.video_key()).await.unwrap());

    stop.cancel();
    for worker in hung {
        within("a hung worker to stop", WAIT, worker).await.unwrap();
    }
}

/// The S3 store goes away for a few seconds while a job runs: the attempt that meets the
/// outage fails transiently and is retried, and the job completes with exactly one video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_job_completes_when_the_s3_store_stops_for_a_few_seconds_mid_job() {
    use sonic_storage::testing::{S3Server, run_prefix};

    let server = NatsServer::start();
    let config = QueueConfig {
        max_deliveries: 20,
        retry_delay: Duration::from_millis(500),
        ..config()
    };
    let queue = connect(server.url(), config).await;
    let mut s3 = S3Server::spawn();
    let storage = s3.storage(&run_prefix());
    let job = JobRef::parse("acme", "outage").unwrap();
    submit_job(
        &queue,
        &storage,
        &job,
        input("pipeline_e2e/portrait.png", "png"),
        input("pipeline_e2e/speech.wav", "wav"),
        serde_json::json!({
            "min_resolution": 64,
            "inference_steps": 3,
            "duration": 1.0,
            "face": {"mode": "box", "x": 18.6, "y": 12.3, "width": 27.2, "height": 33.9},
        }),
    )
    .await
    .unwrap();

    let stop = CancellationToken::new();
    let handler = PipelineHandler::new(pipeline(storage.clone()), &queue, "worker-s3");
    let worker = Worker::new(&queue, "worker-s3", handler);
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    // Stop the server once the job runs; bring it back 3 s later.
    within("the job to start", WAIT, async {
        loop {
            let (state, _) = queue.board().get(&job).await.unwrap();
            if state.state == JobPhase::Running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The job cannot finish without the store (its video is uploaded last): the outage lasts
    // until an attempt has failed on it, and at least 3 s.
    tokio::task::block_in_place(|| s3.stop());
    tokio::time::sleep(Duration::from_secs(3)).await;
    within("an attempt to fail on the outage", WAIT, async {
        loop {
            let (state, _) = queue.board().get(&job).await.unwrap();
            if state.attempt >= 2 || state.error.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::task::block_in_place(|| s3.restart());

    let phases = settled(&queue, std::slice::from_ref(&job)).await;
    stop.cancel();
    let stats = within("the worker to stop", WAIT, running).await.unwrap();
    assert_eq!(phases, vec![JobPhase::Succeeded], "{stats:?}");
    assert_eq!(stats.succeeded, 1, "{stats:?}");
    assert_eq!(stats.failed + stats.exhausted, 0, "{stats:?}");
    assert!(stats.retried >= 1, "no attempt met the outage: {stats:?}");

    assert_one_video(&storage, &job).await;
}

/// Inputs given by signed URL (objects of another store): downloaded into the job's inputs,
/// rendered like any other. A loopback URL is refused by the default policy, and a tampered
/// signature by the store: both fail the job at once (board and manifest), unretried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn inputs_given_by_signed_url_are_downloaded_and_refusals_fail_the_job() {
    use sonic::storage::{ObjectKey, SignedMethod};
    use sonic_service::{InputRef, JobMessage, JobState, UrlInputs};
    use sonic_storage::testing::{S3Server, run_prefix};

    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let s3 = S3Server::spawn();
    let storage = s3.storage(&run_prefix());
    // The inputs live in another store (another prefix, its own signer).
    let library = s3.storage(&run_prefix());
    let mut urls = Vec::new();
    for (path, key) in [
        ("pipeline_e2e/portrait.png", "library/face.png"),
        ("pipeline_e2e/speech.wav", "library/hello.wav"),
    ] {
        let key = ObjectKey::new(key).unwrap();
        library
            .inputs()
            .put(&key, input(path, "").bytes, Default::default())
            .await
            .unwrap();
        let signed = library
            .inputs()
            .signed_url(&key, SignedMethod::Get, Duration::from_secs(600))
            .await
            .unwrap();
        urls.push(signed.url.to_string());
    }
    let publish = |id: &str, image: &str, audio: &str| {
        let job = JobRef::parse("acme", id).unwrap();
        let message = JobMessage::new(
            job.clone(),
            InputRef::url(image).unwrap(),
            InputRef::url(audio).unwrap(),
        )
        .with_parameters(quick());
        let queue = queue.clone();
        async move {
            queue
                .board()
                .create(&job, &JobState::queued())
                .await
                .unwrap();
            queue.submitter().submit(&message).await.unwrap();
            job
        }
    };
    let run_worker = |policy: UrlInputs, jobs: Vec<JobRef>| {
        let handler = PipelineHandler::new(pipeline(storage.clone()), &queue, "worker-url")
            .with_url_inputs(policy);
        let worker = Worker::new(&queue, "worker-url", handler);
        let queue = queue.clone();
        async move {
            let stop = CancellationToken::new();
            let running = tokio::spawn({
                let stop = stop.clone();
                async move { worker.run(stop).await }
            });
            let phases = settled(&queue, &jobs).await;
            stop.cancel();
            let stats = within("the worker to stop", WAIT, running).await.unwrap();
            (phases, stats)
        }
    };

    // The default policy refuses a loopback host.
    let refused = publish("loopback", &urls[0], &urls[1]).await;
    let (phases, stats) = run_worker(UrlInputs::default(), vec![refused.clone()]).await;
    assert_eq!(phases, vec![JobPhase::Failed]);
    assert_eq!((stats.failed, stats.retried), (1, 0), "{stats:?}");
    let (state, _) = queue.board().get(&refused).await.unwrap();
    assert!(
        state
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not a public address"),
        "{state:?}"
    );
    assert!(
        !state.error.unwrap().contains("X-Amz-Signature"),
        "no signature in errors"
    );
    assert_eq!(
        storage.read_manifest(&refused).await.unwrap().status,
        JobStatus::Failed
    );

    // Trusted network: downloaded and rendered; a tampered signature is refused by the store.
    let fetched = publish("by-url", &urls[0], &urls[1]).await;
    // One hex digit of the signature changed: well-formed, but not the store's.
    let at = urls[1].find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered_url = urls[1].clone();
    let flipped = if &urls[1][at..=at] == "0" { "1" } else { "0" };
    tampered_url.replace_range(at..=at, flipped);
    let tampered = publish("tampered", &urls[0], &tampered_url).await;
    let (phases, stats) = run_worker(UrlInputs::Any, vec![fetched.clone(), tampered.clone()]).await;
    assert_eq!(
        phases,
        vec![JobPhase::Succeeded, JobPhase::Failed],
        "{stats:?}"
    );
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_one_video(&storage, &fetched).await;
    for (kind, ext) in [("image", "png"), ("audio", "wav")] {
        let key = ObjectKey::new(format!("inputs/acme/by-url/{kind}.{ext}")).unwrap();
        assert!(storage.inputs().exists(&key).await.unwrap(), "{key}");
    }
    let (state, _) = queue.board().get(&tampered).await.unwrap();
    assert!(
        state
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 403"),
        "{state:?}"
    );
    assert!(
        !storage
            .outputs()
            .exists(&tampered.video_key())
            .await
            .unwrap()
    );
}
