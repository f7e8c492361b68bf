//! The API's state, its router and the middleware around the handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sonic_service::Queue;
use sonic_storage::{Storage, TenantId};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::Instrument;

use crate::auth::{ApiKeys, bearer};
use crate::config::ApiConfig;
use crate::problem::Problem;
use crate::ratelimit::RateLimiter;
use crate::{handlers, openapi};

/// The web service: the job queue, the store, the tenants' keys and the settings, shared by
/// every request (cloning is cheap).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sonic_http::{Api, ApiConfig, ApiKeys};
/// let queue = sonic_service::Queue::connect("nats://127.0.0.1:4222", Default::default()).await?;
/// let storage = sonic_storage::Storage::open("s3://videos/prod")?;
/// let keys = ApiKeys::from_file("keys.txt".as_ref())?;
/// let api = Api::new(queue, storage, keys, ApiConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// sonic_http::serve(listener, api, std::future::pending()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Api {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) queue: Queue,
    pub(crate) storage: Storage,
    pub(crate) keys: ApiKeys,
    pub(crate) config: ApiConfig,
    pub(crate) limiter: Option<RateLimiter>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("keys", &self.inner.keys)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// The service on `queue` and `storage`, admitting `keys`. With no keys every `/v1`
    /// request is 401; the page, health checks and OpenAPI document stay open.
    pub fn new(queue: Queue, storage: Storage, keys: ApiKeys, config: ApiConfig) -> Self {
        if keys.is_empty() {
            tracing::warn!("no API keys configured: every /v1 request will be refused (401)");
        }
        let limiter = config.rate_limit.map(RateLimiter::new);
        Self {
            inner: Arc::new(Inner {
                queue,
                storage,
                keys,
                config,
                limiter,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The store.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// Every route, with its middleware: body limits, body timeouts, CORS (if configured) and
    /// one `tracing` span per request (method, path, tenant, status; never a header).
    pub fn router(&self) -> Router {
        let config = &self.inner.config;
        let upload_limit = usize::try_from(
            config
                .limits
                .max_image_bytes
                .saturating_add(config.limits.max_audio_bytes)
                .saturating_add(1 << 20),
        )
        .unwrap_or(usize::MAX);
        let v1 = Router::new()
            .route(
                "/v1/jobs",
                post(handlers::submit)
                    .layer(DefaultBodyLimit::max(upload_limit))
                    .get(handlers::list_jobs),
            )
            .route(
                "/v1/jobs/{job}",
                get(handlers::get_job).delete(handlers::cancel_job),
            )
            .route("/v1/jobs/{job}/events", get(handlers::job_events))
            .route("/v1/uploads", post(handlers::create_upload))
            .route("/v1/hooks/upload-complete", post(handlers::upload_complete));
        let mut router = Router::new()
            .route("/", get(page))
            .route("/healthz", get(handlers::healthz))
            .route("/readyz", get(handlers::readyz))
            .route("/openapi.json", get(openapi::document))
            .merge(v1)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(config.json_limit))
            .layer(RequestBodyTimeoutLayer::new(config.upload_timeout))
            .layer(middleware::from_fn(trace_request))
            .with_state(self.clone());
        if !config.cors_origins.is_empty() {
            let origins: Vec<HeaderValue> = config
                .cors_origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok())
                .collect();
            router = router.layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::list(origins))
                    .allow_methods([Method::GET, Method::POST, Method::DELETE])
                    .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                    .max_age(Duration::from_secs(600)),
            );
        }
        router
    }
}

/// Serves `api` on `listener` until `shutdown` resolves, then lets open requests finish.
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, api.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The tenant of an authenticated request (from its bearer key), after its rate limit.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) tenant: TenantId,
}

impl FromRequestParts<Api> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Problem> {
        let keys = &api.inner.keys;
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "send `Authorization: Bearer <key>` (the server gives out keys per tenant)",
            ));
        };
        if keys.is_empty() {
            return Err(Problem::unauthorized(
                "this server has no API keys configured, so it admits no request",
            ));
        }
        let Some(token) = value.to_str().ok().and_then(bearer) else {
            return Err(Problem::unauthorized(
                "the Authorization header is not `Bearer <key>`",
            ));
        };
        let Some(tenant) = keys.tenant_of(token) else {
            return Err(Problem::unauthorized("unknown key"));
        };
        tracing::Span::current().record("tenant", tracing::field::display(tenant));
        if let Some(limiter) = &api.inner.limiter
            && let Err(wait) = limiter.take(tenant, Instant::now())
        {
            return Err(Problem::rate_limited(wait.as_secs().max(1)));
        }
        Ok(Caller {
            tenant: tenant.clone(),
        })
    }
}

/// One span per request; a line at `debug` (`warn` for a 5xx).
async fn trace_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
        job = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        let status = response.status();
        let millis = started.elapsed().as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), millis, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), millis, "request");
        }
        response
    }
    .instrument(span)
    .await
}

async fn not_found(request: Request) -> Problem {
    Problem::route_not_found(request.uri().path())
}

async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// The web page (embedded; it fetches nothing from elsewhere).
pub(crate) const PAGE: &str = include_str!("../assets/index.html");

async fn page(State(_api): State<Api>) -> Response {
    let mut response = Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' blob: data:; media-src 'self' blob: https: http:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
