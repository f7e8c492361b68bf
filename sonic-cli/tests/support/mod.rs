//! The whole sonic stack for a test, on loopback: a throw-away `nats-server` (JetStream), an
//! in-process S3 server, `sonic serve --demo` (the HTTP API and the web page) and
//! `sonic worker --demo` processes rendering on the CPU, with tenant keys written for the test.
//!
//! ```ignore
//! mod support;
//! use support::{Stack, StackOptions};
//!
//! let stack = Stack::start(StackOptions::default()); // serve + one worker, tenants acme and globex
//! let key = stack.key("acme");                        // its API key (`Authorization: Bearer KEY`)
//! let page = stack.url("/");                          // http://127.0.0.1:PORT/
//! // ... on failure: panic!("{}", stack.logs());      // the tails of every child's stderr
//! ```
//!
//! - Every child's stderr goes to a file in the stack's temporary directory
//!   ([`Stack::serve_log`], [`Stack::worker_log`], [`Stack::logs`]), stdout is discarded.
//! - Children run with `SONIC_LOG=info`, their own `TMPDIR`, and only the testing S3 keys as
//!   `AWS_*` credentials (anything from the caller's environment is removed).
//! - One store URL, `s3://sonic-stack/run?endpoint=...&region=us-east-1&addressing=path`, holds
//!   inputs and outputs (one bucket) for serve and the workers alike.
//! - Every wait is bounded; [`Stack::start`] panics with the logs when something does not come
//!   up. Dropping the stack kills every child (SIGKILL), then stops the servers.
//!
//! `nats-server` must be installed (`apt-get install nats-server`; `/usr/sbin` is searched
//! too), so tests using this are `#[ignore]`d.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sonic_service::testing::NatsServer;
use sonic_storage::testing::{ACCESS_KEY, S3Server, SECRET_KEY};

/// The bucket the stack's store URL points into (created on the S3 server).
pub const BUCKET: &str = "sonic-stack";
/// The prefix under [`BUCKET`].
pub const PREFIX: &str = "run";
/// The bundled 64×64 portrait the demo weights are made for.
pub const PORTRAIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/portrait.png");
/// The bundled speech recording.
pub const SPEECH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/speech.wav");
/// The workspace's target directory (for artefacts a test leaves to look at: screenshots ...).
pub const TARGET_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/");

/// The binary under test.
pub fn sonic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
}

/// What [`Stack::start`] starts.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// How many `sonic worker --demo` processes (default 1; 0 for none).
    pub workers: usize,
    /// The tenants to write keys for (default `acme` and `globex`).
    pub tenants: Vec<String>,
    /// Extra arguments of `sonic serve` (e.g. `--rate-limit 2`, `--link-expiry-secs 60`).
    pub serve_args: Vec<String>,
    /// Extra arguments of every `sonic worker`.
    pub worker_args: Vec<String>,
    /// Extra environment of every child (serve and workers), set after the stack's own.
    pub env: Vec<(String, String)>,
    /// `--ack-wait-secs` of serve and the workers (default 10: a killed worker's job comes back
    /// within seconds).
    pub ack_wait_secs: u64,
    /// `--max-deliveries` of serve and the workers (default 5).
    pub max_deliveries: u32,
    /// How long [`Stack::start`] waits for `/readyz` to answer 200 (default 60 s).
    pub ready_timeout: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            tenants: vec!["acme".into(), "globex".into()],
            serve_args: Vec::new(),
            worker_args: Vec::new(),
            env: Vec::new(),
            ack_wait_secs: 10,
            max_deliveries: 5,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

