//! The job board (JetStream KV) against a real nats-server.

mod common;

use std::time::Duration;

use common::{WAIT, config, connect, within};
use futures::StreamExt;
use sonic_service::testing::NatsServer;
use sonic_service::{JobBoard, JobPhase, JobRef, JobState, ServiceError, TenantId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn compare_and_set_refuses_a_stale_revision() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let board = queue.board();
    let job = JobRef::parse("acme", "job-1").unwrap();

    assert!(matches!(
        board.get(&job).await,
        Err(ServiceError::NotFound { .. })
    ));
    let created = within("create", WAIT, board.create(&job, &JobState::queued()))
        .await
        .unwrap();
    assert!(matches!(
        board.create(&job, &JobState::queued()).await,
        Err(ServiceError::AlreadyExists { .. })
    ));

    // Two workers read the same revision; the first write wins, the second is stale.
    let (mut first, revision) = board.get(&job).await.unwrap();
    assert_eq!(revision, created);
    first.state = JobPhase::Running;
    first.attempt = 1;
    first.worker = Some("w1".into());
    first.touch();
    let written = board.update(&job, &first, revision).await.unwrap();
    assert!(written > revision);

    let mut second = JobState::queued();
    second.state = JobPhase::Running;
    second.attempt = 1;
    second.worker = Some("w2".into());
    match board.update(&job, &second, revision).await {
        Err(ServiceError::Stale {
            job: stale,
            expected_revision,
        }) => {
            assert_eq!(stale, job);
            assert_eq!(expected_revision, revision);
        }
        other => panic!("a stale write was not refused: {other:?}"),
    }
    let (now, now_revision) = board.get(&job).await.unwrap();
    assert_eq!(now, first);
    assert_eq!(now_revision, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn list_watch_and_cancel() {
    let server = NatsServer::start();
    let queue = connect(server.url(), config()).await;
    let board = queue.board();

    // Ids with dots: the key encoding keeps ("a.b", "c") and ("a", "b.c") apart.
    let jobs = [("a.b", "c"), ("a", "b.c"), ("a", "d"), ("other", "x")];
    for (tenant, job) in jobs {
        let job = JobRef::parse(tenant, job).unwrap();
        board.create(&job, &JobState::queued()).await.unwrap();
    }
    let listed = |tenant: &str| {
        let tenant = TenantId::new(tenant).unwrap();
        async move {
            board
                .list(&tenant)
                .await
                .unwrap()
                .into_iter()
                .map(|entry| entry.job.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(within("list a", WAIT, listed("a")).await, ["a/b.c", "a/d"]);
    assert_eq!(within("list a.b", WAIT, listed("a.b")).await, ["a.b/c"]);
    assert!(
        within("list nobody", WAIT, listed("nobody"))
            .await
            .is_empty()
    );
    assert_eq!(
        JobBoard::key_for(&JobRef::parse("a.b", "c").unwrap()),
        "a=b.c"
    );

    // Watch: the current state, then each change.
    let job = JobRef::parse("a", "d").unwrap();
    let mut watch = board.watch(&job).await.unwrap();
    let (state, revision) = within("the current state", WAIT, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.state, JobPhase::Queued);
    let mut running = state.clone();
    running.state = JobPhase::Running;
    running.stage = Some("denoise".into());
    running.step = Some(3);
    running.total = Some(25);
    running.eta_secs = Some(12.5);
    running.touch();
    let running_revision = board.update(&job, &running, revision).await.unwrap();
    let (seen, seen_revision) = within("the progress update", WAIT, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, running);
    assert_eq!(seen_revision, running_revision);

    // Cancel: the flag is set by compare-and-set, so the worker's next write (from the
    // revision it read before) is stale, and re-reading shows the request.
    let (cancelled, cancel_revision) = board.request_cancel(&job).await.unwrap();
    assert!(cancelled.cancel_requested);
    let mut progress = running.clone();
    progress.step = Some(4);
    assert!(matches!(
        board.update(&job, &progress, running_revision).await,
        Err(ServiceError::Stale { .. })
    ));
    let (reread, reread_revision) = board.get(&job).await.unwrap();
    assert!(reread.cancel_requested);
    assert_eq!(reread_revision, cancel_revision);
    // Asking again changes nothing.
    assert_eq!(board.request_cancel(&job).await.unwrap().1, cancel_revision);

    // A terminal job is left alone.
    let mut done = reread;
    done.state = JobPhase::Cancelled;
    done.touch();
    let done_revision = board.update(&job, &done, cancel_revision).await.unwrap();
    let (after, after_revision) = board.request_cancel(&job).await.unwrap();
    assert!(after.is_terminal());
    assert_eq!(after_revision, done_revision);

    let missing = JobRef::parse("a", "missing").unwrap();
    assert!(matches!(
        board.request_cancel(&missing).await,
        Err(ServiceError::NotFound { .. })
    ));
    drop(watch);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
