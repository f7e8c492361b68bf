//! The conformance suite every [`Storage`] passes, as public functions (feature `integration`),
//! so that you can run it against your own bucket, like `object_store`'s `integration` module.
//!
//! Each case takes a [`Storage`] whose input and output stores are **empty** (use a fresh prefix
//! per case, e.g. a random one) and panics (an assertion fails) when the store does not
//! behave; call it from a test. Cases write only under the storage's prefixes, with
//! tenants `acme`, `t1` and `t2`; [`run_all`] runs every case, each on a fresh storage.
//!
//! ```no_run
//! # async fn demo() -> sonic_storage::Result<()> {
//! use sonic_storage::{MIN_PART_SIZE, Storage, StoreConfig, integration};
//!
//! let mut run = 0;
//! let mut fresh = || {
//!     run += 1; // a fresh prefix per case
//!     let prefix = format!("conformance-{}-{run}", std::process::id());
//!     let config = |bucket: &str| {
//!         StoreConfig::from_url(&format!("s3://{bucket}/{prefix}"))
//!             .expect("URL")
//!             .with_part_size(MIN_PART_SIZE)
//!     };
//!     Storage::from_configs(&config("my-inputs"), &config("my-outputs")).expect("stores")
//! };
//! let http = integration::reqwest::Client::new();
//! integration::put_get_head(&fresh()).await;
//! integration::signed_urls(&fresh(), Some(&http)).await;
//! # Ok(()) }
//! ```
//!
//! The functions assert (they panic): this module is test support, not library behaviour.
#![allow(clippy::missing_panics_doc)]

/// The HTTP client crate [`signed_urls`] takes a client of.
pub use reqwest;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;

use crate::{
    Body, IdKind, InputKind, JobId, JobManifest, JobRef, MIN_PART_SIZE, ObjectKey,
    ObjectStorageExt, PutOptions, Sha256Digest, SignedMethod, Storage, StorageError, SweepOptions,
    TenantId,
};

fn job(tenant: &str, job: &str) -> JobRef {
    JobRef::parse(tenant, job).unwrap()
}

fn ids(names: &[&str]) -> Vec<JobId> {
    names.iter().map(|n| JobId::new(*n).unwrap()).collect()
}

/// Chunks of `size` bytes (the last one shorter) as an upload stream.
fn chunked(data: &[u8], size: usize) -> Body {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::stream(futures::stream::iter(chunks))
}