impl StackOptions {
    /// `n` workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds arguments to `sonic serve`.
    pub fn serve_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.serve_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds arguments to every `sonic worker`.
    pub fn worker_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.worker_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `name=value` in every child's environment.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// A child process and where its stderr goes.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// The running stack (see the module documentation). Dropping it kills every child, then
/// stops nats-server and the S3 server.
pub struct Stack {
    // Children first: they are killed (in Drop) before the servers they talk to go away.
    serve: Proc,
    workers: Vec<Proc>,
    spawned_workers: usize,
    options: StackOptions,
    base_url: String,
    store_url: String,
    keys: Vec<(String, String)>,
    keys_file: PathBuf,
    nats: NatsServer,
    s3: S3Server,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Starts nats-server, the S3 server (with [`BUCKET`]), writes the keys file, starts
    /// `sonic serve --demo --listen 127.0.0.1:0` and `options.workers` workers, and returns
    /// once `GET /readyz` answers 200. Panics (with every log's tail) when serve does not print
    /// its address or is not ready within `options.ready_timeout`.
    pub fn start(options: StackOptions) -> Self {
        let nats = NatsServer::start();
        let s3 = S3Server::spawn();
        s3.create_bucket(BUCKET);
        let dir = tempfile::tempdir().expect("the stack's temporary directory");
        for sub in ["tmp", "logs"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let store_url = format!(
            "s3://{BUCKET}/{PREFIX}?endpoint={}&region=us-east-1&addressing=path",
            s3.endpoint()
        );

        // One random key per tenant; the file holds only their SHA-256.
        let keys: Vec<(String, String)> = options
            .tenants
            .iter()
            .map(|tenant| (tenant.clone(), format!("sk-{tenant}-{}", random_hex(16))))
            .collect();
        let keys_file = dir.path().join("api-keys");
        let mut text = String::from("# tenant sha256:hex(sha256(key)), written by the test\n");
        for (tenant, key) in &keys {
            text.push_str(&format!("{tenant} sha256:{}\n", sha256_hex(key)));
        }
        std::fs::write(&keys_file, text).unwrap();

        let placeholder = Proc {
            name: "serve".into(),
            child: None,
            log: dir.path().join("logs/serve.log"),
        };
        let mut stack = Self {
            serve: placeholder,
            workers: Vec::new(),
            spawned_workers: 0,
            options,
            base_url: String::new(),
            store_url,
            keys,
            keys_file,
            nats,
            s3,
            dir,
        };
        stack.start_serve();
        for _ in 0..stack.options.workers {
            stack.add_worker();
        }
        stack.wait_ready();
        stack
    }

    /// `sonic serve ...`, its address read from its log.
    fn start_serve(&mut self) {
        let log = self.serve.log.clone();
        let mut command = sonic();
        command
            .args([
                "serve",
                "--nats",
                self.nats.url(),
                "--store",
                &self.store_url,
                "--listen",
                "127.0.0.1:0",
                "--api-keys",
                self.keys_file.to_str().unwrap(),
                "--demo",
                "--ack-wait-secs",
                &self.options.ack_wait_secs.to_string(),
                "--max-deliveries",
                &self.options.max_deliveries.to_string(),
            ])
            .args(&self.options.serve_args);
        let child = self.spawn(command, &log);
        self.serve.child = Some(child);

        let deadline = Instant::now() + self.options.ready_timeout;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|line| line.trim().strip_prefix("listening on "))
            {
                self.base_url = url.trim().trim_end_matches('/').to_owned();
                return;
            }
            let exited = self
                .serve
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "sonic serve exited ({status}) before listening\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "sonic serve printed no `listening on` line within {:?}\n{}",
                    self.options.ready_timeout,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns `command` in the stack's directory with its environment and stderr to `log`.
    fn spawn(&self, mut command: Command, log: &Path) -> Child {
        let file = std::fs::File::create(log).expect("a log file");
        command
            .current_dir(self.dir.path())
            .env("TMPDIR", self.dir.path().join("tmp"));
        for name in [
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT",
            "AWS_ENDPOINT_URL",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "SONIC_STORE",
            "SONIC_NATS",
            "SONIC_API_KEYS_FILE",
            "SONIC_API_KEYS",
            "SONIC_S3_CREDENTIALS_FILE",
            // Loopback only: no proxy in between.
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env_remove(name);
        }
        command
            .env("SONIC_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
    }

    /// Waits until `GET /readyz` answers 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + self.options.ready_timeout;
        loop {
            let last = match http_get(&self.base_url, "/readyz", &[]) {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status}: {body}"),
                Err(e) => e,
            };
            if let Some(status) = self
                .serve
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "sonic serve exited ({status}) before it was ready\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{}/readyz did not answer 200 within {:?} (last: {last})\n{}",
                    self.base_url,
                    self.options.ready_timeout,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts one more `sonic worker --demo --device cpu` (named `w1`, `w2` ... in start
    /// order) and returns its index for [`worker_log`](Self::worker_log) and
    /// [`kill_worker`](Self::kill_worker).
    pub fn add_worker(&mut self) -> usize {
        self.spawned_workers += 1;
        let name = format!("w{}", self.spawned_workers);
        let log = self.dir.path().join(format!("logs/{name}.log"));
        let mut command = sonic();
        command
            .args([
                "worker",
                "--nats",
                self.nats.url(),
                "--store",
                &self.store_url,
                "--demo",
                "--device",
                "cpu",
                "--name",
                &name,
                "--ack-wait-secs",
                &self.options.ack_wait_secs.to_string(),
                "--max-deliveries",
                &self.options.max_deliveries.to_string(),
            ])
            .args(&self.options.worker_args);
        let child = self.spawn(command, &log);
        self.workers.push(Proc {
            name,
            child: Some(child),
            log,
        });
        self.workers.len() - 1
    }

    /// Kills worker `index` (SIGKILL) and waits for it; its log stays.
    pub fn kill_worker(&mut self, index: usize) {
        self.workers[index].kill();
    }

    /// The process id of worker `index` (to signal it), if it runs.
    pub fn worker_pid(&self, index: usize) -> Option<u32> {
        self.workers[index].child.as_ref().map(Child::id)
    }

    /// The name worker `index` was given (`--name`).
    pub fn worker_name(&self, index: usize) -> &str {
        &self.workers[index].name
    }

    /// The process id of `sonic serve`.
    pub fn serve_pid(&self) -> Option<u32> {
        self.serve.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The API key of `tenant`; panics for a tenant the stack has no key for.
    pub fn key(&self, tenant: &str) -> &str {
        self.keys
            .iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, k)| k.as_str())
            .unwrap_or_else(|| panic!("no key for tenant {tenant}"))
    }

    /// The tenants with keys, in order.
    pub fn tenants(&self) -> Vec<&str> {
        self.keys.iter().map(|(t, _)| t.as_str()).collect()
    }

    /// The keys file serve reads (`TENANT sha256:HEX` lines).
    pub fn keys_file(&self) -> &Path {
        &self.keys_file
    }

    /// The S3 server (its data directory is [`S3Server::root`]; objects are under
    /// `root/BUCKET/PREFIX/...`).
    pub fn s3(&self) -> &S3Server {
        &self.s3
    }

    /// A [`Storage`](sonic_storage::Storage) on the stack's store, as the children see it.
    pub fn storage(&self) -> sonic_storage::Storage {
        let config = self
            .s3
            .config(BUCKET, PREFIX, sonic_storage::Addressing::Path);
        sonic_storage::Storage::from_configs(&config, &config).expect("the stack's store")
    }

    /// The nats-server.
    pub fn nats(&self) -> &NatsServer {
        &self.nats
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn nats_url(&self) -> &str {
        self.nats.url()
    }

    /// The `--store` URL every child got (the credentials are `AWS_*` in their environment).
    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// The stack's temporary directory (children's working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file serve's stderr goes to.
    pub fn serve_log_path(&self) -> &Path {
        &self.serve.log
    }

    /// Serve's stderr so far.
    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(&self.serve.log).unwrap_or_default()
    }

    /// The file worker `index`'s stderr goes to.
    pub fn worker_log_path(&self, index: usize) -> &Path {
        &self.workers[index].log
    }

    /// Worker `index`'s stderr so far (`worker_log(0)`: the first worker's).
    pub fn worker_log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.workers[index].log).unwrap_or_default()
    }

