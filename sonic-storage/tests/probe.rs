//! The store probe (`ObjectStorageExt::probe`) and the errors it reports: success on every local
//! kind of store and on S3, refused credentials, a folder that cannot be written, endpoints that
//! refuse connections or never answer. Everything talks to loopback only, and every test that
//! could hang bounds its own wall time.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{
    ACCESS_KEY, INPUT_BUCKET, OUTPUT_BUCKET, S3Target, error_chain, impatient_s3_config,
    quick_retry, refusing_endpoint, run_prefix, silent_endpoint,
};
use sonic_storage::{
    Addressing, Bucket, Credentials, ObjectKey, ObjectStorage, ObjectStorageExt, PROBE_NAME_PREFIX,
    StorageError, TimeoutKind,
};

/// Fails the test if `future` takes longer than `limit`.
async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

fn key(key: &str) -> ObjectKey {
    ObjectKey::new(key).unwrap()
}

/// A successful probe under `prefix` that leaves nothing behind.
async fn assert_probe_passes(store: &dyn ObjectStorage, prefix: &str) {
    let report = within(Duration::from_secs(30), store.probe(&key(prefix)))
        .await
        .unwrap_or_else(|e| panic!("probe of {}: {}", store.store_url(), error_chain(&e)));
    assert_eq!(report.store, store.store_url());
    assert!(report.key.starts_with(&key(prefix)), "{:?}", report.key);
    assert!(
        report.key.file_name().starts_with(PROBE_NAME_PREFIX),
        "{:?}",
        report.key
    );
    assert!(store.head(&report.key).await.unwrap_err().is_not_found());
    let left: Vec<_> = store.list_all(None).await.unwrap();
    assert!(left.is_empty(), "the probe left {left:?}");
}

#[tokio::test]
async fn probe_passes_in_memory() {
    let store = Bucket::from_url("memory://").unwrap();
    assert_probe_passes(&store, "outputs").await;
}

#[tokio::test]
async fn probe_passes_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Bucket::from_url(dir.path().to_str().unwrap()).unwrap();
    assert_probe_passes(&store, "outputs/acme").await;
    // Not even a temporary file of the create-only write stays on disk.
    let mut files = Vec::new();
    for entry in walk(dir.path()) {
        files.push(entry);
    }
    assert!(files.is_empty(), "files left on disk: {files:?}");
}

/// Every regular file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_passes_on_s3() {
    let target = S3Target::get();
    for addressing in [Addressing::Path, Addressing::VirtualHosted] {
        let store =
            Bucket::open(&target.config(OUTPUT_BUCKET, &run_prefix(), addressing, quick_retry()))
                .unwrap();
        assert_probe_passes(&store, "outputs").await;
    }
}

