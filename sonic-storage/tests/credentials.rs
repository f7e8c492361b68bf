//! Credentials that expire: stores that read their keys from a file a sidecar rewrites keep
//! working across a key rotation without being reopened, and fail typed when nobody rewrites
//! the file. Each test runs its own in-process S3 server (`sonic_storage::testing::S3Server`) on
//! loopback and bounds its own wall time.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    ACCESS_KEY, INPUT_BUCKET, Loopback, OUTPUT_BUCKET, S3Server, SECRET_KEY, error_chain,
};
use sonic_storage::integration::pattern;
use sonic_storage::object_store::ClientOptions;
use sonic_storage::testing::{quick_retry, run_prefix};
use sonic_storage::{
    Addressing, Bucket, CredentialsFile, InputKind, JobRef, MIN_PART_SIZE, ObjectKey,
    ObjectStorageExt, Storage, StorageError, StoreConfig,
};

/// How often the stores under test look at their credentials file.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Fails the test if `future` takes longer than `limit`.
async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Writes the credentials file as a sidecar should: a new file beside it, renamed into place.
/// The session token and the expiration an hour from now make them look like STS credentials.
fn write_credentials(path: &Path, access_key: &str, secret: &str) {
    let expiration = chrono::Utc::now() + chrono::Duration::hours(1);
    let json = serde_json::json!({
        "access_key_id": access_key,
        "secret_access_key": secret,
        "session_token": format!("session-token-of-{access_key}"),
        "expiration": expiration.to_rfc3339(),
    });
    let next = path.with_extension("json.next");
    std::fs::write(&next, json.to_string()).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// A credentials file holding the server's initial keys.
fn credentials_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("s3-credentials.json");
    write_credentials(&path, ACCESS_KEY, SECRET_KEY);
    path
}

fn key(key: &str) -> ObjectKey {
    ObjectKey::new(key).unwrap()
}

