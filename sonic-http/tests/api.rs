//! The HTTP API in process, on loopback, over a real nats-server, the in-process S3 server
//! (SigV4) and a worker running the real pipeline on the demo weights: submission, events,
//! signed links, tenant isolation and refused input. Bounded: every wait has a limit.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use sonic::backends::BackendChoice;
use sonic::pipeline::{Pipeline, WeightsSource};
use sonic::storage::{ObjectStorageExt, Storage, TenantId};
use sonic_http::{Api, ApiConfig, ApiKeys, InputLimits, JobView, Problem};
use sonic_service::testing::NatsServer;
use sonic_service::{CancellationToken, PipelineHandler, Queue, QueueConfig, Worker};
use sonic_storage::testing::{S3Server, run_prefix};

const ACME: &str = "sk_test_acme_0123456789";
const GLOBEX: &str = "sk_test_globex_0123456789";

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(golden().join(path)).unwrap()
}

async fn within<T>(what: &str, limit: Duration, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// The whole service in this process.
struct Service {
    _nats: NatsServer,
    _s3: S3Server,
    base: String,
    storage: Storage,
    queue: Queue,
    api: Api,
    stop: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(limits: InputLimits, with_worker: bool) -> Service {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let nats = NatsServer::start();
    let config = QueueConfig {
        ack_wait: Duration::from_secs(20),
        max_deliveries: 3,
        retry_delay: Duration::from_millis(200),
        fetch_wait: Duration::from_millis(250),
        ..QueueConfig::default()
    };
    let queue = Queue::connect(nats.url(), config).await.unwrap();
    let s3 = S3Server::spawn();
    let storage = s3.storage(&run_prefix());
    let keys = ApiKeys::none()
        .with_key(TenantId::new("acme").unwrap(), ACME)
        .with_key(TenantId::new("globex").unwrap(), GLOBEX);
    let mut api_config = ApiConfig::default();
    api_config.limits = limits;
    api_config.keep_alive = Duration::from_secs(1);
    api_config.default_parameters = serde_json::json!({
        "min_resolution": 64,
        "inference_steps": 1,
        "duration": 1.0,
        "face": {"mode": "box", "x": 18.6, "y": 12.3, "width": 27.2, "height": 33.9},
    })
    .as_object()
    .unwrap()
    .clone();
    let api = Api::new(queue.clone(), storage.clone(), keys, api_config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        let api = api.clone();
        async move { sonic_http::serve(listener, api, async move { stop.cancelled().await }).await }
    });
    if with_worker {
        let cpu = BackendChoice::parse("cpu", "f32").unwrap();
        let pipeline = Pipeline::builder(cpu, storage.clone())
            .weights(WeightsSource::demo(golden()))
            .build()
            .unwrap();
        let handler = PipelineHandler::new(pipeline, &queue, "worker-http");
        let worker = Worker::new(&queue, "worker-http", handler);
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(stop).await });
    }
    Service {
        _nats: nats,
        _s3: s3,
        base,
        storage,
        queue,
        api,
        stop,
        http: reqwest::Client::new(),
    }
}