    /// The last 40 lines of every child's stderr (and nats-server's log), for panic messages.
    pub fn logs(&self) -> String {
        self.logs_tail(40)
    }

    /// The last `lines` lines of every child's stderr (and nats-server's log).
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for proc in std::iter::once(&self.serve).chain(&self.workers) {
            let text = std::fs::read_to_string(&proc.log).unwrap_or_default();
            out.push_str(&format!(
                "--- {} ({})\n{}\n",
                proc.name,
                proc.log.display(),
                tail(&text, lines)
            ));
        }
        out.push_str(&format!(
            "--- nats-server\n{}\n",
            tail(&self.nats.log(), lines.min(10))
        ));
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.serve.kill();
        for worker in &mut self.workers {
            worker.kill();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lowercase hex SHA-256 of `text` (what the keys file holds).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `bytes` random bytes as hex: /dev/urandom, else a hash of the clock and the process.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if read.is_err() {
        let seed = format!("{:?}{}", Instant::now(), std::process::id());
        let digest = Sha256::digest(seed.as_bytes());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = digest[i % digest.len()];
        }
    }
    hex::encode(buf)
}

/// A free 127.0.0.1 port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A minimal blocking HTTP/1.1 request to `base` (`http://127.0.0.1:PORT`): `method path`
/// with `headers` and `body`, `Connection: close`, 10 s timeouts. Returns the status and the
/// body as text (chunked bodies are de-chunked). For checks without an async runtime; use
/// [`client`] for anything more.
pub fn http_request(
    method: &str,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let host = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base} is not an http:// URL"))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream.set_read_timeout(timeout).ok();
    stream.set_write_timeout(timeout).ok();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| format!("write: {e}"))?;
    // Read until the body is complete (by Content-Length, the last chunk, or the connection
    // closing): some servers (chromedriver) keep the connection open despite `close`.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (split, head, chunked) = loop {
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the connection closed before the headers ended: {:?}",
                String::from_utf8_lossy(&response)
            ));
        }
        response.extend_from_slice(&buf[..n]);
        if let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
            let chunked = head
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
            break (split, head, chunked);
        }
    };
    let length: Option<usize> = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse().ok())
    });
    let complete = |response: &[u8]| match length {
        Some(length) => response.len() >= split + 4 + length,
        None if chunked => response.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    while !complete(&response) {
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let body = &response[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `GET path` (see [`http_request`]).
pub fn http_get(base: &str, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    http_request("GET", base, path, headers, b"")
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let rest = &body[eol + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                out.extend_from_slice(&rest[..size]);
                body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    out
}

/// An async reqwest client (rustls on `ring`, installed once) with a 60 s timeout; build it
/// inside a tokio runtime's context or before one.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}
