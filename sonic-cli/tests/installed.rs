//! The built `sonic` binary, run the way a user runs the installed one: from an empty folder
//! of its own, with nothing of the source tree at hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// The binary under test (what `cargo install --path sonic-cli` installs).
fn sonic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
}

/// Runs `sonic ARGS` in `dir` and returns its output.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    sonic()
        .args(args)
        .current_dir(dir)
        // Its own temporary folder, to check that the demo leaves nothing behind.
        .env("TMPDIR", dir.join("tmp"))
        .output()
        .expect("the sonic binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value printed after `label:` (e.g. `manifest:    outputs/...`), up to the first space.
fn printed(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
        .to_string()
}

/// Whether `needle` occurs in `haystack`: enough to find a sample entry's four-character type
/// (`avc1`, `mp4a`) in an MP4.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn the_demo_runs_from_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let output = run_in(
        dir.path(),
        &["generate", "--demo", "--inference-steps", "1", "--quiet"],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stderr.contains("noise"), "the demo warns: {stderr}");

    // The default store is ./sonic-data in the current folder.
    let store = dir.path().join("sonic-data");
    let video_key = printed(&stdout, "video:");
    let manifest_key = printed(&stdout, "manifest:");
    assert!(video_key.starts_with("outputs/local/job-"), "{video_key}");
    assert!(video_key.ends_with("/video.mp4"), "{video_key}");
    assert_eq!(
        Path::new(&manifest_key).parent(),
        Path::new(&video_key).parent()
    );

    let video = std::fs::read(store.join(&video_key)).unwrap();
    assert_eq!(&video[4..8], b"ftyp", "an MP4 starts with its ftyp box");
    assert!(contains(&video, b"avc1"), "an H.264 sample entry");
    assert!(contains(&video, b"mp4a"), "an AAC sample entry");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join(&manifest_key)).unwrap()).unwrap();
    assert_eq!(manifest["status"], "succeeded", "{manifest:#}");
    let record = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "video")
        .unwrap_or_else(|| panic!("no video output in {manifest:#}"));
    assert_eq!(record["key"], video_key.as_str());
    assert_eq!(record["size"], video.len() as u64);
    assert_eq!(
        record["sha256"],
        hex::encode(Sha256::digest(&video)).as_str()
    );
    assert_eq!(manifest["parameters"]["inference_steps"], 1, "{manifest:#}");
    // Every checkpoint of the demo was hashed into the manifest.
    assert_eq!(manifest["checkpoints"].as_object().unwrap().len(), 7);

    // The inputs were uploaded beside it; the unpacked demo weights are gone.
    let inputs = files_under(&store.join("inputs/local"));
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    let leftovers = files_under(&dir.path().join("tmp"));
    assert!(
        leftovers.is_empty(),
        "left in the temporary folder: {leftovers:?}"
    );
}

