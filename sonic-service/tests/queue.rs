//! The queue against a real nats-server (started per test on a free loopback port).
//!
//! `cargo test -p sonic-service -- --include-ignored` (needs `nats-server` on PATH, or
//! `SONIC_NATS_SERVER`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use common::{
    FnHandler, WAIT, advisories, config, connect, job, next_advisory, stream_messages, within,
};
use futures::StreamExt;
use sonic_service::testing::NatsServer;
use sonic_service::{
    AdvisoryKind, CancellationToken, Disposition, JobError, JobRef, QueueConfig, Worker,
};
use tokio::sync::mpsc;

/// Runs `worker.run_once` until it brings a job (each call waits at most `fetch_wait`).
async fn next_outcome<H: sonic_service::JobHandler>(
    worker: &Worker<H>,
    shutdown: &CancellationToken,
) -> sonic_service::JobOutcome {
    within("a job to come", WAIT, async {
        loop {
            if let Some(outcome) = worker.run_once(shutdown).await.expect("run_once") {
                return outcome;
            }
        }
    })
    .await
}

/// Asserts that no job comes for `period`.
async fn assert_no_job_for<H: sonic_service::JobHandler>(worker: &Worker<H>, period: Duration) {
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    while started.elapsed() < period {
        let outcome = within("an empty fetch", WAIT, worker.run_once(&shutdown))
            .await
            .expect("run_once");
        assert!(outcome.is_none(), "unexpected delivery: {outcome:?}");
    }
}

fn ok_handler() -> FnHandler<
    impl Fn(
        sonic_service::JobDelivery,
        sonic_service::Lease,
    ) -> futures::future::Ready<Result<(), JobError>>
    + Send
    + Sync,