impl Service {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn form(
        &self,
        image: (&str, Vec<u8>),
        audio: (&str, Vec<u8>),
        parameters: Option<&str>,
    ) -> reqwest::multipart::Form {
        let mut form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(image.1).file_name(image.0.to_owned()),
            )
            .part(
                "audio",
                reqwest::multipart::Part::bytes(audio.1).file_name(audio.0.to_owned()),
            );
        if let Some(parameters) = parameters {
            form = form.text("parameters", parameters.to_owned());
        }
        form
    }

    async fn submit(&self, key: &str, form: reqwest::multipart::Form) -> reqwest::Response {
        self.http
            .post(self.url("/v1/jobs"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Follows `job`'s events to the end; returns the last view.
    async fn follow(&self, key: &str, job: &str) -> JobView {
        let response = self
            .http
            .get(self.url(&format!("/v1/jobs/{job}/events")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut last = None;
        within("the job's events to end", Duration::from_secs(180), async {
            while let Some(chunk) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    if let Some(data) = event
                        .lines()
                        .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                    {
                        let view: JobView = serde_json::from_str(data).unwrap();
                        last = Some(view);
                    }
                }
            }
        })
        .await;
        last.expect("at least one event")
    }
}

async fn problem(response: reqwest::Response) -> Problem {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_multipart_job_runs_to_a_signed_video_that_only_its_tenant_sees() {
    let service = start(InputLimits::default(), true).await;
    let form = service.form(
        ("portrait.png", fixture("pipeline_e2e/portrait.png")),
        ("speech.wav", fixture("pipeline_e2e/speech.wav")),
        Some(r#"{"seed": 7}"#),
    );
    let response = service.submit(ACME, form).await;
    assert_eq!(response.status(), 202);
    let view: JobView = response.json().await.unwrap();
    // The answer shows the job as it is when the answer is written: a worker may already
    // have taken it (seen once in CI), but it cannot have ended yet.
    assert!(
        matches!(view.state.as_str(), "queued" | "running"),
        "a just-submitted job is {:?}",
        view.state
    );
    let job = view.job.clone();

    let last = service.follow(ACME, &job).await;
    assert_eq!(last.state, "succeeded", "{last:?}");
    let video = last.video.expect("a succeeded job has a video");
    let url = video.url.expect("the S3 store signs links");
    let bytes = service.http.get(&url).send().await.unwrap();
    assert_eq!(bytes.status(), 200);
    let bytes = bytes.bytes().await.unwrap();
    assert_eq!(&bytes[4..8], b"ftyp");
    assert_eq!(
        video.sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str())
    );
    let job_ref = sonic::storage::JobRef::parse("acme", &job).unwrap();
    let manifest = service.storage.read_manifest(&job_ref).await.unwrap();
    let record = manifest.outputs.iter().find(|o| o.role == "video").unwrap();
    assert_eq!(
        record.sha256.unwrap().to_hex(),
        hex::encode(Sha256::digest(&bytes))
    );
    assert_eq!(manifest.parameters["seed"], 7);
    assert!(!last.timings.is_empty());

    // A tampered link is refused by the store.
    // (One hex digit of the signature changed, so it has the right form but not the right value.)
    let at = url.find("X-Amz-Signature=").expect("a SigV4 link") + "X-Amz-Signature=".len();
    let digit = if url.as_bytes()[at] == b'0' { "1" } else { "0" };
    let tampered = format!("{}{digit}{}", &url[..at], &url[at + 1..]);
    assert_eq!(
        service.http.get(&tampered).send().await.unwrap().status(),
        403
    );

    // Another tenant: 404 for everything about the job; no key or a wrong key: 401.
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/jobs/{job}")),
        (reqwest::Method::GET, format!("/v1/jobs/{job}/events")),
        (reqwest::Method::DELETE, format!("/v1/jobs/{job}")),
    ] {
        let other = service
            .http
            .request(method.clone(), service.url(&path))
            .bearer_auth(GLOBEX)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "{method} {path}");
        assert_eq!(problem(other).await.field.as_deref(), Some("job"));
        let none = service
            .http
            .request(method.clone(), service.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{method} {path}");
        let wrong = service
            .http
            .request(method.clone(), service.url(&path))
            .bearer_auth("sk_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path}");
    }
    let listed: sonic_http::JobList = service
        .http
        .get(service.url("/v1/jobs"))
        .bearer_auth(GLOBEX)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.jobs.is_empty());
    let listed: sonic_http::JobList = service
        .http
        .get(service.url("/v1/jobs"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.jobs.len(), 1);
    assert_eq!(listed.jobs[0].job, job);
    // Cancelling a finished job is a conflict.
    let cancel = service
        .http
        .delete(service.url(&format!("/v1/jobs/{job}")))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn presigned_uploads_start_on_the_upload_complete_hook() {
    let service = start(InputLimits::default(), true).await;
    let response = service
        .http
        .post(service.url("/v1/uploads"))
        .bearer_auth(ACME)
        .json(&serde_json::json!({"image": "face.png", "audio": "voice.wav", "start_on_upload": true, "parameters": {"seed": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let upload: sonic_http::UploadResponse = response.json().await.unwrap();
    let hook = |job: &str| {
        service
            .http
            .post(service.url("/v1/hooks/upload-complete"))
            .bearer_auth(ACME)
            .json(&serde_json::json!({"job": job}))
            .send()
    };
    // One file only: the job waits.
    let put = service
        .http
        .put(&upload.image.url)
        .body(fixture("pipeline_e2e/portrait.png"))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let waiting: JobView = hook(&upload.job).await.unwrap().json().await.unwrap();
    assert_eq!(waiting.state, "awaiting_upload");
    // Another tenant cannot start it.
    let other = service
        .http
        .post(service.url("/v1/hooks/upload-complete"))
        .bearer_auth(GLOBEX)
        .json(&serde_json::json!({"job": upload.job}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let put = service
        .http
        .put(&upload.audio.url)
        .body(fixture("pipeline_e2e/speech.wav"))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let started = hook(&upload.job).await.unwrap();
    assert_eq!(started.status(), 202);
    let last = service.follow(ACME, &upload.job).await;
    assert_eq!(last.state, "succeeded", "{last:?}");
    let job_ref = sonic::storage::JobRef::parse("acme", &upload.job).unwrap();
    let manifest = service.storage.read_manifest(&job_ref).await.unwrap();
    assert_eq!(manifest.parameters["seed"], 3);
    let video = service
        .storage
        .outputs()
        .get_bytes(&job_ref.video_key())
        .await
        .unwrap();
    assert_eq!(
        last.video.unwrap().sha256.unwrap(),
        hex::encode(Sha256::digest(&video))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn bad_input_is_a_problem_naming_its_field_and_nothing_is_queued() {
    let limits = InputLimits {
        max_image_bytes: 1 << 20,
        max_audio_bytes: 1 << 20,
    };
    let service = start(limits, false).await;
    let png = fixture("pipeline_e2e/portrait.png");
    let wav = fixture("pipeline_e2e/speech.wav");
    let cases: Vec<(&str, reqwest::multipart::Form, u16, &str)> = vec![
        (
            "png named .wav",
            service.form(("p.png", png.clone()), ("voice.wav", png.clone()), None),
            422,
            "audio",
        ),
        (
            "truncated wav",
            service.form(
                ("p.png", png.clone()),
                ("voice.wav", wav[..wav.len() / 2].to_vec()),
                None,
            ),
            422,
            "audio",
        ),
        (
            "unknown parameter",
            service.form(
                ("p.png", png.clone()),
                ("v.wav", wav.clone()),
                Some(r#"{"stepz": 3}"#),
            ),
            422,
            "parameters.stepz",
        ),
        (
            "out of range",
            service.form(
                ("p.png", png.clone()),
                ("v.wav", wav.clone()),
                Some(r#"{"inference_steps": 0}"#),
            ),
            422,
            "parameters.inference_steps",
        ),
        (
            "oversize",
            service.form(
                ("p.png", vec![0u8; (1 << 20) + 1]),
                ("v.wav", wav.clone()),
                None,
            ),
            413,
            "image",
        ),
    ];
    for (what, form, status, field) in cases {
        let response = service.submit(ACME, form).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        let problem = problem(response).await;
        assert_eq!(problem.field.as_deref(), Some(field), "{what}: {problem:?}");
    }
    // Nothing queued, nothing stored.
    let acme = TenantId::new("acme").unwrap();
    assert!(service.queue.board().list(&acme).await.unwrap().is_empty());
    let stored = service.storage.inputs().list_all(None).await.unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    // A JSON body of the wrong shape, and not JSON at all.
    let response = service
        .http
        .post(service.url("/v1/uploads"))
        .bearer_auth(ACME)
        .json(&serde_json::json!({"image": "a.png", "audio": "b.wav", "colour": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(problem(response).await.field.as_deref(), Some("colour"));
    let response = service
        .http
        .post(service.url("/v1/uploads"))
        .bearer_auth(ACME)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_thousand_malformed_requests_get_no_5xx_and_the_server_stays_up() {
    let service = start(InputLimits::default(), false).await;
    // A small deterministic generator: no dependency, the same requests every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let paths = [
        "/v1/jobs",
        "/v1/uploads",
        "/v1/hooks/upload-complete",
        "/v1/jobs/x",
        "/v1/jobs/%2e%2e",
        "/v1/jobs/a/events",
        "/nope",
        "/",
        "/openapi.json",
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ];
    let types = [
        "application/json",
        "multipart/form-data; boundary=x",
        "multipart/form-data",
        "text/plain",
        "application/problem+json",
        "",
    ];
    let keys = [Some(ACME), Some("sk_wrong"), None, Some("")];
    let mut by_status = std::collections::BTreeMap::new();
    within("1000 requests", Duration::from_secs(120), async {
        for i in 0..1000 {
            let path = paths[next() as usize % paths.len()];
            let method = methods[next() as usize % methods.len()].clone();
            let len = next() as usize % 512;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 3 == 0 {
                body = format!(
                    r#"{{"job": "{}", "image": {}, "parameters": {{"seed": -{}}}}}"#,
                    "x".repeat(len),
                    len,
                    i
                )
                .into_bytes();
            }
            let mut request = service.http.request(method, service.url(path)).body(body);
            let content_type = types[next() as usize % types.len()];
            if !content_type.is_empty() {
                request = request.header("content-type", content_type);
            }
            if let Some(key) = keys[next() as usize % keys.len()] {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert!(status < 500, "request {i} {path}: {status}");
            *by_status.entry(status).or_insert(0) += 1;
        }
    })
    .await;
    assert!(
        by_status.keys().any(|s| (400..500).contains(s)),
        "{by_status:?}"
    );
    let health = service
        .http
        .get(service.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_bucket_notification_on_nats_starts_a_start_on_upload_job() {
    let service = start(InputLimits::default(), true).await;
    let subject = "sonic.test.bucket-events";
    tokio::spawn({
        let api = service.api.clone();
        let stop = service.stop.clone();
        async move { api.run_bucket_events(subject, stop).await }
    });
    let upload: sonic_http::UploadResponse = service
        .http
        .post(service.url("/v1/uploads"))
        .bearer_auth(GLOBEX)
        .json(&serde_json::json!({"image": "face.png", "audio": "voice.wav", "start_on_upload": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (url, bytes) in [
        (&upload.image.url, fixture("pipeline_e2e/portrait.png")),
        (&upload.audio.url, fixture("pipeline_e2e/speech.wav")),
    ] {
        assert!(
            service
                .http
                .put(url)
                .body(bytes)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }
    // The event MinIO publishes for the second file, its key as the bucket has it (under the
    // store's prefix).
    let key = url::Url::parse(&upload.audio.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    let event = serde_json::json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("sonic-inputs/{key}"),
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "sonic-inputs"}, "object": {"key": key, "size": 1}},
        }],
    });
    let client = service.queue.client().clone();
    // Published until the subscription has it and the job is on the board (bounded).
    within(
        "the notification to start the job",
        Duration::from_secs(30),
        async {
            loop {
                client
                    .publish(subject, serde_json::to_vec(&event).unwrap().into())
                    .await
                    .unwrap();
                client.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let view: JobView = service
                    .http
                    .get(service.url(&format!("/v1/jobs/{}", upload.job)))
                    .bearer_auth(GLOBEX)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if view.state != "awaiting_upload" {
                    break;
                }
            }
        },
    )
    .await;
    let last = service.follow(GLOBEX, &upload.job).await;
    assert_eq!(last.state, "succeeded", "{last:?}");
    let outputs = service
        .storage
        .outputs()
        .list_all(Some(
            &sonic::storage::JobRef::parse("globex", &upload.job)
                .unwrap()
                .output_prefix(),
        ))
        .await
        .unwrap();
    let videos = outputs
        .iter()
        .filter(|o| o.key.as_str().ends_with("video.mp4"))
        .count();
    assert_eq!(videos, 1, "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: apt-get install nats-server"]
async fn a_server_without_keys_starts_and_refuses_every_v1_request() {
    let service = start(InputLimits::default(), false).await;
    let api = Api::new(
        service.queue.clone(),
        service.storage.clone(),
        ApiKeys::none(),
        ApiConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = service.stop.clone();
    tokio::spawn(async move {
        sonic_http::serve(listener, api, async move { stop.cancelled().await }).await
    });
    for (method, path) in [
        (reqwest::Method::GET, "/v1/jobs"),
        (reqwest::Method::POST, "/v1/jobs"),
        (reqwest::Method::POST, "/v1/uploads"),
        (reqwest::Method::GET, "/v1/jobs/x"),
        (reqwest::Method::DELETE, "/v1/jobs/x"),
        (reqwest::Method::GET, "/v1/jobs/x/events"),
        (reqwest::Method::POST, "/v1/hooks/upload-complete"),
    ] {
        for key in [None, Some(ACME)] {
            let mut request = service
                .http
                .request(method.clone(), format!("{base}{path}"));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} key {key:?}");
            assert!(response.headers().contains_key("www-authenticate"));
        }
    }
    for path in ["/healthz", "/readyz", "/openapi.json", "/"] {
        let response = service
            .http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}