/// Inputs and outputs on `server` (path style), with credentials from `file` only.
fn storage_with_file(server: &S3Server, prefix: &str, file: &Path) -> Storage {
    let config = |bucket: &str| {
        server
            .config(bucket, prefix, Addressing::Path)
            .with_credentials_file(CredentialsFile::new(file).with_check_interval(CHECK_INTERVAL))
    };
    Storage::from_configs(&config(INPUT_BUCKET), &config(OUTPUT_BUCKET)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_credentials_file_is_used_without_reopening_the_store() {
    let server = S3Server::spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = credentials_file(&dir);
    let storage = storage_with_file(&server, &run_prefix(), &path);
    let job = JobRef::parse("acme", "rotation-1").unwrap();
    let limit = Duration::from_secs(20);

    within(
        limit,
        storage.put_input(&job, InputKind::Image, "png", b"png-1".to_vec()),
    )
    .await
    .unwrap_or_else(|e| panic!("with the first keys: {}", error_chain(&e)));

    // The secrets never show in the stores' Debug output (which includes object_store's
    // configuration and the credential provider).
    let shown = format!("{storage:?}");
    assert!(shown.contains("s3-credentials.json"), "{shown}");
    assert!(
        !shown.contains(SECRET_KEY) && !shown.contains("session-token-of"),
        "{shown}"
    );

    // STS rotation: new keys are issued and the old ones stop working, at once.
    server.rotate_credentials("rotated-key-2", "rotated-secret-2");
    assert!(!server.accepts(ACCESS_KEY));

    // Nobody rewrote the file: however often the store looks at it, it still holds the old
    // keys, and the server refuses them. Typed, with the server's code in the chain.
    tokio::time::sleep(CHECK_INTERVAL * 2).await;
    let refused = within(limit, storage.put_video(&job, b"video-1".to_vec()))
        .await
        .expect_err("the revoked key must be refused");
    let chain = error_chain(&refused);
    assert!(
        matches!(&refused, StorageError::PermissionDenied { store, key, .. }
            if store.starts_with("s3://sonic-outputs/") && key.ends_with("rotation-1/video.mp4")),
        "{chain}"
    );
    assert!(chain.contains("InvalidAccessKeyId"), "{chain}");
    assert!(
        !chain.contains(SECRET_KEY) && !chain.contains("rotated-secret-2"),
        "{chain}"
    );

    // The sidecar writes the new keys: after one check interval the same store uses them, for
    // every kind of request (single and multipart puts, gets, lists, deletes).
    write_credentials(&path, "rotated-key-2", "rotated-secret-2");
    tokio::time::sleep(CHECK_INTERVAL * 2).await;
    within(limit, storage.put_video(&job, b"video-1".to_vec()))
        .await
        .unwrap_or_else(|e| panic!("after the rotation: {}", error_chain(&e)));
    let big = pattern(MIN_PART_SIZE + 4321, 7);
    let output = key(&format!("{}/frames.bin", job.output_prefix().as_str()));
    within(
        limit,
        storage
            .outputs()
            .put(&output, big.clone(), Default::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("multipart after the rotation: {}", error_chain(&e)));
    assert_eq!(
        within(limit, storage.outputs().get_bytes(&output))
            .await
            .unwrap(),
        big
    );
    let input = within(limit, storage.find_input(&job, InputKind::Image))
        .await
        .unwrap();
    assert_eq!(
        within(limit, storage.inputs().get_bytes(&input.key))
            .await
            .unwrap(),
        &b"png-1"[..]
    );
    assert_eq!(
        within(limit, storage.delete_job(&job)).await.unwrap(),
        3,
        "the input, the video and the frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oss_stores_read_the_credentials_file_too() {
    let server = S3Server::spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = credentials_file(&dir);
    // OSS is virtual-hosted only: `sonic-outputs.s3.sonic.test:{port}`, resolved to loopback.
    let config = StoreConfig::from_url(&format!("oss://{OUTPUT_BUCKET}/{}", run_prefix()))
        .unwrap()
        .with_endpoint(server.vhost_endpoint())
        .with_region("us-east-1")
        .with_client_options(
            ClientOptions::new()
                .with_dns_resolver(std::sync::Arc::new(Loopback))
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(10)),
        )
        .with_retry(quick_retry())
        .with_credentials_file(CredentialsFile::new(&path).with_check_interval(CHECK_INTERVAL));
    let store = Bucket::open(&config).unwrap();
    let object = key("outputs/acme/oss-1/manifest.json");
    let limit = Duration::from_secs(20);

    within(
        limit,
        store.put(&object, b"{}".to_vec(), Default::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("with the first keys: {}", error_chain(&e)));

    server.rotate_credentials("STS.rotated", "rotated-oss-secret");
    let refused = within(limit, store.get_bytes(&object))
        .await
        .expect_err("the revoked key must be refused");
    assert!(refused.is_permission_denied(), "{}", error_chain(&refused));

    write_credentials(&path, "STS.rotated", "rotated-oss-secret");
    tokio::time::sleep(CHECK_INTERVAL * 2).await;
    assert_eq!(
        within(limit, store.get_bytes(&object))
            .await
            .unwrap_or_else(|e| panic!("after the rotation: {}", error_chain(&e))),
        &b"{}"[..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_file_fails_the_open_typed_and_naming_it() {
    let server = S3Server::spawn();
    let dir = tempfile::tempdir().unwrap();
    let open = |file: &Path| {
        Bucket::open(
            &server
                .config(OUTPUT_BUCKET, &run_prefix(), Addressing::Path)
                .with_credentials_file(file),
        )
    };

    let missing = dir.path().join("not-written-yet.json");
    match open(&missing) {
        Err(StorageError::CredentialsFile { path, reason, .. }) => {
            assert_eq!(path, missing);
            assert_eq!(reason, "does not exist");
        }
        other => panic!("expected CredentialsFile, got {other:?}"),
    }

    let malformed = dir.path().join("half-written.json");
    std::fs::write(
        &malformed,
        format!(r#"{{"access_key_id": "{ACCESS_KEY}", "secret_access_key": "{SECRET_KEY}"#),
    )
    .unwrap();
    let error = open(&malformed).expect_err("a malformed file must be refused");
    let chain = error_chain(&error);
    assert!(
        matches!(&error, StorageError::CredentialsFile { path, .. } if *path == malformed),
        "{chain}"
    );
    assert!(chain.contains("half-written.json"), "{chain}");
    assert!(!chain.contains(SECRET_KEY), "{chain}");

    // Both explicit credentials and a file: refused rather than guessed.
    let mut both = server
        .config(OUTPUT_BUCKET, &run_prefix(), Addressing::Path)
        .with_credentials_file(credentials_file(&dir));
    both.s3.credentials = server
        .config(OUTPUT_BUCKET, "", Addressing::Path)
        .s3
        .credentials;
    assert!(matches!(
        Bucket::open(&both),
        Err(StorageError::InvalidConfig { reason, .. }) if reason.contains("credentials file")
    ));
}

/// The URL form the CLI uses: `?credentials_file=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_can_name_the_credentials_file() {
    let server = S3Server::spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = credentials_file(&dir);
    let url = format!(
        "s3://{OUTPUT_BUCKET}/{}?endpoint={}&addressing=path&region=us-east-1&credentials_file={}",
        run_prefix(),
        server.endpoint(),
        url::form_urlencoded::byte_serialize(path.to_str().unwrap().as_bytes()).collect::<String>(),
    );
    let config = StoreConfig::from_url(&url)
        .unwrap()
        .with_retry(quick_retry());
    assert_eq!(
        config.s3.credentials_file.as_ref().map(|f| f.path.clone()),
        Some(path.clone())
    );
    let store = Bucket::open(&config).unwrap();
    let report = within(Duration::from_secs(20), store.probe(&key("outputs")))
        .await
        .unwrap_or_else(|e| panic!("probe: {}", error_chain(&e)));
    assert!(
        report.key.as_str().starts_with("outputs/"),
        "{:?}",
        report.key
    );
}
