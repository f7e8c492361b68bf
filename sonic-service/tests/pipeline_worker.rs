//! The seed's flow with a real nats-server and the real `Pipeline` (the fixtures' tiny demo
//! weights on the CPU): inputs to the store, the job on the queue, a worker renders it, the
//! video in the store. Bounded: every wait has a limit, jobs are short (1 s of speech, 1 step).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::{WAIT, connect, within};
use sha2::{Digest, Sha256};
use sonic::backends::BackendChoice;
use sonic::pipeline::{Pipeline, WeightsSource};
use sonic::storage::{JobStatus, ObjectStorageExt, Storage};
use sonic_service::testing::NatsServer;
use sonic_service::{
    CancellationToken, JobPhase, JobRef, PipelineHandler, Queue, QueueConfig, ServiceError,
    UploadInput, Worker, submit_job,
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
        ack_wait: Duration::from_secs(5),
        max_deliveries: 3,
        retry_delay: Duration::from_millis(200),
        fetch_wait: Duration::from_millis(250),
        ..QueueConfig::default()
    }
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
        let manifest = storage.read_manifest(job).await.unwrap();
        assert_eq!(manifest.status, JobStatus::Succeeded, "{manifest:?}");
        assert_eq!(manifest.attempt, 1);
        let video = storage.outputs().get_bytes(&job.video_key()).await.unwrap();
        let record = manifest.outputs.iter().find(|o| o.role == "video").unwrap();
        assert_eq!(record.size, video.len() as u64);
        assert_eq!(
            record.sha256.unwrap().to_hex(),
            hex::encode(Sha256::digest(&video))
        );
        // Exactly the video and the manifest under the job's outputs.
        let outputs = storage
            .outputs()
            .list_all(Some(&job.output_prefix()))
            .await
            .unwrap();
        assert_eq!(outputs.len(), 2, "{outputs:?}");
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
