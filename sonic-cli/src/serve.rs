//! `sonic serve`: the HTTP API and web page over the job service; `sonic api-key`: a tenant's
//! key.
//!
//! ```text
//! sonic api-key --tenant acme >> keys.txt        # prints the key once, on stderr
//! sonic serve --nats nats://127.0.0.1:4222 --store s3://videos/prod --api-keys keys.txt
//! ```
//!
//! Every flag also reads an environment variable: `SONIC_LISTEN`, `SONIC_API_KEYS_FILE`,
//! `SONIC_API_KEYS` (entries inline), `SONIC_LINK_EXPIRY_SECS`, `SONIC_RATE_LIMIT`,
//! `SONIC_CORS_ORIGINS`, `SONIC_BUCKET_EVENTS`, `SONIC_MAX_IMAGE_MB`, `SONIC_MAX_AUDIO_MB`, and
//! those of the queue and the store (`SONIC_NATS`, `SONIC_STORE` ...).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sonic::storage::TenantId;
use sonic_http::{Api, ApiConfig, ApiKeys, InputLimits, RateLimit};
use sonic_service::CancellationToken;

use crate::service::{Connection, init_logs};

/// Serve the HTTP API and the web page, until SIGINT or SIGTERM.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    connection: Connection,
    /// Where to listen (port 0 picks a free one; the address is printed).
    #[arg(long, env = "SONIC_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The tenants' keys: a file of `TENANT sha256:HEX` lines (see `sonic api-key`).
    #[arg(long, env = "SONIC_API_KEYS_FILE")]
    api_keys: Option<PathBuf>,
    /// Seconds a video's signed link works.
    #[arg(long, env = "SONIC_LINK_EXPIRY_SECS", default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    link_expiry_secs: u64,
    /// Requests per second per key (bursts of twice as many); 0: unlimited.
    #[arg(long, env = "SONIC_RATE_LIMIT", default_value_t = 20.0)]
    rate_limit: f64,
    /// Origins allowed to call the API from pages elsewhere (CORS), separated by commas; none
    /// by default.
    #[arg(long, env = "SONIC_CORS_ORIGINS", value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// A NATS subject of S3-style bucket notifications (MinIO's NATS target, OSS events
    /// through an event bridge): start-on-upload jobs start when their files arrive.
    #[arg(long, env = "SONIC_BUCKET_EVENTS")]
    bucket_events: Option<String>,
    /// The largest portrait accepted, in MiB.
    #[arg(long, env = "SONIC_MAX_IMAGE_MB", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_image_mb: u64,
    /// The largest speech file accepted, in MiB.
    #[arg(long, env = "SONIC_MAX_AUDIO_MB", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_audio_mb: u64,
    /// Default parameters for the demo workers (`sonic worker --demo`): their size and the
    /// bundled portrait's face box, under what requests give.
    #[arg(long)]
    demo: bool,
}

/// Print a new API key for a tenant (on stderr) and its keys file entry (on stdout).
#[derive(Debug, clap::Args)]
pub struct ApiKeyArgs {
    /// The tenant the key belongs to.
    #[arg(long)]
    tenant: String,
}

/// Runs `sonic api-key`.
///
/// # Errors
/// A tenant id that is not valid.
pub fn api_key(args: ApiKeyArgs) -> Result<(), String> {
    let tenant = TenantId::new(&args.tenant).map_err(|e| crate::report(&e))?;
    let new = ApiKeys::generate(&tenant);
    eprintln!("key for tenant {tenant} (shown once; the server keeps only its hash):");
    eprintln!("{}", new.key);
    println!("{}", new.entry);
    Ok(())
}

fn keys(args: &ServeArgs) -> Result<ApiKeys, String> {
    let mut keys = ApiKeys::none();
    if let Some(path) = &args.api_keys {
        keys = keys.merge(ApiKeys::from_file(path).map_err(|e| crate::report(&e))?);
    }
    if let Ok(inline) = std::env::var("SONIC_API_KEYS") {
        keys =
            keys.merge(ApiKeys::parse(&inline, "SONIC_API_KEYS").map_err(|e| crate::report(&e))?);
    }
    Ok(keys)
}

/// Runs `sonic serve`.
///
/// # Errors
/// A message for a bad argument, a keys file that cannot be read, an unreachable queue or an
/// address that cannot be listened on.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    init_logs();
    let keys = keys(&args)?;
    let storage = args.connection.storage()?;
    let queue = args.connection.queue().await?;
    let mut config = ApiConfig::default();
    config.link_expiry = Duration::from_secs(args.link_expiry_secs);
    config.rate_limit = (args.rate_limit > 0.0).then(|| RateLimit {
        per_second: args.rate_limit,
        burst: (args.rate_limit * 2.0).ceil().min(f64::from(u32::MAX)) as u32,
    });
    config.cors_origins = args.cors_origin.clone();
    config.limits = InputLimits {
        max_image_bytes: args.max_image_mb << 20,
        max_audio_bytes: args.max_audio_mb << 20,
    };
    if args.demo {
        let serde_json::Value::Object(demo) = serde_json::json!({
            "min_resolution": crate::demo::MIN_RESOLUTION,
            "face": serde_json::to_value(crate::demo::FACE).map_err(|e| e.to_string())?,
        }) else {
            unreachable!("a JSON object");
        };
        config.default_parameters = demo;
    }
    let tenants = keys.len();
    let api = Api::new(queue, storage, keys, config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let stop = CancellationToken::new();
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            if crate::generate::signal().await.is_ok() {
                eprintln!("stopping: open requests are finished first");
                stop.cancel();
            }
        }
    });
    let events = args.bucket_events.clone().map(|subject| {
        let api = api.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = api.run_bucket_events(&subject, stop).await {
                eprintln!("error: --bucket-events {subject}: {e}");
            }
        })
    });
    eprintln!(
        "{} key(s); queue {}, store {}",
        tenants, args.connection.nats, args.connection.store
    );
    eprintln!("listening on http://{bound}");
    let served = sonic_http::serve(listener, api, {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    })
    .await;
    stop.cancel();
    signals.abort();
    if let Some(events) = events {
        let _ = events.await;
    }
    served.map_err(|e| format!("serving on {bound}: {e}"))
}
