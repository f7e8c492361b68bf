//! `WeightsSource::Hub` against a fake Hugging Face hub on 127.0.0.1: a small HTTP server that
//! speaks the hub's `/{repo}/resolve/{revision}/{file}` protocol (ranged GETs answered with
//! `ETag`, `X-Repo-Commit` and `Content-Range`, what `hf-hub` reads) and serves the three
//! released repositories made of the demo weights in `fixtures/golden`. The pipeline loads from
//! what it fetched; a second fetch, and an offline one, use the cache without a request; a file
//! the hub lacks is a typed error naming the repository and the file. No network beyond
//! loopback.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::golden;
use sha2::{Digest, Sha256};
use sonic::backends::BackendChoice;
use sonic::pipeline::{
    Component, HubSource, Pipeline, PipelineError, SONIC_REPO, SVD_REPO, WHISPER_REPO,
    WeightsError, WeightsLayout, WeightsSource,
};
use sonic::storage::Storage;

/// `(repository, file in it)` → the fixture file served for it.
type Repos = BTreeMap<(String, String), PathBuf>;

/// The released repositories, as the hub lays them out, made of the demo weights.
fn fake_repos() -> Repos {
    let g = golden("");
    let mut repos = Repos::new();
    let mut add = |repo: &str, file: &str, path: PathBuf| {
        assert!(path.is_file(), "fixture {}", path.display());
        repos.insert((repo.to_owned(), file.to_owned()), path);
    };
    add(SONIC_REPO, "Sonic/unet.pth", g.join("unet/unet.pth"));
    add(
        SONIC_REPO,
        "Sonic/audio2token.pth",
        g.join("audio2token/audio2token.pth"),
    );
    add(
        SONIC_REPO,
        "Sonic/audio2bucket.pth",
        g.join("audio2bucket/audio2bucket.pth"),
    );
    add(SONIC_REPO, "RIFE/flownet.pkl", g.join("rife/flownet.pkl"));
    add(
        SVD_REPO,
        "unet/config.json",
        g.join("unet/unet/config.json"),
    );
    for name in ["config.json", "diffusion_pytorch_model.fp16.safetensors"] {
        add(
            SVD_REPO,
            &format!("vae/{name}"),
            g.join("vae/vae").join(name),
        );
    }
    for name in ["config.json", "model.fp16.safetensors"] {
        add(
            SVD_REPO,
            &format!("image_encoder/{name}"),
            g.join("clip_vision/image_encoder").join(name),
        );
    }
    add(
        SVD_REPO,
        "scheduler/scheduler_config.json",
        g.join("scheduler/scheduler/scheduler_config.json"),
    );
    for name in ["config.json", "model.safetensors"] {
        add(
            WHISPER_REPO,
            name,
            g.join("whisper_encoder/whisper").join(name),
        );
    }
    repos
}

/// A fake hub on an ephemeral loopback port, one thread per connection (each answered and
/// closed). Lives for the rest of the test process.
struct FakeHub {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl FakeHub {
    fn start(repos: Repos) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let repos = repos.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    // A broken connection only fails the client's request.
                    let _ = serve(stream, &repos, &counter);
                });
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Answers one request: `GET /{org}/{name}/resolve/{revision}/{file}` with an optional
/// `Range: bytes=a-b`.
fn serve(stream: TcpStream, repos: &Repos, counter: &AtomicUsize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    counter.fetch_add(1, Ordering::SeqCst);
    let mut stream = stream;
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let parts: Vec<&str> = target.trim_start_matches('/').splitn(5, '/').collect();
    let found = match parts.as_slice() {
        [org, name, "resolve", "main", file] => {
            repos.get(&(format!("{org}/{name}"), file.to_string()))
        }
        _ => None,
    };
    let Some(path) = found else {
        return write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let bytes = std::fs::read(path)?;
    let len = bytes.len();
    let etag: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let (status, start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = a.parse().unwrap_or(0);
            let end = b.parse().unwrap_or(len - 1).min(len - 1);
            ("206 Partial Content", start, end)
        }
        None => ("200 OK", 0, len - 1),
    };
    let body = &bytes[start..=end];
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{len}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {commit}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()?;
    // Drain anything left so the close is clean.
    let _ = reader.read(&mut [0u8; 1]);
    Ok(())
}