/// The error of a probe with `credentials` against the test server.
async fn probe_with(credentials: Credentials) -> StorageError {
    let target = S3Target::get();
    let store = Bucket::open(
        &target
            .config(INPUT_BUCKET, &run_prefix(), Addressing::Path, quick_retry())
            .with_credentials(credentials),
    )
    .unwrap();
    within(Duration::from_secs(30), store.probe(&key("inputs")))
        .await
        .expect_err("the server must refuse these credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_permission_denied_with_the_servers_message() {
    let err = probe_with(Credentials::new(ACCESS_KEY, "not-the-secret")).await;
    let chain = error_chain(&err);
    assert!(
        matches!(&err, StorageError::PermissionDenied { store, key, .. }
            if store.starts_with("s3://sonic-inputs/") && key.starts_with("inputs/.sonic-probe-")),
        "{chain}"
    );
    assert!(
        chain.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_access_key_is_permission_denied_with_the_servers_message() {
    let err = probe_with(Credentials::new("nobody-knows-me", "whatever")).await;
    let chain = error_chain(&err);
    assert!(err.is_permission_denied(), "{chain}");
    // The test server (like MinIO and AWS) says InvalidAccessKeyId; s3s's SimpleAuth NotSignedUp.
    assert!(
        ["InvalidAccessKeyId", "NotSignedUp"]
            .iter()
            .any(|code| chain.contains(&format!("<Code>{code}</Code>"))),
        "{chain}"
    );
}

/// The probe of a store whose `outputs` prefix is a regular file: the create-only write cannot
/// make the folder. A typed store error naming the store, with the path in its cause.
async fn assert_file_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outputs"), b"not a folder").unwrap();
    let store = Bucket::from_url(dir.path().to_str().unwrap()).unwrap();
    let err = within(Duration::from_secs(30), store.probe(&key("outputs")))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(
        matches!(
            &err,
            StorageError::Backend {
                operation: "put",
                ..
            }
        ),
        "{chain}"
    );
    assert!(err.to_string().contains(store.store_url()), "{chain}");
    let in_the_way = std::fs::canonicalize(dir.path()).unwrap().join("outputs");
    assert!(
        chain.contains(&*in_the_way.to_string_lossy()),
        "the cause must name {}: {chain}",
        in_the_way.display()
    );
    // Opening a store inside that file fails at once, naming the path.
    let inside = in_the_way.join("store");
    match Bucket::from_url(inside.to_str().unwrap()) {
        Err(StorageError::Io { path, .. }) => assert_eq!(path, inside),
        other => panic!(
            "expected an I/O error naming {}, got {other:?}",
            inside.display()
        ),
    }
}

#[tokio::test]
async fn file_where_the_folder_should_be_is_a_typed_error_naming_the_path() {
    assert_file_in_the_way().await;
}

#[cfg(unix)]
#[tokio::test]
async fn read_only_folder_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("read-only");
    std::fs::create_dir(&root).unwrap();
    let store = Bucket::from_url(root.to_str().unwrap()).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root (and CAP_DAC_OVERRIDE) writes through the mode bits; then the folder is not read-only
    // to this process, and the file-in-the-way case stands in for it.
    let canary = root.join("canary");
    let writable = std::fs::write(&canary, b"x").is_ok();
    if writable {
        std::fs::remove_file(&canary).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_file_in_the_way().await;
    } else {
        let result = within(Duration::from_secs(30), store.probe(&key("outputs"))).await;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = result.unwrap_err();
        let chain = error_chain(&err);
        assert!(err.is_permission_denied(), "{chain}");
        assert!(err.to_string().contains(store.store_url()), "{chain}");
        let root = std::fs::canonicalize(&root).unwrap();
        assert!(chain.contains(&*root.to_string_lossy()), "{chain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoint_is_a_typed_timeout() {
    let (endpoint, server) = silent_endpoint().await;
    let store = Bucket::open(&impatient_s3_config(&endpoint, Duration::from_secs(1))).unwrap();

    // The create-only put of the probe (not retried on timeout).
    let err = within(Duration::from_secs(10), store.probe(&key("outputs")))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    match &err {
        StorageError::Timeout {
            operation: "put",
            kind: TimeoutKind::Request,
            after: Some(after),
            key,
            ..
        } => {
            assert_eq!(*after, Duration::from_secs(1), "{chain}");
            assert!(key.starts_with("outputs/.sonic-probe-"), "{chain}");
        }
        other => panic!("expected a request timeout of the put, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains("timed out") && shown.contains("1s request timeout"),
        "{shown}"
    );

    // A read (retried once on timeout) is a timeout too.
    let err = within(Duration::from_secs(10), store.head(&key("outputs/x")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Timeout {
                operation: "head",
                ..
            }
        ),
        "{}",
        error_chain(&err)
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_a_backend_error_with_the_cause() {
    let store = Bucket::open(&impatient_s3_config(
        &refusing_endpoint(),
        Duration::from_secs(1),
    ))
    .unwrap();
    let err = within(Duration::from_secs(10), store.probe(&key("outputs")))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(
        matches!(
            &err,
            StorageError::Backend {
                operation: "put",
                ..
            }
        ),
        "{chain}"
    );
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
}

/// A listener whose accept queue is full and that never accepts: Linux drops further SYNs, so
/// a new connection is never established.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_that_never_connects_is_a_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    // The request timeout is longer, so the connect timeout is the one that fires.
    let config = impatient_s3_config(&format!("http://{addr}"), Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(1));
    let store = Bucket::open(&config).unwrap();
    let err = within(Duration::from_secs(10), store.probe(&key("outputs")))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(
        matches!(
            &err,
            StorageError::Timeout {
                kind: TimeoutKind::Connect,
                after: Some(after),
                operation: "put",
                ..
            } if *after == Duration::from_secs(1)
        ),
        "{chain}"
    );
    assert!(
        err.to_string()
            .contains("no connection within the 1s connect timeout"),
        "{chain}"
    );
}
