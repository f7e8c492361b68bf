//! # sonic-http
//!
//! The sonic web service: an HTTP API over the job service ([`sonic_service`]) and a web page,
//! served with axum. `sonic serve` runs it; [`Api`] embeds it in your own server.
//!
//! ```text
//! client ── POST /v1/uploads ──▶ presigned PUT URLs ──▶ the bucket (inputs/{tenant}/{job}/…)
//!        ── POST /v1/jobs {job}            ─┐
//!        ── POST /v1/jobs (multipart)      ─┼─▶ checks ─▶ manifest, board, queue ─▶ workers
//!        ── upload-complete hook / bucket  ─┘
//!           notification on NATS
//!        ── GET /v1/jobs/{id}[/events] ◀── board (KV) + manifest + signed link to the MP4
//! ```
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the web page (embedded; nothing from a CDN) |
//! | `POST /v1/uploads` | presigned upload URLs for a job's portrait and speech |
//! | `POST /v1/jobs` | submit: JSON naming an upload, or `multipart/form-data` with the files |
//! | `GET /v1/jobs` | the tenant's jobs, a page at a time (`limit`, `after`) |
//! | `GET /v1/jobs/{id}` | state, progress, timings, and the video's signed link |
//! | `GET /v1/jobs/{id}/events` | the same as Server-Sent Events, until it ends |
//! | `DELETE /v1/jobs/{id}` | cancel |
//! | `POST /v1/hooks/upload-complete` | start a `start_on_upload` job whose files are in |
//! | `GET /openapi.json` | the OpenAPI 3 document ([`ApiDoc`]) |
//! | `GET /healthz`, `GET /readyz` | up; queue and store reachable |
//!
//! **Tenants.** Every `/v1` request carries `Authorization: Bearer <key>`; the tenant is the
//! key's ([`ApiKeys`], stored as SHA-256 hashes), never something the request says. With no
//! key configured every `/v1` request is 401. Another tenant's job is 404, like a job that
//! does not exist.
//!
//! **Checks before anything is stored.** Parameters through `GenerationParams::validate`
//! (over the server's defaults), files by their content (a PNG named `.wav` is refused) and
//! fully decoded, sizes within [`InputLimits`]. Errors are RFC 9457 problem details
//! ([`Problem`]) naming the field at fault.
//!
//! **Limits.** Body size, body timeouts, a token bucket per key ([`RateLimit`]); CORS off
//! unless origins are configured ([`ApiConfig::cors_origins`]). Keys are never logged: one
//! `tracing` span per request carries method, path, tenant and job.
#![deny(missing_docs)]

mod api;
mod auth;
mod config;
mod events;
mod handlers;
mod inputs;
mod notify;
mod openapi;
mod problem;
mod ratelimit;
mod view;

pub use api::{Api, serve};
pub use auth::{ApiKeys, KeysError, NewKey};
pub use config::{ApiConfig, MAX_PAGE_SIZE};
pub use events::{EVENTS_QUEUE_GROUP, NotificationOutcome};
pub use inputs::InputLimits;
pub use notify::{NotificationError, ObjectCreated, job_input_of, parse_notification};
pub use openapi::{ApiDoc, document_value as openapi_document};
pub use problem::{PROBLEM_JSON, Problem};
pub use ratelimit::RateLimit;
pub use view::{
    JobList, JobView, SignedUpload, SubmitRequest, UploadComplete, UploadRequest, UploadResponse,
    VideoView,
};