/// Upload, download and `head` of an input; inputs may be replaced; `find_input`; inputs and
/// outputs are separate stores.
pub async fn put_get_head(storage: &Storage) {
    let job = job("acme", "job-1");
    let image = pattern(1000, 1);
    let info = storage
        .put_input(&job, InputKind::Image, "png", image.clone())
        .await
        .unwrap();
    assert_eq!(info.key.as_str(), "inputs/acme/job-1/image.png");
    assert_eq!(info.size, 1000);
    assert_eq!(info.sha256, Some(Sha256Digest::of(&image)));
    assert_eq!(info.content_type.as_deref(), Some("image/png"));

    let inputs = storage.inputs();
    assert_eq!(inputs.get_bytes(&info.key).await.unwrap(), image);
    let head = inputs.head(&info.key).await.unwrap();
    assert_eq!(head.size, 1000);
    assert_eq!(head.content_type.as_deref(), Some("image/png"));
    assert!(head.last_modified.is_some());
    if let (Some(put), Some(headed)) = (&info.e_tag, &head.e_tag) {
        assert_eq!(put, headed, "{}", storage.outputs().store_url());
    }

    // Inputs may be replaced before the job runs.
    let replacement = pattern(700, 2);
    storage
        .put_input(&job, InputKind::Image, "png", replacement.clone())
        .await
        .unwrap();
    assert_eq!(inputs.get_bytes(&info.key).await.unwrap(), replacement);

    let found = storage.find_input(&job, InputKind::Image).await.unwrap();
    assert_eq!(found.key, info.key);
    assert_eq!(found.size, 700);
    assert!(
        storage
            .find_input(&job, InputKind::Audio)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Inputs and outputs are separate stores.
    assert!(!storage.outputs().exists(&info.key).await.unwrap());
}

/// Uploads from a file and from a chunked stream, downloads to a file and as a stream; a missing
/// file and a body that fails part-way are typed errors that leave nothing behind.
pub async fn uploads_from_file_and_stream(storage: &Storage) {
    let job = job("acme", "job-2");
    let dir = tempfile::tempdir().unwrap();
    let audio = pattern(300_000, 3);
    let path = dir.path().join("speech.wav");
    std::fs::write(&path, &audio).unwrap();

    let info = storage
        .put_input(&job, InputKind::Audio, "wav", Body::file(&path))
        .await
        .unwrap();
    assert_eq!(info.size, audio.len() as u64);
    assert_eq!(info.sha256, Some(Sha256Digest::of(&audio)));
    assert_eq!(info.content_type.as_deref(), Some("audio/wav"));

    let frames = pattern(50_001, 4);
    let out = storage
        .put_output_create_only(&job, "frames.bin", chunked(&frames, 777), None)
        .await
        .unwrap();
    assert_eq!(out.sha256, Some(Sha256Digest::of(&frames)));
    assert_eq!(
        out.content_type.as_deref(),
        Some("application/octet-stream")
    );

    let downloaded = dir.path().join("nested/out.wav");
    let got = storage
        .inputs()
        .get_to_file(&info.key, &downloaded)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&downloaded).unwrap(), audio);
    assert_eq!(got.sha256, info.sha256);
    assert_eq!(got.size, info.size);
    let mut stream = storage
        .outputs()
        .get_stream(&out.key, None)
        .await
        .unwrap()
        .stream;
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.next().await {
        streamed.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(streamed, frames);

    // A missing file is reported before anything is uploaded.
    let missing = dir.path().join("missing.png");
    match storage
        .put_input(&job, InputKind::Image, "png", Body::file(&missing))
        .await
    {
        Err(StorageError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{}: {other:?}", storage.outputs().store_url()),
    }
    // A body that fails part-way leaves nothing behind.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"first bytes")),
        Err(std::io::Error::other("the client went away")),
    ]);
    let key = job.output_key("broken.bin").unwrap();
    let err = storage
        .outputs()
        .put(&key, Body::stream(failing), PutOptions::create_only())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Body { .. }), "{err:?}");
    assert!(!storage.outputs().exists(&key).await.unwrap());
}