#[test]
fn help_lists_generate() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(dir.path(), &["--help"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.trim_start().starts_with("generate ")),
        "{stdout}"
    );
    let output = run_in(dir.path(), &["generate", "--help"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    for flag in [
        "--demo",
        "--image",
        "--audio",
        "--weights",
        "--inference-steps",
    ] {
        assert!(stdout.contains(flag), "{flag} in:\n{stdout}");
    }
}

#[test]
fn generate_without_inputs_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(dir.path(), &["generate"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = text(&output.stderr);
    for flag in ["--image", "--audio", "--weights"] {
        assert!(stderr.contains(flag), "{flag} in:\n{stderr}");
    }
    assert!(stderr.contains("required"), "{stderr}");
    // Nothing was created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_weights_are_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("face.png"), b"not read").unwrap();
    std::fs::write(dir.path().join("speech.wav"), b"not read").unwrap();
    let output = run_in(
        dir.path(),
        &[
            "generate",
            "--image",
            "face.png",
            "--audio",
            "speech.wav",
            "--weights",
            "checkpoints",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("checkpoints/Sonic/unet.pth"), "{stderr}");
    assert!(!dir.path().join("sonic-data").exists());
}

/// Starts `sonic generate --demo` with 200 steps as job `job` in `dir` (its `tmp` folder as
/// TMPDIR) and returns once the render has started: the pipeline opens its temporary video
/// file (`.tmp*`) just before it, the denoising loop comes about a second later (tiny models),
/// and 200 steps of it take minutes in a debug build.
#[cfg(unix)]
fn start_render(dir: &Path, job: &str) -> std::process::Child {
    use std::time::{Duration, Instant};

    let tmp = dir.join("tmp");
    let mut child = sonic()
        .args([
            "generate",
            "--demo",
            "--inference-steps",
            "200",
            "--job",
            job,
            "--quiet",
        ])
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let rendering = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".tmp"))
    };
    while !rendering() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            child.kill().ok();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the render did not start: {}{}",
                text(&output.stdout),
                text(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The tests that run several worker processes at once take turns: on a 2-core machine two
/// of them side by side (five renderers on two cores) slow each other past their deadlines.
fn one_fleet_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FLEET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `sonic worker --nats URL --store STORE --demo --name NAME` in `dir`, with its temporary
/// files under `tmp` (spawn it after adding arguments and pipes).
fn worker_command(dir: &Path, tmp: &Path, nats: &str, store: &str, name: &str) -> Command {
    let mut command = sonic();
    command
        .args([
            "worker", "--nats", nats, "--store", store, "--demo", "--name", name,
        ])
        .current_dir(dir)
        .env("TMPDIR", tmp);
    command
}

/// Child processes that are killed when the test ends, whether it passes or panics.
struct Children(Vec<(std::process::Child, String)>);

impl Children {
    /// Takes the last child back (to stop it in an orderly way).
    fn take_last(&mut self) -> std::process::Child {
        self.0.pop().expect("a child").0
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Sends `SIG{name}` to `child`.
#[cfg(unix)]
fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Sends `SIG{name}` to `child` and returns its output once it exits; fails the test (and
/// kills it) if that takes longer than `limit`.
#[cfg(unix)]
fn stop_within(mut child: std::process::Child, name: &str, limit: std::time::Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    signal(&child, name);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("sonic did not stop within {limit:?} of SIG{name}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Ctrl-C during denoising cancels the job: the manifest says `cancelled`, no video object is
/// written and no temporary file is left.
#[cfg(unix)]
#[test]
fn sigint_cancels_the_job_and_leaves_nothing_behind() {
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // Enough steps that the job is still denoising when the signal comes.
    let mut child = start_render(dir.path(), "cancel-me");
    std::thread::sleep(Duration::from_secs(5));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    // Bounded: the job stops at its next UNet window.
    let output = stop_within(child, "INT", Duration::from_secs(60));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cancel"), "{stderr}");

    let job = dir.path().join("sonic-data/outputs/local/cancel-me");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "cancelled", "{manifest:#}");
    assert_eq!(
        manifest["error"]["message"], "cancelled during denoise",
        "{manifest:#}"
    );
    assert!(!job.join("video.mp4").exists(), "no video object");
    assert_eq!(manifest["outputs"].as_array().map_or(0, Vec::len), 0);
    let leftovers = files_under(&tmp);
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// SHA-256 of every file under `dir`, by path.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
            (path, digest)
        })
        .collect()
}

/// Finding 1 of issue #13: rerunning a job id that exists replaced its `audio.wav` and added a
/// second `image.*` before it was refused. Now the claim comes first: every stored object stays
/// byte-identical, and the refusal comes before any model loads.
#[test]
fn an_existing_job_is_refused_with_every_stored_object_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let first = run_in(
        dir.path(),
        &[
            "generate",
            "--demo",
            "--inference-steps",
            "1",
            "--quiet",
            "--job",
            "taken",
        ],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    let store = dir.path().join("sonic-data");
    let before = snapshot(&store);
    assert_eq!(
        before.len(),
        4,
        "two inputs, the video, the manifest: {before:?}"
    );

    // Other inputs under the same id (their content does not matter: nothing may read them).
    std::fs::write(dir.path().join("other.jpg"), b"another picture").unwrap();
    std::fs::write(dir.path().join("other.wav"), b"another recording").unwrap();
    let again = run_in(
        dir.path(),
        &[
            "generate",
            "--demo",
            "--image",
            "other.jpg",
            "--audio",
            "other.wav",
            "--job",
            "taken",
            "--quiet",
        ],
    );
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("local/taken exists and succeeded"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(
        !stderr.contains("loading the models"),
        "refused before loading: {stderr}"
    );
    assert_eq!(
        snapshot(&store),
        before,
        "every stored object byte-identical"
    );
}

/// Findings 4 and 7 of issue #13: a job left `running` by a killed process is refused with a
/// message naming `--resume`, and `--resume` runs it as attempt 2.
#[cfg(unix)]
#[test]
fn a_job_left_running_by_a_killed_process_is_refused_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = start_render(dir.path(), "killed");
    child.kill().unwrap(); // SIGKILL: nothing is recorded.
    child.wait().unwrap();
    let store = dir.path().join("sonic-data");
    let manifest_path = store.join("outputs/local/killed/manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["status"], "running", "{manifest:#}");
    let before = snapshot(&store);

    let refused = run_in(
        dir.path(),
        &[
            "generate",
            "--demo",
            "--inference-steps",
            "1",
            "--job",
            "killed",
            "--quiet",
        ],
    );
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("recorded as running"), "{stderr}");
    assert!(
        stderr.contains("--resume"),
        "the refusal says what to do: {stderr}"
    );
    assert_eq!(snapshot(&store), before, "nothing changed");

    let resumed = run_in(
        dir.path(),
        &[
            "generate",
            "--demo",
            "--inference-steps",
            "1",
            "--job",
            "killed",
            "--quiet",
            "--resume",
        ],
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["status"], "succeeded", "{manifest:#}");
    assert_eq!(manifest["attempt"], 2, "{manifest:#}");
    assert_eq!(
        manifest["inputs"].as_array().unwrap().len(),
        2,
        "{manifest:#}"
    );
    assert!(store.join("outputs/local/killed/video.mp4").exists());
    // A job that succeeded is not resumed.
    let again = run_in(
        dir.path(),
        &[
            "generate", "--demo", "--job", "killed", "--quiet", "--resume",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("nothing to resume"));
}

/// Finding 7 of issue #13: an unusable store is refused with its real cause before any model
/// loads.
#[test]
fn an_unusable_store_is_refused_with_its_cause_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    std::fs::write(dir.path().join("a-file"), b"not a folder").unwrap();
    let output = run_in(
        dir.path(),
        &["generate", "--demo", "--quiet", "--store", "a-file/store"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be used"), "{stderr}");
    assert!(stderr.contains("a-file"), "says where: {stderr}");
    assert!(!stderr.contains("loading the models"), "{stderr}");
}

/// Finding 9 of issue #13: a `memory://` store's video vanished at exit without a word.
#[test]
fn a_memory_store_says_that_its_video_will_not_outlive_the_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let output = run_in(
        dir.path(),
        &[
            "generate",
            "--demo",
            "--inference-steps",
            "1",
            "--quiet",
            "--store",
            "memory://",
        ],
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("memory:// store lives only while"),
        "{stderr}"
    );
    assert!(stderr.contains("--out"), "{stderr}");
}

/// The job service as issue #14 writes it: `sonic worker --nats URL --store URL --demo` and
/// `sonic submit --nats URL --store URL --demo --job ID --inference-steps 2 --wait`, then
/// `status` and `jobs`, and SIGTERM stops the worker.
#[cfg(unix)]
#[test]
#[ignore = "needs nats-server: apt-get install nats-server"]
fn a_worker_renders_what_submit_puts_on_the_queue() {
    use std::time::Duration;

    let nats = sonic_service::testing::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let worker = worker_command(dir.path(), &tmp, nats.url(), store_arg, "w1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut worker = Children(vec![(worker, "w1".into())]);
    let submit = run_in(
        dir.path(),
        &[
            "submit",
            "--nats",
            nats.url(),
            "--store",
            store_arg,
            "--demo",
            "--job",
            "hello",
            "--inference-steps",
            "2",
            "--wait",
        ],
    );
    let stdout = text(&submit.stdout);
    assert!(submit.status.success(), "{stdout}{}", text(&submit.stderr));
    assert_eq!(printed(&stdout, "video:"), "outputs/local/hello/video.mp4");
    let video = std::fs::read(store.join("outputs/local/hello/video.mp4")).unwrap();
    assert_eq!(&video[4..8], b"ftyp");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join("outputs/local/hello/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["status"], "succeeded", "{manifest:#}");
    assert_eq!(manifest["parameters"]["inference_steps"], 2, "{manifest:#}");

    let status = run_in(
        dir.path(),
        &["status", "--nats", nats.url(), "--job", "hello"],
    );
    let status_text = text(&status.stdout);
    assert!(
        status_text.contains("succeeded (attempt 1"),
        "{status_text}"
    );
    assert!(status_text.contains("worker:   w1"), "{status_text}");
    let jobs = run_in(dir.path(), &["jobs", "--nats", nats.url()]);
    assert!(
        text(&jobs.stdout).contains("hello"),
        "{}",
        text(&jobs.stdout)
    );
    // A finished job is not submitted again.
    let again = run_in(
        dir.path(),
        &[
            "submit",
            "--nats",
            nats.url(),
            "--store",
            store_arg,
            "--demo",
            "--job",
            "hello",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("succeeded"),
        "{}",
        text(&again.stderr)
    );

    // SIGTERM: the idle worker stops within its fetch wait.
    let output = stop_within(worker.take_last(), "TERM", Duration::from_secs(30));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("1 succeeded"), "{stderr}");
}

/// Issue #14's kill -9 soak: 30 jobs, 3 `sonic worker` processes running the real pipeline on
/// the demo weights, a chaos loop that SIGKILLs a random worker (and respawns it) at least 10
/// times and SIGSTOPs one past its lease, then SIGCONTs it. Every job must end with exactly one
/// video and a `succeeded` manifest that matches it, and nothing else in the store.
#[cfg(unix)]
#[test]
#[ignore = "needs nats-server: apt-get install nats-server"]
fn kill_nine_soak_gives_every_job_exactly_one_video() {
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant, SystemTime};

    use sonic::storage::{JobRef, JobStatus, Storage};
    use sonic_service::{JobPhase, Queue, QueueConfig, UploadInput, submit_job};

    let _turn = one_fleet_at_a_time();

    const JOBS: usize = 30;
    const WORKERS: usize = 3;
    const KILLS: usize = 10;
    const ACK_WAIT: Duration = Duration::from_secs(3);

    let nats = sonic_service::testing::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::create_dir(&logs).unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let store_arg = store.to_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = QueueConfig {
        ack_wait: ACK_WAIT,
        max_deliveries: 50,
        retry_delay: Duration::from_secs(1),
        ..QueueConfig::default()
    };
    let queue = runtime
        .block_on(Queue::connect(nats.url(), config))
        .unwrap();
    let storage = Storage::open(&store_arg).unwrap();
    let jobs: Vec<JobRef> = (0..JOBS)
        .map(|i| JobRef::parse("soak", &format!("job-{i:02}")).unwrap())
        .collect();
    let portrait =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/portrait.png")).unwrap();
    let speech = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/speech.wav")).unwrap();
    let params = serde_json::json!({
        "min_resolution": 64,
        "inference_steps": 1,
        "interpolation": false,
        "duration": 1.0,
        "face": {"mode": "box", "x": 18.6, "y": 12.3, "width": 27.2, "height": 33.9},
    });
    for job in &jobs {
        runtime
            .block_on(submit_job(
                &queue,
                &storage,
                job,
                UploadInput {
                    bytes: portrait.clone().into(),
                    ext: "png".into(),
                },
                UploadInput {
                    bytes: speech.clone().into(),
                    ext: "wav".into(),
                },
                params.clone(),
            ))
            .unwrap();
    }

    let mut spawned = 0usize;
    let mut spawn = |slot: usize| -> (Child, String) {
        spawned += 1;
        let name = format!("w{slot}-{spawned}");
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = worker_command(dir.path(), &tmp, nats.url(), &store_arg, &name)
            .args(["--ack-wait-secs", "3", "--max-deliveries", "50"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        (child, name)
    };
    let mut workers = Children((0..WORKERS).map(&mut spawn).collect());
    // A small deterministic generator, seeded from the clock (the seed is in the failure text).
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let finished = |queue: &Queue| -> usize {
        runtime.block_on(async {
            let mut done = 0;
            for job in &jobs {
                if let Ok((state, _)) = queue.board().get(job).await
                    && state.state.is_terminal()
                {
                    done += 1;
                }
            }
            done
        })
    };
    // The job a worker held when it was paused past its lease: (worker, job, attempt, where
    // its log stood when it was resumed).
    let holder = |queue: &Queue, name: &str| -> Option<(JobRef, u32)> {
        runtime.block_on(async {
            for job in &jobs {
                if let Ok((state, _)) = queue.board().get(job).await
                    && state.state == JobPhase::Running
                    && state.worker.as_deref() == Some(name)
                {
                    return Some((job.clone(), state.attempt));
                }
            }
            None
        })
    };
    let mut paused: Option<(String, JobRef, u32, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(280);
    let mut kills = 0;
    loop {
        let done = finished(&queue);
        if done == JOBS && kills >= KILLS && paused.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let board: Vec<String> = runtime.block_on(async {
                let mut lines = Vec::new();
                for job in &jobs {
                    if let Ok((state, _)) = queue.board().get(job).await {
                        lines.push(format!(
                            "{job}: {:?} attempt {} worker {:?} error {:?}",
                            state.state, state.attempt, state.worker, state.error
                        ));
                    }
                }
                lines
            });
            let mut tails = String::new();
            for log in files_under(&logs) {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(8)..].join("\n");
                tails.push_str(&format!("--- {}\n{tail}\n", log.display()));
            }
            panic!(
                "seed {seed}: {done} of {JOBS} jobs finished, {kills} kills, in the time limit\n{}\n{tails}",
                board.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(1200));
        if kills < KILLS {
            let slot = (next() % WORKERS as u64) as usize;
            workers.0[slot].0.kill().unwrap(); // SIGKILL
            workers.0[slot].0.wait().unwrap();
            workers.0[slot] = spawn(slot);
            kills += 1;
        }
        if kills >= 4 && paused.is_none() {
            // Paused past its lease while it holds a job: the job goes to another worker;
            // resumed, the paused one must write nothing more for it.
            let busy = (0..WORKERS)
                .find_map(|slot| holder(&queue, &workers.0[slot].1).map(|held| (slot, held)));
            if let Some((slot, (job, attempt))) = busy {
                signal(&workers.0[slot].0, "STOP");
                let name = workers.0[slot].1.clone();
                // Still its job once paused (it did not finish in between)?
                let still = holder(&queue, &name).is_some_and(|(j, a)| j == job && a == attempt);
                std::thread::sleep(ACK_WAIT * 3);
                let log = logs.join(format!("{name}.log"));
                let resumed_at = std::fs::metadata(&log).unwrap().len();
                signal(&workers.0[slot].0, "CONT");
                if still {
                    paused = Some((name, job, attempt, resumed_at));
                }
            }
        }
    }
    // Let the resumed worker reach its next check before it is stopped.
    std::thread::sleep(ACK_WAIT);
    drop(workers);

    // Resumed, the paused worker wrote nothing more for the job it had held: its next write
    // (or its next lease renewal) was refused, the job finished under a later attempt.
    let (name, held, attempt, resumed_at) = paused.expect("a worker was paused");
    let log = std::fs::read(logs.join(format!("{name}.log"))).unwrap();
    let after = String::from_utf8_lossy(&log[resumed_at as usize..]).into_owned();
    // The paused attempt's lines: the same worker may legitimately take the job again later,
    // under a new attempt (after the job's next holder lost it in turn), and finish it then.
    let tag = format!("job={} attempt={attempt} ", held.job);
    let lines: Vec<&str> = after.lines().filter(|l| l.contains(&tag)).collect();
    assert!(
        lines.iter().any(|l| l.contains("late write refused")
            || l.contains("nothing more is written")
            || l.contains("taken over")
            || l.contains("lease is lost")),
        "seed {seed}: {name}, resumed, did not report losing {held} (attempt {attempt}):\n{after}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("job succeeded")),
        "seed {seed}: {name} acknowledged attempt {attempt} of {held} after losing it:\n{after}"
    );
    let (state, _) = runtime.block_on(queue.board().get(&held)).unwrap();
    assert!(
        state.attempt > attempt,
        "seed {seed}: {held} was finished under the paused attempt {attempt}: {state:?}"
    );

    // Exactly one video per job, matching its succeeded manifest; redeliveries happened.
    let mut max_attempt = 0;
    for job in &jobs {
        let (state, _) = runtime.block_on(queue.board().get(job)).unwrap();
        assert_eq!(
            state.state,
            JobPhase::Succeeded,
            "seed {seed}: {job}: {state:?}"
        );
        let manifest = runtime.block_on(storage.read_manifest(job)).unwrap();
        assert_eq!(manifest.status, JobStatus::Succeeded, "seed {seed}: {job}");
        max_attempt = max_attempt.max(manifest.attempt);
        let video = std::fs::read(store.join(job.video_key().as_str())).unwrap();
        let videos: Vec<_> = manifest
            .outputs
            .iter()
            .filter(|o| o.role == "video")
            .collect();
        assert_eq!(videos.len(), 1, "seed {seed}: {job}: {manifest:?}");
        assert_eq!(videos[0].size, video.len() as u64, "seed {seed}: {job}");
        assert_eq!(
            videos[0].sha256.unwrap().to_hex(),
            hex::encode(Sha256::digest(&video)),
            "seed {seed}: {job}"
        );
    }
    assert!(
        max_attempt > 1,
        "seed {seed}: no job was redelivered or taken over"
    );
    // Nothing else under outputs/, no staging leftovers, on disk.
    let mut outputs: Vec<String> = files_under(&store.join("outputs"))
        .iter()
        .map(|p| {
            p.strip_prefix(&store)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    outputs.sort();
    let mut expected: Vec<String> = jobs
        .iter()
        .flat_map(|job| [job.manifest_key().to_string(), job.video_key().to_string()])
        .collect();
    expected.sort();
    assert_eq!(outputs, expected, "seed {seed}");
    let others: Vec<_> = files_under(&store)
        .into_iter()
        .filter(|p| !p.starts_with(store.join("outputs")) && !p.starts_with(store.join("inputs")))
        .collect();
    assert!(
        others.is_empty(),
        "seed {seed}: staging leftovers {others:?}"
    );
    assert_eq!(
        files_under(&store.join("inputs")).len(),
        2 * JOBS,
        "seed {seed}"
    );
}

/// Across processes: `sonic cancel` stops a running job (no video, `cancelled`), and a worker
/// stopped with SIGTERM hands its running job back, which another worker finishes.
#[cfg(unix)]
#[test]
#[ignore = "needs nats-server: apt-get install nats-server"]
fn cancel_stops_a_running_job_and_sigterm_hands_one_to_another_worker() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use sonic::storage::{JobRef, JobStatus, Storage};
    use sonic_service::{JobPhase, JobState, Queue, QueueConfig, UploadInput, submit_job};

    let _turn = one_fleet_at_a_time();

    let nats = sonic_service::testing::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let store_arg = store.to_str().unwrap().to_owned();
    // Workers log to files: a pipe nobody reads until the end would stop a chatty worker
    // once its buffer fills, and the logs go into the failure text.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log_of = |name: &str| logs.join(format!("{name}.log"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let queue = runtime
        .block_on(Queue::connect(nats.url(), QueueConfig::default()))
        .unwrap();
    let storage = Storage::open(&store_arg).unwrap();
    let spawn = |name: &str, extra: &[&str]| {
        worker_command(dir.path(), &tmp, nats.url(), &store_arg, name)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log_of(name)).unwrap())
            .spawn()
            .unwrap()
    };
    let worker_logs = || -> String {
        ["a", "b"]
            .iter()
            .map(|name| {
                let log = std::fs::read_to_string(log_of(name)).unwrap_or_default();
                format!("--- worker {name} ---\n{log}")
            })
            .collect()
    };
    // Long enough to act on while it denoises.
    let submit = |id: &str| -> JobRef {
        let job = JobRef::parse("local", id).unwrap();
        let read = |name: &str| -> Vec<u8> {
            std::fs::read(format!("{}/assets/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        runtime
            .block_on(submit_job(
                &queue,
                &storage,
                &job,
                UploadInput {
                    bytes: read("portrait.png").into(),
                    ext: "png".into(),
                },
                UploadInput {
                    bytes: read("speech.wav").into(),
                    ext: "wav".into(),
                },
                serde_json::json!({
                    "min_resolution": 64,
                    "inference_steps": 25,
                    "interpolation": false,
                    "duration": 2.0,
                    "face": {"mode": "box", "x": 18.6, "y": 12.3, "width": 27.2, "height": 33.9},
                }),
            ))
            .unwrap();
        job
    };
    let wait_for = |job: &JobRef, what: &str, done: &dyn Fn(&JobState) -> bool| -> JobState {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let (state, _) = runtime.block_on(queue.board().get(job)).unwrap();
            if done(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{job}: never {what}: {state:?}\n{}",
                worker_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let denoising = |worker: &'static str| {
        move |state: &JobState| {
            state.state == JobPhase::Running
                && state.worker.as_deref() == Some(worker)
                && state.stage.as_deref() == Some("denoise")
        }
    };
    let mut workers = Children(vec![(spawn("a", &[]), "a".into())]);

    // Cancelled while it denoises.
    let cancelled = submit("cancel-me");
    wait_for(&cancelled, "denoising on a", &denoising("a"));
    let cancel = run_in(
        dir.path(),
        &["cancel", "--nats", nats.url(), "--job", "cancel-me"],
    );
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    assert!(text(&cancel.stdout).contains("cancellation requested"));
    let state = wait_for(&cancelled, "finished", &|s| s.is_terminal());
    assert_eq!(state.state, JobPhase::Cancelled, "{state:?}");
    let manifest = runtime.block_on(storage.read_manifest(&cancelled)).unwrap();
    assert_eq!(manifest.status, JobStatus::Cancelled, "{manifest:?}");
    assert!(!store.join(cancelled.video_key().as_str()).exists());

    // SIGTERM while it denoises: handed back at once, finished by b.
    let handed = submit("hand-me-over");
    wait_for(&handed, "denoising on a", &denoising("a"));
    // b serves two devices (two consumers, one job each) and its metrics.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    workers.0.push((
        spawn("b", &["--device", "cpu,cpu", "--metrics", &metrics_addr]),
        "b".into(),
    ));
    let a = workers.0.remove(0).0;
    let output = stop_within(a, "TERM", Duration::from_secs(30));
    let log = std::fs::read_to_string(log_of("a")).unwrap();
    assert!(output.status.success(), "{log}");
    assert!(log.contains("stopping: job handed back"), "{log}");
    let state = wait_for(&handed, "finished", &|s| s.is_terminal());
    assert_eq!(state.state, JobPhase::Succeeded, "{state:?}");
    assert!(
        matches!(state.worker.as_deref(), Some("b/cpu" | "b/cpu#1")),
        "{state:?}"
    );
    assert_eq!(state.attempt, 2, "{state:?}");
    let manifest = runtime.block_on(storage.read_manifest(&handed)).unwrap();
    assert_eq!(manifest.status, JobStatus::Succeeded, "{manifest:?}");
    let video = std::fs::read(store.join(handed.video_key().as_str())).unwrap();
    let record = manifest.outputs.iter().find(|o| o.role == "video").unwrap();
    assert_eq!(
        record.sha256.unwrap().to_hex(),
        hex::encode(Sha256::digest(&video))
    );

    // b's metrics: two devices, one redelivered job started and succeeded, nothing busy.
    let metrics = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&metrics_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {metrics_addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "sonic_devices 2",
        "sonic_devices_busy 0",
        "sonic_jobs_started_total 1",
        "sonic_jobs_redelivered_total 1",
        "sonic_jobs_finished_total{outcome=\"succeeded\"} 1",
        "sonic_stage_seconds_count{stage=\"denoise\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} in\n{metrics}");
    }
}