> {
    FnHandler(|_, _| futures::future::ready(Ok(())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn the_same_job_submitted_twice_is_one_message() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    // Connecting again with the same configuration is a no-op.
    let again = connect(server.url(), config()).await;
    let message = job("acme.prod", "job-1");

    let first = within("submit", WAIT, queue.submitter().submit(&message))
        .await
        .unwrap();
    let second = within("submit again", WAIT, again.submitter().submit(&message))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate, "{second:?}");
    assert_eq!(first.sequence, second.sequence);
    assert_eq!(stream_messages(&queue).await, 1);

    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let worker = Worker::new(
        &queue,
        "w0",
        FnHandler(move |delivery: sonic_service::JobDelivery, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            let expected = JobRef::parse("acme.prod", "job-1").unwrap();
            async move {
                assert_eq!(delivery.job(), expected);
                assert_eq!(delivery.attempt(), 1);
                assert!(!delivery.is_redelivery());
                assert_eq!(delivery.message().parameters["inference_steps"], 2);
                Ok(())
            }
        }),
    );
    let outcome = next_outcome(&worker, &CancellationToken::new()).await;
    assert_eq!(outcome.disposition, Disposition::Succeeded);
    assert_eq!(outcome.stream_sequence, first.sequence);
    assert_no_job_for(&worker, Duration::from_millis(1500)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // Work-queue retention: the acknowledged job is gone from the stream.
    assert_eq!(stream_messages(&queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn an_unacked_delivery_is_redelivered_after_the_ack_wait() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "hung")),
    )
    .await
    .unwrap();

    // Worker 1 takes the job and hangs without renewing its lease.
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let hung = Worker::new(
        &queue,
        "hung",
        FnHandler(move |delivery: sonic_service::JobDelivery, _| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(delivery.attempt());
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }),
    );
    let hung_task = tokio::spawn(async move {
        let _ = hung.run_once(&CancellationToken::new()).await;
    });
    let first_attempt = within("the hung worker to start", WAIT, started_rx.recv())
        .await
        .unwrap();
    assert_eq!(first_attempt, 1);
    let taken = Instant::now();

    // Worker 2 gets it once the ack wait has run out, as delivery 2.
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let healthy = Worker::new(
        &queue,
        "healthy",
        FnHandler(move |delivery: sonic_service::JobDelivery, _| {
            seen.lock()
                .unwrap()
                .push((delivery.attempt(), delivery.is_redelivery()));
            futures::future::ready(Ok(()))
        }),
    );
    let outcome = next_outcome(&healthy, &CancellationToken::new()).await;
    assert!(
        taken.elapsed() >= Duration::from_millis(900),
        "redelivered before the ack wait ran out: {:?}",
        taken.elapsed()
    );
    assert_eq!(outcome.attempt, 2);
    assert_eq!(outcome.disposition, Disposition::Succeeded);
    assert_eq!(*attempts.lock().unwrap(), vec![(2, true)]);
    hung_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_renewed_lease_keeps_the_job_past_the_ack_wait() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "long")),
    )
    .await
    .unwrap();

    // 3 s of work (three ack waits), renewing every 250 ms.
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let long = Worker::new(
        &queue,
        "long",
        FnHandler(move |_, lease: sonic_service::Lease| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(());
                let before = lease.expires_at();
                for _ in 0..12 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    lease.renew().await.map_err(JobError::transient)?;
                }
                assert!(lease.expires_at() > before);
                assert!(!lease.is_expired());
                Ok(())
            }
        }),
    );
    let long_task = tokio::spawn(async move { long.run_once(&CancellationToken::new()).await });
    within("the long job to start", WAIT, started_rx.recv())
        .await
        .unwrap();

    // Meanwhile nobody else gets it.
    let other = Worker::new(&queue, "other", ok_handler());
    assert_no_job_for(&other, Duration::from_millis(2500)).await;

    let outcome = within("the long job to finish", WAIT, long_task)
        .await
        .unwrap()
        .unwrap()
        .expect("a job");
    assert_eq!(outcome.attempt, 1);
    assert_eq!(outcome.disposition, Disposition::Succeeded);
    assert_no_job_for(&other, Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_renewal_after_the_lease_ran_out_is_refused() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "late")),
    )
    .await
    .unwrap();
    let worker = Worker::new(
        &queue,
        "late",
        FnHandler(|_, lease: sonic_service::Lease| async move {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            assert!(lease.is_expired());
            match lease.renew().await {
                Err(sonic_service::ServiceError::LeaseExpired { attempt: 1, .. }) => {}
                other => panic!("a late renewal was not refused: {other:?}"),
            }
            Err(JobError::transient("lease lost"))
        }),
    );
    let outcome = next_outcome(&worker, &CancellationToken::new()).await;
    assert!(
        matches!(outcome.disposition, Disposition::Retrying { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_permanent_failure_is_terminated_and_not_redelivered() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let mut advisories = advisories(&queue).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "no-face")),
    )
    .await
    .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let worker = Worker::new(
        &queue,
        "w0",
        FnHandler(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            futures::future::ready(Err(JobError::permanent("no face in the portrait")))
        }),
    );
    let outcome = next_outcome(&worker, &CancellationToken::new()).await;
    assert_eq!(
        outcome.disposition,
        Disposition::Failed {
            error: "no face in the portrait".into()
        }
    );
    // Past the ack wait and then some: no redelivery, no advisory, nothing left in the stream.
    assert_no_job_for(&worker, Duration::from_millis(2000)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(stream_messages(&queue).await, 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), advisories.next())
            .await
            .is_err(),
        "a permanent failure published an advisory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn transient_failures_until_max_deliveries_publish_an_advisory() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let max = queue.config().max_deliveries;
    let mut advisories = advisories(&queue).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "flaky")),
    )
    .await
    .unwrap();

    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let worker = Worker::new(
        &queue,
        "w0",
        FnHandler(move |delivery: sonic_service::JobDelivery, _| {
            seen.lock()
                .unwrap()
                .push((delivery.attempt(), delivery.is_final_attempt()));
            futures::future::ready(Err(JobError::transient(std::io::Error::other(
                "store unreachable",
            ))))
        }),
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let run = tokio::spawn(async move { worker.run(stop).await });

    let advisory = next_advisory(&mut advisories).await;
    assert_eq!(advisory.kind, AdvisoryKind::Exhausted);
    assert_eq!(advisory.attempts, max);
    assert_eq!(advisory.tenant.as_ref().map(|t| t.as_str()), Some("acme"));
    assert_eq!(advisory.job.as_ref().map(|j| j.as_str()), Some("flaky"));
    assert!(advisory.error.contains("store unreachable"), "{advisory:?}");
    assert_eq!(advisory.worker, "w0");

    // No delivery after the last one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    let stats = within("the worker to stop", WAIT, run).await.unwrap();
    assert_eq!(stats.retried, u64::from(max - 1), "{stats:?}");
    assert_eq!(stats.exhausted, 1, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    let expected: Vec<(u32, bool)> = (1..=max).map(|n| (n, n == max)).collect();
    assert_eq!(*attempts.lock().unwrap(), expected);
    assert_eq!(stream_messages(&queue).await, 0);

    // The advisory stream kept it, for whoever was not listening.
    let mut kept = queue
        .jetstream()
        .get_stream("SONIC_ADVISORIES")
        .await
        .unwrap();
    assert_eq!(kept.info().await.unwrap().state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn poison_messages_are_terminated_with_an_advisory() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let mut advisories = advisories(&queue).await;

    let mut version_2 = serde_json::from_slice::<serde_json::Value>(
        &job("acme", "from-the-future").to_json().unwrap(),
    )
    .unwrap();
    version_2["schema_version"] = serde_json::json!(2);
    let mut bad_key =
        serde_json::from_slice::<serde_json::Value>(&job("acme", "escape").to_json().unwrap())
            .unwrap();
    bad_key["inputs"]["image"] = serde_json::json!({"key": "../../outputs/other/j/video.mp4"});
    let poisons: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "acme/garbage",
            b"{not json".to_vec(),
            "malformed job message",
        ),
        (
            "acme/from-the-future",
            version_2.to_string().into_bytes(),
            "schema_version 2",
        ),
        (
            "acme/escape",
            bad_key.to_string().into_bytes(),
            "inputs.image.key",
        ),
    ];
    for (id, payload, _) in &poisons {
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.clone().into())
            .message_id(*id);
        within("publish poison", WAIT, async {
            queue
                .jetstream()
                .send_publish("sonic.jobs.acme", publish)
                .await
                .unwrap()
                .await
                .unwrap()
        })
        .await;
    }

    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let worker = Worker::new(
        &queue,
        "w0",
        FnHandler(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            futures::future::ready(Ok(()))
        }),
    );
    for (id, _, reason) in &poisons {
        let outcome = next_outcome(&worker, &CancellationToken::new()).await;
        let job = id.split_once('/').unwrap().1;
        assert_eq!(outcome.job, Some(JobRef::parse("acme", job).unwrap()));
        assert_eq!(outcome.attempt, 1);
        match &outcome.disposition {
            Disposition::Poison { reason: why } => assert!(why.contains(reason), "{why}"),
            other => panic!("{id}: {other:?}"),
        }
        let advisory = next_advisory(&mut advisories).await;
        assert_eq!(advisory.kind, AdvisoryKind::Poison);
        assert_eq!(advisory.attempts, 1);
        assert_eq!(advisory.tenant.as_ref().map(|t| t.as_str()), Some("acme"));
        assert_eq!(advisory.job.as_ref().map(|j| j.as_str()), Some(job));
        assert!(advisory.error.contains(reason), "{advisory:?}");
    }
    assert_no_job_for(&worker, Duration::from_millis(2000)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the handler saw a poison message"
    );
    assert_eq!(stream_messages(&queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_graceful_stop_hands_the_job_back_to_another_worker() {
    let server = NatsServer::start();
    // A long ack wait: the second worker can only get the job this fast if it was handed back.
    let config = QueueConfig {
        ack_wait: Duration::from_secs(30),
        ..config()
    };
    let queue = connect(server.url(), config.clone()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "handover")),
    )
    .await
    .unwrap();

    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let stopping = Worker::new(
        &queue,
        "stopping",
        FnHandler(move |_, lease: sonic_service::Lease| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(());
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    lease.renew().await.map_err(JobError::transient)?;
                }
            }
        }),
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let first = tokio::spawn(async move { stopping.run(stop).await });
    within("the first worker to start the job", WAIT, started_rx.recv())
        .await
        .unwrap();
    let stopped_at = Instant::now();
    shutdown.cancel();
    let stats = within("the first worker to stop", Duration::from_secs(5), first)
        .await
        .unwrap();
    assert_eq!(stats.handed_back, 1, "{stats:?}");
    assert_eq!(stats.succeeded, 0, "{stats:?}");

    let second_queue = connect(server.url(), config).await;
    let second = Worker::new(&second_queue, "second", ok_handler());
    let outcome = next_outcome(&second, &CancellationToken::new()).await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "the job came back by redelivery, not hand-back: {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(outcome.attempt, 2);
    assert_eq!(outcome.disposition, Disposition::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_graceful_stop_lets_a_short_job_finish_within_the_grace_period() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "short")),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let worker = Worker::new(
        &queue,
        "graceful",
        FnHandler(move |_, lease: sonic_service::Lease| {
            let stop = stop.clone();
            async move {
                stop.cancel(); // the stop arrives while the job runs
                assert!(lease.stopping().is_cancelled());
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            }
        }),
    )
    .with_grace(Duration::from_secs(5));
    let outcome = within("the job", WAIT, worker.run_once(&shutdown))
        .await
        .unwrap()
        .expect("a job");
    assert_eq!(outcome.disposition, Disposition::Succeeded);
    // Stopped: it fetches nothing more.
    assert!(worker.run_once(&shutdown).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_cancelled_job_is_terminated() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "cancel-me")),
    )
    .await
    .unwrap();
    let worker = Worker::new(
        &queue,
        "w0",
        FnHandler(|_, _| futures::future::ready(Err(JobError::Cancelled))),
    );
    let outcome = next_outcome(&worker, &CancellationToken::new()).await;
    assert_eq!(outcome.disposition, Disposition::Cancelled);
    assert_no_job_for(&worker, Duration::from_millis(1500)).await;
    assert_eq!(stream_messages(&queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_raw_nak_counts_as_a_delivery() {
    // The attempt number is the server's delivery count, whoever handed the message back.
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    within(
        "submit",
        WAIT,
        queue.submitter().submit(&job("acme", "raw")),
    )
    .await
    .unwrap();
    let consumer: PullConsumer = queue
        .jetstream()
        .get_consumer_from_stream("workers", "SONIC_JOBS")
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let message = within("a raw fetch", WAIT, batch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.info().unwrap().delivered, 1);
    message.double_ack_with(AckKind::Nak(None)).await.unwrap();
    drop(batch);
    let worker = Worker::new(&queue, "w0", ok_handler());
    let outcome = next_outcome(&worker, &CancellationToken::new()).await;
    assert_eq!(outcome.attempt, 2);
}