/// The demo weights' architecture settings on a layout of fetched files (the released
/// settings are for the released widths).
fn with_demo_settings(mut layout: WeightsLayout) -> WeightsLayout {
    let demo = WeightsLayout::demo(golden("")).unwrap();
    layout.unet_audio_tokens = demo.unet_audio_tokens;
    layout.audio2token_config = demo.audio2token_config;
    layout.audio2bucket_config = demo.audio2bucket_config;
    layout.rife_config = demo.rife_config;
    layout
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_route_loads_a_pipeline_and_then_works_offline() {
    let hub = FakeHub::start(fake_repos());
    let cache = tempfile::tempdir().unwrap();
    let source = HubSource::new(cache.path()).with_endpoint(&hub.url);

    let layout = WeightsSource::Hub(source.clone()).resolve().await.unwrap();
    let fetched = hub.requests();
    assert!(fetched >= 13, "{fetched} requests");
    // Every file is in the cache, byte for byte the served one.
    let demo = WeightsLayout::demo(golden("")).unwrap();
    for ((component, got), (_, want)) in layout
        .checkpoint_files()
        .unwrap()
        .iter()
        .zip(demo.checkpoint_files().unwrap())
    {
        assert!(
            got.starts_with(cache.path()),
            "{component}: {}",
            got.display()
        );
        assert!(same_bytes(got, &want), "{component}");
    }
    assert!(same_bytes(&layout.scheduler_config, &demo.scheduler_config));
    assert!(layout.unet.ends_with("Sonic/unet.pth"));
    assert!(
        cache
            .path()
            .join("models--LeonJoe13--Sonic/refs/main")
            .is_file()
    );

    // The pipeline loads every model from the fetched files.
    let cpu = BackendChoice::parse("cpu", "f32").unwrap();
    let pipeline = Pipeline::builder(cpu, Storage::open("memory://").unwrap())
        .weights(with_demo_settings(layout.clone()))
        .build_async()
        .await
        .unwrap();
    assert!(
        pipeline.description().contains("F32"),
        "{}",
        pipeline.description()
    );

    // Fetching again uses the cache: no request.
    let again = WeightsSource::Hub(source.clone()).resolve().await.unwrap();
    assert_eq!(again, layout);
    assert_eq!(hub.requests(), fetched);

    // Offline, with the hub unreachable, the cache is enough.
    let offline = source
        .clone()
        .with_endpoint("http://127.0.0.1:9")
        .with_offline(true);
    let from_cache = WeightsSource::Hub(offline).resolve_blocking().unwrap();
    assert_eq!(from_cache, layout);
    assert_eq!(hub.requests(), fetched);
}

#[test]
fn a_file_missing_on_the_hub_names_the_repository_and_the_file() {
    let mut repos = fake_repos();
    repos.remove(&(SONIC_REPO.to_owned(), "RIFE/flownet.pkl".to_owned()));
    let hub = FakeHub::start(repos);
    let cache = tempfile::tempdir().unwrap();
    let source = HubSource::new(cache.path()).with_endpoint(&hub.url);

    match source.fetch_blocking() {
        Err(error @ WeightsError::HubMissing { .. }) => {
            let WeightsError::HubMissing {
                component,
                repo,
                file,
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(*component, Component::Rife);
            assert_eq!(repo, SONIC_REPO);
            assert_eq!(file, "RIFE/flownet.pkl");
            let message = error.to_string();
            assert!(message.contains("LeonJoe13/Sonic"), "{message}");
            assert!(message.contains("RIFE/flownet.pkl"), "{message}");
        }
        other => panic!("expected HubMissing, got {other:?}"),
    }

    // Through the pipeline builder: the same error, as `PipelineError::Weights`.
    let cpu = BackendChoice::parse("cpu", "f32").unwrap();
    let err = Pipeline::builder(cpu, Storage::open("memory://").unwrap())
        .weights(WeightsSource::Hub(source))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            PipelineError::Weights(WeightsError::HubMissing { repo, file, .. })
                if repo == SONIC_REPO && file == "RIFE/flownet.pkl"
        ),
        "{err}"
    );
}

#[test]
fn an_unreachable_hub_is_a_typed_error_with_its_cause() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let cache = tempfile::tempdir().unwrap();
    let source = HubSource::new(cache.path()).with_endpoint("http://127.0.0.1:9");
    match source.fetch_blocking() {
        Err(error @ WeightsError::Hub { .. }) => {
            let WeightsError::Hub { repo, file, .. } = &error else {
                unreachable!()
            };
            assert_eq!(
                (repo.as_str(), file.as_str()),
                (SONIC_REPO, "Sonic/unet.pth")
            );
            assert!(std::error::Error::source(&error).is_some());
        }
        other => panic!("expected Hub, got {other:?}"),
    }
}
