//! The API under load, on loopback: `CLIENTS` clients poll one job's status as fast as they
//! get answers and `STREAMS` clients keep its event stream open, for `--secs` seconds (30;
//! `--quick`: 3). Prints the request count, p50/p99/max latency and the error count, and fails
//! if any request failed. Needs nats-server (the job board); the store is the in-process S3
//! server. No rate limit (the limiter is per key and would answer 429s by design).
//!
//! `cargo bench -p sonic-http --bench http_load` (or `cargo test --workspace --bench http_load
//! -- --quick`, as `.ci/run` does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sonic::storage::TenantId;
use sonic_http::{Api, ApiConfig, ApiKeys, JobView};
use sonic_service::testing::NatsServer;
use sonic_service::{CancellationToken, Queue, QueueConfig};
use sonic_storage::testing::{S3Server, run_prefix};

const CLIENTS: usize = 200;
const STREAMS: usize = 50;
const KEY: &str = "sk_bench_0123456789";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/golden/").to_owned() + path)
        .expect("the fixtures")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs = if args.iter().any(|a| a == "--quick") {
        3
    } else {
        args.iter()
            .position(|a| a == "--secs")
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(30)
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start();
    let queue = Queue::connect(nats.url(), QueueConfig::default())
        .await
        .unwrap();
    let s3 = S3Server::spawn();
    let storage = s3.storage(&run_prefix());
    let keys = ApiKeys::none().with_key(TenantId::new("bench").unwrap(), KEY);
    let mut config = ApiConfig::default();
    config.rate_limit = None;
    let api = Api::new(queue, storage, keys, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move { sonic_http::serve(listener, api, async move { stop.cancelled().await }).await }
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS + STREAMS)
        .build()
        .unwrap();

    // One queued job (no worker runs it): what the clients poll and follow.
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(fixture("pipeline_e2e/portrait.png"))
                .file_name("p.png"),
        )
        .part(
            "audio",
            reqwest::multipart::Part::bytes(fixture("pipeline_e2e/speech.wav")).file_name("s.wav"),
        )
        .text(
            "parameters",
            r#"{"min_resolution": 64, "face": {"mode": "whole_frame"}}"#,
        );
    let response = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        202,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let job: JobView = response.json().await.unwrap();
    let status_url = format!("{base}/v1/jobs/{}", job.job);
    let events_url = format!("{status_url}/events");

    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut streams = Vec::new();
    let open = Arc::new(AtomicU64::new(0));
    for _ in 0..STREAMS {
        let (http, url, errors, open) = (
            http.clone(),
            events_url.clone(),
            errors.clone(),
            open.clone(),
        );
        streams.push(tokio::spawn(async move {
            match http.get(&url).bearer_auth(KEY).send().await {
                Ok(response) if response.status() == 200 => {
                    open.fetch_add(1, Ordering::Relaxed);
                    let mut body = response.bytes_stream();
                    let mut first = false;
                    while Instant::now() < deadline {
                        match tokio::time::timeout(Duration::from_millis(500), body.next()).await {
                            Ok(Some(Ok(_))) => first = true,
                            Ok(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Err(_) => {}
                        }
                    }
                    if !first {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut pollers = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, errors) = (http.clone(), status_url.clone(), errors.clone());
        pollers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                match http.get(&url).bearer_auth(KEY).send().await {
                    Ok(response) if response.status() == 200 => {
                        if response.bytes().await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.push(started.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for poller in pollers {
        latencies.extend(poller.await.unwrap());
    }
    for stream in streams {
        stream.await.unwrap();
    }
    stop.cancel();
    latencies.sort_unstable();
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{CLIENTS} polling clients, {} of {STREAMS} event streams open, {secs} s: {} requests ({:.0}/s), \
         latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors {errors}",
        open.load(Ordering::Relaxed),
        latencies.len(),
        latencies.len() as f64 / secs as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    assert_eq!(errors, 0, "requests failed under load");
}