/// Range reads, and empty or reversed ranges refused as invalid arguments.
pub async fn range_reads(storage: &Storage) {
    let job = job("acme", "job-3");
    let data = pattern(10_000, 5);
    let info = storage
        .put_input(&job, InputKind::Audio, "mp3", data.clone())
        .await
        .unwrap();
    let inputs = storage.inputs();
    assert_eq!(
        inputs.get_range(&info.key, 100..164).await.unwrap(),
        &data[100..164]
    );
    assert_eq!(
        inputs.get_range(&info.key, 9_990..10_000).await.unwrap(),
        &data[9_990..]
    );
    let download = inputs.get_stream(&info.key, Some(0..1)).await.unwrap();
    assert_eq!(download.range, 0..1);
    assert_eq!(download.info.size, 10_000);
    #[allow(clippy::reversed_empty_ranges)] // refusing them is the point
    for bad in [5..5, 7..3] {
        assert!(
            matches!(
                inputs.get_range(&info.key, bad.clone()).await,
                Err(StorageError::InvalidArgument {
                    argument: "range",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
}

/// Listing a tenant's jobs (inputs and outputs), listing a job's inputs, deleting a job.
pub async fn list_jobs_and_delete(storage: &Storage) {
    for (tenant, job_id) in [("t1", "a"), ("t1", "b"), ("t2", "a")] {
        storage
            .put_input(&job(tenant, job_id), InputKind::Image, "jpg", b"x".to_vec())
            .await
            .unwrap();
    }
    storage
        .put_input(&job("t1", "a"), InputKind::Audio, "wav", b"y".to_vec())
        .await
        .unwrap();
    // A job with outputs only still counts.
    storage
        .put_video(&job("t1", "c"), b"video".to_vec())
        .await
        .unwrap();
    let t1 = TenantId::new("t1").unwrap();
    assert_eq!(storage.list_jobs(&t1).await.unwrap(), ids(&["a", "b", "c"]));
    assert_eq!(
        storage
            .list_jobs(&TenantId::new("t2").unwrap())
            .await
            .unwrap(),
        ids(&["a"])
    );
    assert!(
        storage
            .list_jobs(&TenantId::new("t3").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    let listed: Vec<String> = storage
        .inputs()
        .list_all(Some(&job("t1", "a").input_prefix()))
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.key.to_string())
        .collect();
    assert_eq!(listed, ["inputs/t1/a/audio.wav", "inputs/t1/a/image.jpg"]);

    assert_eq!(storage.delete_job(&job("t1", "a")).await.unwrap(), 2);
    assert_eq!(storage.list_jobs(&t1).await.unwrap(), ids(&["b", "c"]));
    let gone = job("t1", "a").input_key(InputKind::Image, "jpg").unwrap();
    assert!(
        storage
            .inputs()
            .head(&gone)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Deleting what is not there succeeds.
    storage.inputs().delete(&gone).await.unwrap();
}

/// Multipart uploads (over two parts of [`MIN_PART_SIZE`]) in overwrite and create-only mode; no
/// staged upload is left behind and a second create-only write changes nothing.
///
/// The stores must be configured with [`MIN_PART_SIZE`] parts
/// ([`StoreConfig::with_part_size`](crate::StoreConfig::with_part_size)) so that the case
/// really uploads several parts.
pub async fn multipart_upload(storage: &Storage) {
    let job = job("acme", "job-4");
    let big = pattern(2 * MIN_PART_SIZE + 12_345, 6);

    // Overwrite mode: multipart straight to the key.
    let input = storage
        .put_input(&job, InputKind::Audio, "wav", chunked(&big, 1 << 20))
        .await
        .unwrap();
    assert_eq!(input.size, big.len() as u64);
    assert_eq!(input.sha256, Some(Sha256Digest::of(&big)));
    assert_eq!(storage.inputs().get_bytes(&input.key).await.unwrap(), big);

    // Create-only: staged multipart upload, published by a conditional copy.
    let video = storage.put_video(&job, big.clone()).await.unwrap();
    assert_eq!(video.sha256, Some(Sha256Digest::of(&big)));
    let outputs = storage.outputs();
    let head = outputs.head(&video.key).await.unwrap();
    assert_eq!(head.size, big.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(outputs.get_bytes(&video.key).await.unwrap(), big);
    let only_video = |all: Vec<crate::ObjectInfo>| {
        all.into_iter()
            .map(|i| i.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only_video(outputs.list_all(None).await.unwrap()),
        [video.key.to_string()],
        "{}: staged uploads must not be left behind",
        storage.outputs().store_url()
    );

    // A second large create-only write fails and changes nothing.
    let other = pattern(2 * MIN_PART_SIZE + 1, 7);
    let err = storage.put_video(&job, other).await.unwrap_err();
    assert!(
        err.is_already_exists(),
        "{}: {err:?}",
        storage.outputs().store_url()
    );
    assert_eq!(outputs.get_bytes(&video.key).await.unwrap(), big);
    assert_eq!(
        only_video(outputs.list_all(None).await.unwrap()),
        [video.key.to_string()]
    );
}

/// Create-only outputs are never overwritten, small or video.
pub async fn create_only_never_overwrites(storage: &Storage) {
    let job = job("acme", "job-5");
    let first = storage
        .put_output_create_only(&job, "preview.gif", b"first".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(first.content_type.as_deref(), Some("image/gif"));
    let err = storage
        .put_output_create_only(&job, "preview.gif", b"second".to_vec(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::AlreadyExists { ref key, .. } if key == "outputs/acme/job-5/preview.gif"),
        "{}: {err:?}",
        storage.outputs().store_url()
    );
    assert_eq!(
        storage.outputs().get_bytes(&first.key).await.unwrap(),
        "first"
    );

    storage.put_video(&job, b"one".to_vec()).await.unwrap();
    assert!(
        storage
            .put_video(&job, b"two".to_vec())
            .await
            .unwrap_err()
            .is_already_exists()
    );
    assert_eq!(
        storage.outputs().get_bytes(&job.video_key()).await.unwrap(),
        "one"
    );
}

/// A job manifest: created once (a second claim fails), updated, read back equal, its JSON
/// fields; a broken or missing manifest is a typed error.
pub async fn manifest_round_trip(storage: &Storage) {
    let job = job("acme", "job-6");
    let mut manifest = JobManifest::new(job.clone());
    manifest.parameters = serde_json::json!({
        "inference_steps": 25, "dynamic_scale": 1.0, "fps": 25, "crop": true
    });
    manifest.seed = Some(7);
    let image = storage
        .put_input(&job, InputKind::Image, "png", pattern(512, 8))
        .await
        .unwrap();
    manifest
        .inputs
        .push(image.record("image", storage.inputs().store_url()));
    storage.create_manifest(&manifest).await.unwrap();
    // The first claim wins.
    assert!(
        storage
            .create_manifest(&manifest)
            .await
            .unwrap_err()
            .is_already_exists()
    );

    manifest.mark_running();
    manifest
        .checkpoints
        .insert("unet".into(), Sha256Digest::of(b"unet weights"));
    storage.write_manifest(&manifest).await.unwrap();
    let video = storage.put_video(&job, pattern(2048, 9)).await.unwrap();
    manifest
        .outputs
        .push(video.record("video", storage.outputs().store_url()));
    manifest.record_timing("unet", Duration::from_millis(1500));
    manifest.mark_succeeded();
    let written = storage.write_manifest(&manifest).await.unwrap();
    assert_eq!(written.key, job.manifest_key());
    assert_eq!(written.content_type.as_deref(), Some("application/json"));

    assert_eq!(storage.read_manifest(&job).await.unwrap(), manifest);
    assert_eq!(
        storage.read_manifest_at(&job.manifest_key()).await.unwrap(),
        manifest
    );
    let raw = storage
        .outputs()
        .get_bytes(&job.manifest_key())
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["tenant"], "acme");
    assert_eq!(json["seed"], 7);
    assert_eq!(json["parameters"]["inference_steps"], 25);
    assert_eq!(json["inputs"][0]["store"], storage.inputs().store_url());
    assert_eq!(json["outputs"][0]["key"], "outputs/acme/job-6/video.mp4");
    assert_eq!(
        json["outputs"][0]["sha256"],
        Sha256Digest::of(&pattern(2048, 9)).to_hex()
    );
    assert_eq!(json["timings"]["unet"], 1.5);

    // Not a manifest: a typed error naming the key.
    let other = self::job("acme", "job-7");
    storage
        .outputs()
        .put(
            &other.manifest_key(),
            b"{\"tenant\": \"acme\"".to_vec(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    match storage.read_manifest(&other).await {
        Err(StorageError::Manifest { key, .. }) => {
            assert_eq!(key, "outputs/acme/job-7/manifest.json")
        }
        other => panic!("{}: {other:?}", storage.outputs().store_url()),
    }
    assert!(
        storage
            .read_manifest(&self::job("acme", "job-8"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// Invalid tenant and job ids, output names, extensions and keys are refused before anything is
/// written; a manifest naming an invalid tenant is refused when read back.
pub async fn invalid_ids_and_keys_are_refused(storage: &Storage) {
    let long = "x".repeat(crate::MAX_ID_LEN + 1);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../etc",
        "a\0b",
        "a\nb",
        "a b",
        long.as_str(),
    ] {
        assert!(
            matches!(
                JobRef::parse("acme", bad),
                Err(StorageError::InvalidId {
                    kind: IdKind::Job,
                    ..
                })
            ),
            "job {bad:?}"
        );
        assert!(
            matches!(
                JobRef::parse(bad, "job"),
                Err(StorageError::InvalidId {
                    kind: IdKind::Tenant,
                    ..
                })
            ),
            "tenant {bad:?}"
        );
    }

    let job = job("acme", "job-9");
    for name in ["../../other/video.mp4", "..", "a/b", "", "x\u{1b}"] {
        assert!(
            matches!(
                storage
                    .put_output_create_only(&job, name, b"x".to_vec(), None)
                    .await,
                Err(StorageError::InvalidKey { .. })
            ),
            "{name:?}"
        );
    }
    for ext in ["png/../../../x", "", "p ng"] {
        assert!(
            matches!(
                storage
                    .put_input(&job, InputKind::Image, ext, b"x".to_vec())
                    .await,
                Err(StorageError::InvalidKey { .. })
            ),
            "{ext:?}"
        );
    }
    for key in [
        "../outside",
        "/absolute",
        "a/../../b",
        "a//b",
        "a/%2e%2e/b",
        "a\\..\\b",
    ] {
        assert!(
            matches!(ObjectKey::new(key), Err(StorageError::InvalidKey { .. })),
            "{key:?}"
        );
    }
    // Nothing was written anywhere.
    assert!(storage.inputs().list_all(None).await.unwrap().is_empty());
    assert!(storage.outputs().list_all(None).await.unwrap().is_empty());

    // A manifest naming an invalid tenant is refused when read back.
    let forged = r#"{"schema_version":1,"tenant":"../root","job":"j","status":"created",
        "created_at":"2025-01-01T00:00:00Z"}"#;
    storage
        .outputs()
        .put(
            &job.manifest_key(),
            forged.as_bytes().to_vec(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    let err = storage.read_manifest(&job).await.unwrap_err();
    assert!(matches!(err, StorageError::Manifest { .. }), "{err:?}");
}

fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signed URLs.
///
/// With `http: Some(client)` the store must sign: a GET URL fetches the video with that plain
/// (unsigning) client, a URL with one character of its signature changed, a URL without its
/// signature and an expired URL are refused with 403 (so the server must check SigV4), and a
/// signed PUT URL uploads an input. The case waits 2.5 s for a URL to expire. The client must
/// reach the hosts the store signs for (virtual-hosted style: `{bucket}.{endpoint host}`).
///
/// With `http: None` the store must refuse to sign ([`StorageError::NotSupported`]), as memory
/// and local-directory stores do.
pub async fn signed_urls(storage: &Storage, http: Option<&reqwest::Client>) {
    let job = job("acme", "job-10");
    let video = pattern(4096, 10);
    storage.put_video(&job, video.clone()).await.unwrap();
    let hour = Duration::from_secs(3600);

    let Some(http) = http else {
        // Stores that cannot sign say so; they never hand out an unsigned URL.
        for result in [
            storage.sign_video(&job, hour).await,
            storage
                .sign_input_upload(&job, InputKind::Image, "png", hour)
                .await,
        ] {
            assert!(
                matches!(result, Err(StorageError::NotSupported { .. })),
                "{}: {result:?}",
                storage.outputs().store_url()
            );
        }
        return;
    };

    // GET: a plain HTTP client fetches the object.
    let signed = storage.sign_video(&job, hour).await.unwrap();
    assert_eq!(signed.method, SignedMethod::Get);
    let lead = (signed.expires_at - Utc::now()).num_seconds();
    assert!((3590..=3600).contains(&lead), "expires in {lead} s");
    assert_eq!(query(&signed.url, "X-Amz-Expires").as_deref(), Some("3600"));
    let response = http.get(signed.url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), video);

    // One character of the signature changed: refused.
    let signature = query(&signed.url, "X-Amz-Signature").unwrap();
    let mut tampered_signature = signature.clone().into_bytes();
    tampered_signature[0] = if tampered_signature[0] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let tampered_signature = String::from_utf8(tampered_signature).unwrap();
    let tampered = signed.url.as_str().replace(&signature, &tampered_signature);
    assert_ne!(tampered, signed.url.as_str());
    let response = http.get(&tampered).send().await.unwrap();
    assert_eq!(response.status(), 403, "tampered URL accepted");
    // Without the signature: refused (the bucket is not public).
    let mut bare = signed.url.clone();
    bare.set_query(None);
    assert_eq!(http.get(bare).send().await.unwrap().status(), 403);

    // Expiry: the URL carries it, and the server enforces it.
    let short = storage
        .sign_video(&job, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(query(&short.url, "X-Amz-Expires").as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = http.get(short.url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 403, "expired URL accepted");

    // PUT: a client uploads its input directly.
    let upload = storage
        .sign_input_upload(&job, InputKind::Image, "png", hour)
        .await
        .unwrap();
    assert_eq!(upload.method, SignedMethod::Put);
    let portrait = pattern(3000, 11);
    let response = http
        .put(upload.url.clone())
        .body(portrait.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let key = job.input_key(InputKind::Image, "png").unwrap();
    assert_eq!(storage.inputs().get_bytes(&key).await.unwrap(), portrait);

    for bad in [Duration::ZERO, Duration::from_secs(8 * 24 * 3600)] {
        assert!(matches!(
            storage.sign_video(&job, bad).await,
            Err(StorageError::InvalidArgument {
                argument: "expires_in",
                ..
            })
        ));
    }
}

/// Retention: a dry run, a sweep that finds nothing too young, a per-tenant sweep and a sweep of
/// every tenant; outputs are never swept.
pub async fn retention_sweep(storage: &Storage) {
    let (a, b, other) = (job("t1", "a"), job("t1", "b"), job("t2", "a"));
    let image = storage
        .put_input(&a, InputKind::Image, "png", pattern(100, 12))
        .await
        .unwrap();
    let audio = storage
        .put_input(&b, InputKind::Audio, "wav", pattern(50, 13))
        .await
        .unwrap();
    let kept = storage
        .put_input(&other, InputKind::Image, "png", pattern(10, 14))
        .await
        .unwrap();
    let video = storage.put_video(&a, b"video".to_vec()).await.unwrap();
    let t1 = TenantId::new("t1").unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    let half_hour = Duration::from_secs(1800);

    let dry = storage
        .sweep_inputs(
            Some(&t1),
            &SweepOptions::older_than(half_hour).dry_run().at(later),
        )
        .await
        .unwrap();
    let keys: Vec<&ObjectKey> = dry.matched.iter().map(|i| &i.key).collect();
    assert_eq!(keys, [&image.key, &audio.key]);
    assert_eq!((dry.deleted, dry.bytes, dry.dry_run), (0, 150, true));
    assert!(storage.inputs().exists(&image.key).await.unwrap());

    let too_young = storage
        .sweep_inputs(
            Some(&t1),
            &SweepOptions::older_than(Duration::from_secs(7200)).at(later),
        )
        .await
        .unwrap();
    assert!(too_young.matched.is_empty());

    let swept = storage
        .sweep_inputs(Some(&t1), &SweepOptions::older_than(half_hour).at(later))
        .await
        .unwrap();
    assert_eq!(swept.deleted, 2);
    assert!(!storage.inputs().exists(&image.key).await.unwrap());
    assert!(!storage.inputs().exists(&audio.key).await.unwrap());
    assert!(storage.inputs().exists(&kept.key).await.unwrap());
    assert!(storage.outputs().exists(&video.key).await.unwrap());

    let everything = storage
        .sweep_inputs(None, &SweepOptions::older_than(half_hour).at(later))
        .await
        .unwrap();
    assert_eq!(everything.deleted, 1);
    assert!(!storage.inputs().exists(&kept.key).await.unwrap());
}

/// Every read of a missing object is [`StorageError::NotFound`] naming the key and the store;
/// deleting it succeeds.
pub async fn missing_objects_are_not_found(storage: &Storage) {
    let job = job("acme", "job-11");
    let key = job.video_key();
    let outputs = storage.outputs();
    assert!(outputs.head(&key).await.unwrap_err().is_not_found());
    assert!(outputs.get_bytes(&key).await.unwrap_err().is_not_found());
    assert!(
        outputs
            .get_range(&key, 0..10)
            .await
            .unwrap_err()
            .is_not_found()
    );
    match outputs
        .get_to_file(&key, &std::env::temp_dir().join("sonic-never-written"))
        .await
    {
        Err(StorageError::NotFound {
            key: missing,
            store,
            ..
        }) => {
            assert_eq!(missing, key.as_str());
            assert_eq!(store, outputs.store_url());
        }
        other => panic!("{}: {other:?}", storage.outputs().store_url()),
    }
    assert!(!outputs.exists(&key).await.unwrap());
    outputs.delete(&key).await.unwrap();
    assert!(
        storage
            .read_manifest(&job)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// Deterministic pseudo-random bytes (xorshift) of length `len`, so that large bodies are
/// neither compressible nor periodic; different seeds give different bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Runs every case of the suite, each on a storage `fresh` returns (its stores must be empty),
/// passing `http` to [`signed_urls`] (`None`: the store must refuse to sign).
pub async fn run_all<F, Fut>(mut fresh: F, http: Option<&reqwest::Client>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Storage>,
{
    put_get_head(&fresh().await).await;
    uploads_from_file_and_stream(&fresh().await).await;
    range_reads(&fresh().await).await;
    list_jobs_and_delete(&fresh().await).await;
    multipart_upload(&fresh().await).await;
    create_only_never_overwrites(&fresh().await).await;
    manifest_round_trip(&fresh().await).await;
    invalid_ids_and_keys_are_refused(&fresh().await).await;
    signed_urls(&fresh().await, http).await;
    retention_sweep(&fresh().await).await;
    missing_objects_are_not_found(&fresh().await).await;
}
