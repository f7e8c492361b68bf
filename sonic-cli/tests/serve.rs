//! `sonic serve` end to end, as processes: nats-server, the S3 server, `sonic serve --demo`
//! and one `sonic worker --demo` (tests/support). Over HTTP only, a job through each
//! submission route: multipart, presigned uploads then `POST /v1/jobs`, and presigned uploads
//! started by a bucket notification on NATS. Each job's events are followed to `succeeded`,
//! its signed link downloaded, and the MP4 checked (H.264 and AAC tracks, sha256 as in the
//! manifest). Bounded: every wait has a limit.

mod support;

use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use support::{PORTRAIT, SPEECH, Stack, StackOptions};

const EVENTS_SUBJECT: &str = "sonic.test.bucket";

/// The sample entries of an MP4's tracks: `avc1` (H.264) and `mp4a` (AAC) must both be there.
fn assert_h264_and_aac(mp4: &[u8]) {
    assert_eq!(&mp4[4..8], b"ftyp", "not an MP4");
    let has = |fourcc: &[u8]| mp4.windows(4).any(|w| w == fourcc);
    assert!(has(b"moov") && has(b"stsd"), "no track descriptions");
    assert!(has(b"avc1") && has(b"avcC"), "no H.264 track");
    assert!(has(b"mp4a") && has(b"esds"), "no AAC track");
}

/// Follows `job`'s event stream to its end; the last view.
async fn follow(stack: &Stack, http: &reqwest::Client, key: &str, job: &str) -> serde_json::Value {
    let response = http
        .get(stack.url(&format!("/v1/jobs/{job}/events")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut last = None;
    tokio::time::timeout(Duration::from_secs(240), async {
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    last = Some(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("job {job} did not finish in 240 s\n{}", stack.logs_tail(40)));
    last.expect("at least one event")
}

/// Checks a succeeded job's video: the signed link downloads an H.264 + AAC MP4 whose sha256
/// is the one the manifest records.
async fn check_video(
    stack: &Stack,
    http: &reqwest::Client,
    tenant: &str,
    view: &serde_json::Value,
) {
    assert_eq!(
        view["state"],
        "succeeded",
        "{view}\n{}",
        stack.logs_tail(40)
    );
    let url = view["video"]["url"].as_str().expect("a signed link");
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mp4 = response.bytes().await.unwrap();
    assert_h264_and_aac(&mp4);
    let job = sonic::storage::JobRef::parse(tenant, view["job"].as_str().unwrap()).unwrap();
    let manifest = stack.storage().read_manifest(&job).await.unwrap();
    let record = manifest.outputs.iter().find(|o| o.role == "video").unwrap();
    let digest = hex::encode(Sha256::digest(&mp4));
    assert_eq!(record.sha256.unwrap().to_hex(), digest);
    assert_eq!(view["video"]["sha256"], digest.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn each_submission_route_gives_a_video_through_the_http_api() {
    let stack =
        Stack::start(StackOptions::default().serve_args(["--bucket-events", EVENTS_SUBJECT]));
    let http = support::client();
    let key = stack.key("acme").to_owned();
    let portrait = std::fs::read(PORTRAIT).unwrap();
    let speech = std::fs::read(SPEECH).unwrap();
    let params = r#"{"inference_steps": 2, "duration": 1.0}"#;

    // 1. Multipart.
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(portrait.clone()).file_name("portrait.png"),
        )
        .part(
            "audio",
            reqwest::multipart::Part::bytes(speech.clone()).file_name("speech.wav"),
        )
        .text("parameters", params);
    let response = http
        .post(stack.url("/v1/jobs"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let view: serde_json::Value = response.json().await.unwrap();
    let last = follow(&stack, &http, &key, view["job"].as_str().unwrap()).await;
    check_video(&stack, &http, "acme", &last).await;

    // 2. Presigned uploads, then POST /v1/jobs.
    let upload: serde_json::Value = http
        .post(stack.url("/v1/uploads"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"image": "face.png", "audio": "voice.wav"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (part, bytes) in [("image", &portrait), ("audio", &speech)] {
        let url = upload[part]["url"].as_str().unwrap();
        let put = http.put(url).body(bytes.clone()).send().await.unwrap();
        assert!(put.status().is_success(), "{part}: {}", put.status());
    }
    let job = upload["job"].as_str().unwrap();
    let response = http
        .post(stack.url("/v1/jobs"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"job": job, "parameters": serde_json::from_str::<serde_json::Value>(params).unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let last = follow(&stack, &http, &key, job).await;
    check_video(&stack, &http, "acme", &last).await;

    // 3. Presigned uploads started by the bucket's notification (MinIO's format, on NATS).
    let upload: serde_json::Value = http
        .post(stack.url("/v1/uploads"))
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "image": "face.png", "audio": "voice.wav", "start_on_upload": true,
            "parameters": serde_json::from_str::<serde_json::Value>(params).unwrap(),
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (part, bytes) in [("image", &portrait), ("audio", &speech)] {
        let url = upload[part]["url"].as_str().unwrap();
        assert!(
            http.put(url)
                .body(bytes.clone())
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }
    let job = upload["job"].as_str().unwrap().to_owned();
    let audio_key = upload["audio"]["key"].as_str().unwrap();
    let event = serde_json::json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("{}/{}/{audio_key}", support::BUCKET, support::PREFIX),
        "Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "minio:s3",
            "s3": {"bucket": {"name": support::BUCKET},
                   "object": {"key": format!("{}/{audio_key}", support::PREFIX), "size": speech.len()}}}],
    });
    let nats = sonic_service::async_nats::connect(stack.nats_url())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            nats.publish(EVENTS_SUBJECT, serde_json::to_vec(&event).unwrap().into())
                .await
                .unwrap();
            nats.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let view: serde_json::Value = http
                .get(stack.url(&format!("/v1/jobs/{job}")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if view["state"] != "awaiting_upload" {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the notification did not start the job\n{}",
            stack.logs_tail(40)
        )
    });
    let last = follow(&stack, &http, &key, &job).await;
    check_video(&stack, &http, "acme", &last).await;

    // The other tenant sees none of it.
    let other = http
        .get(stack.url(&format!("/v1/jobs/{job}")))
        .bearer_auth(stack.key("globex"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
