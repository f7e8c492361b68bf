//! The handlers: thin over the job service ([`sonic_service`]) and the store.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use sonic::pipeline::{GenerationParams, ParamError};
use sonic_service::{
    JobPhase, JobState, ServiceError, UploadInput, record_failure, submit_job, submit_stored_job,
};
use sonic_storage::{InputKind, JobId, JobRef, ObjectKey, ObjectStorageExt, StorageError};
use utoipa::IntoParams;

use crate::api::{Api, Caller};
use crate::config::MAX_PAGE_SIZE;
use crate::inputs::{CheckedInput, check_input, ext_for};
use crate::problem::{ApiResult, Problem};
use crate::view::{
    JobList, JobView, SignedUpload, SubmitRequest, UPLOAD_RECORD, UploadComplete, UploadRequest,
    UploadResponse, UploadSession, VideoView,
};

// ---------------------------------------------------------------------------------------------
// Errors of the layers below, as problems.

/// An error and its causes, `outer: cause`.
fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

fn service_problem(job: &JobRef, error: ServiceError) -> Problem {
    match error {
        ServiceError::NotFound { .. } => Problem::job_not_found(job.job.as_str()),
        ServiceError::Finished { status, .. } => Problem::conflict(
            "job-finished",
            "Job finished",
            format!("job `{}` has finished ({status:?})", job.job),
        )
        .with_field("job"),
        ServiceError::Storage { source, .. } => storage_problem(job, &source),
        error @ ServiceError::Nats { .. } => {
            tracing::warn!(error = %report(&error), "the queue failed");
            Problem::unavailable(format!("the job queue: {}", report(&error)))
        }
        error => {
            tracing::warn!(error = %report(&error), "the job service failed");
            Problem::internal(report(&error))
        }
    }
}

fn storage_problem(job: &JobRef, error: &StorageError) -> Problem {
    match error {
        StorageError::NotFound { .. } => Problem::job_not_found(job.job.as_str()),
        StorageError::AlreadyExists { .. } => Problem::conflict(
            "job-exists",
            "Job exists",
            format!("job `{}` exists already; pick another id", job.job),
        )
        .with_field("job"),
        StorageError::NotSupported { .. } => Problem::not_supported(report(error)),
        StorageError::Timeout { .. } | StorageError::Backend { .. } => {
            tracing::warn!(error = %report(error), "the store failed");
            Problem::unavailable(format!("the store: {}", report(error)))
        }
        _ => {
            tracing::warn!(error = %report(error), "the store failed");
            Problem::internal(format!("the store: {}", report(error)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request parts.

/// A JSON body: 415 without `application/json`, 413 over the limit, 400 when it is not JSON,
/// 422 naming the field when it does not fit the schema.
pub(crate) struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Api> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, api: &Api) -> Result<Self, Problem> {
        if !is_json(&request) {
            return Err(Problem::unsupported_media_type(
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(request, api).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

async fn read_body(request: Request, api: &Api) -> Result<Bytes, Problem> {
    Bytes::from_request(request, api)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large(
                    "body",
                    format!(
                        "the body is over the limit of {} bytes",
                        api.config().json_limit
                    ),
                )
            } else {
                Problem::bad_request(format!("cannot read the body: {}", rejection.body_text()))
            }
        })
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| schema_problem("", &e.to_string()))
}

/// A problem for a serde error `message` on the object at `prefix` (`""` or `parameters.`),
/// naming the field where serde says which.
fn schema_problem(prefix: &str, message: &str) -> Problem {
    let quoted = |marker: &str| {
        let rest = message.split_once(marker)?.1;
        let name = rest.strip_prefix('`')?.split('`').next()?;
        Some(name.to_owned())
    };
    let field = quoted("unknown field ")
        .or_else(|| quoted("missing field "))
        .map(|name| format!("{prefix}{name}"))
        .unwrap_or_else(|| prefix.trim_end_matches('.').to_owned());
    let (slug, title) = if message.starts_with("unknown field") {
        ("unknown-field", "Unknown field")
    } else {
        ("invalid-field", "Invalid field")
    };
    let problem = Problem::invalid(slug, title, field.clone(), message.to_owned());
    if field.is_empty() {
        Problem {
            field: None,
            ..problem
        }
    } else {
        problem
    }
}

/// The job id a request names (`None`: a new one).
fn job_id(given: Option<&str>) -> Result<JobId, Problem> {
    match given {
        Some(id) => JobId::new(id).map_err(|e| {
            Problem::invalid("invalid-job-id", "Invalid job id", "job", e.to_string())
        }),
        None => Ok(JobId::new(uuid::Uuid::new_v4().simple().to_string())
            .expect("a uuid is a valid job id")),
    }
}

fn job_ref(caller: &Caller, job: &str) -> Result<JobRef, Problem> {
    // A malformed id is a job that does not exist: the same answer as another tenant's.
    let job_ref = JobId::new(job)
        .map(|id| JobRef::new(caller.tenant.clone(), id))
        .map_err(|_| Problem::job_not_found(job))?;
    tracing::Span::current().record("job", tracing::field::display(&job_ref.job));
    Ok(job_ref)
}

impl Api {
    /// The parameters of a job: the server's defaults under what the request gives, checked.
    /// Returns them as they will be queued.
    fn parameters(&self, given: Option<serde_json::Value>) -> ApiResult<serde_json::Value> {
        let mut merged = self.config().default_parameters.clone();
        match given {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(given)) => merged.extend(given),
            Some(_) => {
                return Err(Problem::invalid(
                    "invalid-field",
                    "Invalid field",
                    "parameters",
                    "`parameters` must be a JSON object",
                ));
            }
        }
        let merged = serde_json::Value::Object(merged);
        let params: GenerationParams = serde_json::from_value(merged.clone())
            .map_err(|e| schema_problem("parameters.", &e.to_string()))?;
        params.validate().map_err(|e| {
            let field = match &e {
                ParamError::OutOfRange { parameter, .. } => format!("parameters.{parameter}"),
                _ => "parameters".to_owned(),
            };
            Problem::invalid(
                "invalid-parameter",
                "Invalid parameter",
                field,
                e.to_string(),
            )
        })?;
        Ok(merged)
    }

    async fn read_session(&self, job: &JobRef) -> ApiResult<Option<UploadSession>> {
        let key = job
            .output_key(UPLOAD_RECORD)
            .map_err(|e| storage_problem(job, &e))?;
        match self.storage().outputs().get_bytes(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Problem::internal(format!("the upload record of job `{}`: {e}", job.job))
            }),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_problem(job, &e)),
        }
    }

    /// The job as the API shows it: its board entry, completed from its manifest once it
    /// finished (timings, the video and a signed link); an upload not yet complete; 404.
    pub(crate) async fn view(&self, job: &JobRef) -> ApiResult<JobView> {
        match self.queue().board().get(job).await {
            Ok((state, _)) => Ok(self
                .complete(job, JobView::from_state(job.job.as_str(), &state))
                .await),
            Err(ServiceError::NotFound { .. }) => {
                if let Some(session) = self.read_session(job).await? {
                    return Ok(JobView::awaiting_upload(
                        job.job.as_str(),
                        session.created_at,
                    ));
                }
                // A job submitted elsewhere whose board entry is gone: its manifest.
                match self.storage().read_manifest(job).await {
                    Ok(manifest) => {
                        let state = match manifest.status {
                            sonic_storage::JobStatus::Created => JobPhase::Queued,
                            sonic_storage::JobStatus::Running => JobPhase::Running,
                            sonic_storage::JobStatus::Succeeded => JobPhase::Succeeded,
                            sonic_storage::JobStatus::Failed => JobPhase::Failed,
                            sonic_storage::JobStatus::Cancelled => JobPhase::Cancelled,
                            _ => JobPhase::Queued,
                        };
                        let board = JobState::queued()
                            .settled(state, manifest.error.as_ref().map(|e| e.message.clone()));
                        Ok(self
                            .complete(job, JobView::from_state(job.job.as_str(), &board))
                            .await)
                    }
                    Err(StorageError::NotFound { .. }) => {
                        Err(Problem::job_not_found(job.job.as_str()))
                    }
                    Err(e) => Err(storage_problem(job, &e)),
                }
            }
            Err(e) => Err(service_problem(job, e)),
        }
    }

    /// Adds what the manifest knows to a finished job's view.
    async fn complete(&self, job: &JobRef, mut view: JobView) -> JobView {
        if !view.is_terminal() {
            return view;
        }
        let manifest = match self.storage().read_manifest(job).await {
            Ok(manifest) => manifest,
            Err(e) => {
                tracing::debug!(error = %report(&e), "no manifest for a finished job");
                return view;
            }
        };
        view.created_at = Some(manifest.created_at);
        view.timings = manifest.timings.clone();
        if view.state == "succeeded" {
            let record = manifest.outputs.iter().find(|o| o.role == "video");
            let key = job.video_key();
            let (url, expires_at) = match self
                .storage()
                .sign_video(job, self.config().link_expiry)
                .await
            {
                Ok(signed) => (Some(signed.url.to_string()), Some(signed.expires_at)),
                Err(StorageError::NotSupported { .. }) => (None, None),
                Err(e) => {
                    tracing::warn!(error = %report(&e), "cannot sign the video's link");
                    (None, None)
                }
            };
            view.video = Some(VideoView {
                url,
                expires_at,
                key: record.map_or_else(|| key.to_string(), |r| r.key.to_string()),
                sha256: record.and_then(|r| r.sha256.as_ref()).map(|d| d.to_hex()),
                bytes: record.map(|r| r.size),
            });
        }
        view
    }

    /// Checks the inputs a client uploaded to presigned URLs: both there, within the size
    /// limits, of the right kind, readable. An input that fails is deleted, so the client can
    /// upload it again. `Ok(None)`: one is missing still.
    async fn check_uploaded(&self, job: &JobRef) -> ApiResult<Option<(ObjectKey, ObjectKey)>> {
        let storage = self.storage();
        let mut keys = Vec::with_capacity(2);
        for kind in [InputKind::Image, InputKind::Audio] {
            let info = match storage.find_input(job, kind).await {
                Ok(info) => info,
                Err(StorageError::NotFound { .. }) => return Ok(None),
                Err(e) => {
                    let problem = storage_problem(job, &e);
                    return Err(match e {
                        StorageError::AmbiguousInput { .. } => Problem::invalid(
                            "ambiguous-input",
                            "Ambiguous input",
                            kind.stem(),
                            report(&e),
                        ),
                        _ => problem,
                    });
                }
            };
            let limit = self.config().limits.max_bytes(kind);
            let refuse = |problem: Problem| async {
                if let Err(e) = storage.inputs().delete(&info.key).await {
                    tracing::warn!(key = %info.key, error = %report(&e), "cannot delete a refused upload");
                }
                Err(problem)
            };
            if info.size > limit {
                return refuse(Problem::too_large(
                    kind.stem(),
                    format!(
                        "`{}` is {} bytes, over the limit of {limit}",
                        kind.stem(),
                        info.size
                    ),
                ))
                .await;
            }
            let bytes = storage
                .inputs()
                .get_bytes(&info.key)
                .await
                .map_err(|e| storage_problem(job, &e))?;
            let name = info
                .key
                .as_str()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let limits = self.config().limits;
            let checked = tokio::task::spawn_blocking(move || {
                check_input(kind, Some(&name), &bytes, &limits)
            })
            .await
            .map_err(|e| Problem::internal(format!("checking `{}`: {e}", kind.stem())))?;
            if let Err(problem) = checked {
                return refuse(problem).await;
            }
            keys.push(info.key);
        }
        let audio = keys.pop().expect("two inputs");
        let image = keys.pop().expect("two inputs");
        Ok(Some((image, audio)))
    }

    /// Starts a `start_on_upload` job if both its inputs are in: the upload-complete hook and
    /// the bucket notifications. A job whose inputs fail their checks is recorded failed
    /// (board and manifest) with the problem's detail, and the problem is returned.
    pub(crate) async fn start_uploaded(&self, job: &JobRef) -> ApiResult<JobView> {
        let Some(session) = self.read_session(job).await? else {
            return Err(Problem::job_not_found(job.job.as_str()));
        };
        if !session.start_on_upload {
            return Err(Problem::conflict(
                "not-start-on-upload",
                "Job waits for POST /v1/jobs",
                format!(
                    "job `{}` was not created with `start_on_upload`; start it with POST /v1/jobs",
                    job.job
                ),
            )
            .with_field("job"));
        }
        match self.queue().board().get(job).await {
            Ok(_) => return self.view(job).await,
            Err(ServiceError::NotFound { .. }) => {}
            Err(e) => return Err(service_problem(job, e)),
        }
        let (image, audio) = match self.check_uploaded(job).await {
            Ok(Some(keys)) => keys,
            Ok(None) => {
                return Ok(JobView::awaiting_upload(
                    job.job.as_str(),
                    session.created_at,
                ));
            }
            Err(problem) if problem.status().is_client_error() => {
                self.record_refused(job, &problem).await;
                return Err(problem);
            }
            Err(problem) => return Err(problem),
        };
        submit_stored_job(
            self.queue(),
            self.storage(),
            job,
            image,
            audio,
            session.parameters,
        )
        .await
        .map_err(|e| service_problem(job, e))?;
        tracing::info!(job = %job, "job started on upload");
        self.view(job).await
    }

    /// Marks a job whose uploaded inputs were refused failed, on the board and in its manifest.
    async fn record_refused(&self, job: &JobRef, problem: &Problem) {
        let error = problem.to_string();
        if let Err(e) = record_failure(self.storage(), job, &error).await {
            tracing::warn!(error = %report(&e), "cannot record a refused upload in the manifest");
        }
        let state = JobState::queued().settled(JobPhase::Failed, Some(error));
        match self.queue().board().create(job, &state).await {
            Ok(_) | Err(ServiceError::AlreadyExists { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %report(&e), "cannot record a refused upload on the board")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routes.

/// The server is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Up")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// The server can reach the queue and the store.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Queue and store reachable"),
    (status = 503, description = "One is not", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn readyz(State(api): State<Api>) -> Response {
    let nats = api.queue().client().connection_state();
    let nats_ok = matches!(
        nats,
        sonic_service::async_nats::connection::State::Connected
    );
    let probe = ObjectKey::new("healthz/readyz-probe").expect("a valid key");
    let store =
        tokio::time::timeout(Duration::from_secs(5), api.storage().outputs().head(&probe)).await;
    let store_error = match store {
        Ok(Ok(_)) | Ok(Err(StorageError::NotFound { .. })) => None,
        Ok(Err(e)) => Some(report(&e)),
        Err(_) => Some("no answer within 5 s".to_owned()),
    };
    match (nats_ok, store_error) {
        (true, None) => {
            Json(serde_json::json!({"nats": "connected", "store": "ok"})).into_response()
        }
        (nats_ok, store_error) => {
            let mut detail = Vec::new();
            if !nats_ok {
                detail.push(format!("the queue: {nats}"));
            }
            if let Some(e) = store_error {
                detail.push(format!("the store: {e}"));
            }
            Problem::unavailable(detail.join("; ")).into_response()
        }
    }
}

/// Presigned URLs to upload a job's portrait and speech straight to the bucket.
///
/// Then `PUT` each file to its URL, and start the job with `POST /v1/jobs` (JSON), or, with
/// `start_on_upload`, with `POST /v1/hooks/upload-complete` or a bucket notification.
#[utoipa::path(post, path = "/v1/uploads", tag = "jobs", request_body = UploadRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Upload URLs", body = UploadResponse),
        (status = 409, description = "The job id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A file name or parameter is refused", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The store cannot sign URLs (a folder): use the multipart route", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_upload(
    State(api): State<Api>,
    caller: Caller,
    JsonBody(request): JsonBody<UploadRequest>,
) -> ApiResult<Response> {
    let image_ext = ext_for(InputKind::Image, &request.image)?;
    let audio_ext = ext_for(InputKind::Audio, &request.audio)?;
    let parameters = if request.start_on_upload || request.parameters.is_some() {
        api.parameters(request.parameters)?
    } else {
        serde_json::Value::Null
    };
    let job = JobRef::new(caller.tenant.clone(), job_id(request.job.as_deref())?);
    tracing::Span::current().record("job", tracing::field::display(&job.job));
    match api.storage().read_manifest(&job).await {
        Err(StorageError::NotFound { .. }) => {}
        Ok(_) => {
            return Err(Problem::conflict(
                "job-exists",
                "Job exists",
                format!("job `{}` exists already; pick another id", job.job),
            )
            .with_field("job"));
        }
        Err(e) => return Err(storage_problem(&job, &e)),
    }
    let expiry = api.config().upload_expiry;
    // Sign first: a store that cannot sign claims nothing.
    let image = api
        .storage()
        .sign_input_upload(&job, InputKind::Image, image_ext, expiry)
        .await
        .map_err(|e| storage_problem(&job, &e))?;
    let audio = api
        .storage()
        .sign_input_upload(&job, InputKind::Audio, audio_ext, expiry)
        .await
        .map_err(|e| storage_problem(&job, &e))?;
    let session = UploadSession {
        schema_version: 1,
        created_at: Utc::now(),
        image_ext: image_ext.to_owned(),
        audio_ext: audio_ext.to_owned(),
        start_on_upload: request.start_on_upload,
        parameters,
    };
    let record = serde_json::to_vec(&session).expect("an upload record serializes");
    api.storage()
        .put_output_create_only(&job, UPLOAD_RECORD, record, Some("application/json"))
        .await
        .map_err(|e| storage_problem(&job, &e))?;
    let upload = |kind: InputKind, ext: &str, signed: sonic_storage::SignedUrl| SignedUpload {
        key: job
            .input_key(kind, ext)
            .map(|k| k.to_string())
            .unwrap_or_default(),
        url: signed.url.to_string(),
        method: "PUT".to_owned(),
        content_type: content_type_of(ext).to_owned(),
    };
    let expires_at = image.expires_at.min(audio.expires_at);
    let body = UploadResponse {
        job: job.job.to_string(),
        image: upload(InputKind::Image, image_ext, image),
        audio: upload(InputKind::Audio, audio_ext, audio),
        expires_at,
        start_on_upload: session.start_on_upload,
    };
    tracing::info!(job = %job, start_on_upload = session.start_on_upload, "upload URLs issued");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The content type to upload a file of extension `ext` with.
fn content_type_of(ext: &str) -> &'static str {
    match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "m4a" | "aac" | "mp4" => "audio/mp4",
        "ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

/// Submits a job: as `multipart/form-data` with its files (`image`, `audio`, optional
/// `parameters` JSON and `job` id), or as JSON naming a job whose files went to presigned URLs.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content(
        (SubmitRequest = "application/json"),
        (MultipartSubmit = "multipart/form-data"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued; the view shows the job as it is now (`queued`, or `running` once a worker has taken it)", body = JobView),
        (status = 200, description = "The job existed (same id): its state", body = JobView),
        (status = 404, description = "No such upload", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Inputs missing, or the job finished", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A file over its limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A file or parameter refused", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn submit(
    State(api): State<Api>,
    caller: Caller,
    request: Request,
) -> ApiResult<Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &api).await.map_err(|e| {
            Problem::bad_request(format!("cannot read the form: {}", e.body_text()))
        })?;
        submit_multipart(api, caller, multipart).await
    } else if is_json(&request) {
        let bytes = read_body(request, &api).await?;
        let body: SubmitRequest = parse_json(&bytes)?;
        submit_uploaded(api, caller, body).await
    } else {
        Err(Problem::unsupported_media_type(
            "send `multipart/form-data` (image, audio, parameters) or `application/json` ({\"job\": ...})",
        ))
    }
}

/// The parts of a multipart submission (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct MultipartSubmit {
    /// The portrait (PNG, JPEG or WebP).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// The speech (WAV, MP3, FLAC, M4A or Ogg).
    #[schema(value_type = String, format = Binary)]
    audio: Vec<u8>,
    /// The generation parameters, a JSON object.
    parameters: Option<String>,
    /// The job id to use.
    job: Option<String>,
}

async fn submit_uploaded(api: Api, caller: Caller, body: SubmitRequest) -> ApiResult<Response> {
    let job = job_ref(&caller, &body.job)?;
    let Some(session) = api.read_session(&job).await? else {
        return Err(Problem::job_not_found(job.job.as_str()));
    };
    let parameters = match body.parameters {
        Some(given) => api.parameters(Some(given))?,
        None if !session.parameters.is_null() => session.parameters.clone(),
        None => api.parameters(None)?,
    };
    let Some((image, audio)) = api.check_uploaded(&job).await? else {
        return Err(Problem::conflict(
            "input-missing",
            "Input missing",
            format!("upload both files of job `{}` first", job.job),
        )
        .with_field("job"));
    };
    let submission = submit_stored_job(api.queue(), api.storage(), &job, image, audio, parameters)
        .await
        .map_err(|e| service_problem(&job, e))?;
    tracing::info!(job = %job, created = submission.created, "job submitted");
    let status = if submission.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(api.view(&job).await?)).into_response())
}

/// One file part, read within its limit.
struct FilePart {
    filename: Option<String>,
    bytes: Vec<u8>,
}

async fn submit_multipart(api: Api, caller: Caller, mut form: Multipart) -> ApiResult<Response> {
    let limits = api.config().limits;
    let mut image: Option<FilePart> = None;
    let mut audio: Option<FilePart> = None;
    let mut parameters: Option<String> = None;
    let mut job: Option<String> = None;
    let form_error = |name: &str, e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(
                name.to_owned(),
                format!("the form is over its limit: {}", e.body_text()),
            )
        } else {
            Problem::bad_request(format!("cannot read the form: {}", e.body_text()))
        }
    };
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(form_error("body", e)),
        };
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "image" | "audio" => {
                let kind = if name == "image" {
                    InputKind::Image
                } else {
                    InputKind::Audio
                };
                let slot = if name == "image" {
                    &mut image
                } else {
                    &mut audio
                };
                if slot.is_some() {
                    return Err(Problem::invalid(
                        "duplicate-part",
                        "Duplicate part",
                        name,
                        "the form has this part twice",
                    ));
                }
                let filename = field.file_name().map(str::to_owned);
                let limit = limits.max_bytes(kind);
                let mut bytes = Vec::new();
                let mut field = field;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if (bytes.len() + chunk.len()) as u64 > limit {
                                return Err(Problem::too_large(
                                    name,
                                    format!("`{}` is over the limit of {limit} bytes", kind.stem()),
                                ));
                            }
                            bytes.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(e) => return Err(form_error(&name, e)),
                    }
                }
                *slot = Some(FilePart { filename, bytes });
            }
            "parameters" | "job" => {
                let text = field.text().await.map_err(|e| form_error(&name, e))?;
                let slot = if name == "job" {
                    &mut job
                } else {
                    &mut parameters
                };
                if slot.replace(text).is_some() {
                    return Err(Problem::invalid(
                        "duplicate-part",
                        "Duplicate part",
                        name,
                        "the form has this part twice",
                    ));
                }
            }
            _ => {
                return Err(Problem::invalid(
                    "unknown-part",
                    "Unknown part",
                    name.clone(),
                    format!("the form has a part `{name}`; expected image, audio, parameters, job"),
                ));
            }
        }
    }
    let missing = |kind: &str| {
        Problem::invalid(
            "missing-part",
            "Missing part",
            kind.to_owned(),
            format!("the form has no `{kind}` file"),
        )
    };
    let image = image.ok_or_else(|| missing("image"))?;
    let audio = audio.ok_or_else(|| missing("audio"))?;
    let parameters = match parameters.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                Problem::invalid(
                    "invalid-field",
                    "Invalid field",
                    "parameters",
                    format!("`parameters` is not JSON: {e}"),
                )
            })?,
        ),
    };
    let parameters = api.parameters(parameters)?;
    let job = JobRef::new(
        caller.tenant.clone(),
        job_id(job.as_deref().map(str::trim))?,
    );
    tracing::Span::current().record("job", tracing::field::display(&job.job));
    let checked = tokio::task::spawn_blocking(move || -> Result<_, Problem> {
        let image_checked = check_input(
            InputKind::Image,
            image.filename.as_deref(),
            &image.bytes,
            &limits,
        )?;
        let audio_checked = check_input(
            InputKind::Audio,
            audio.filename.as_deref(),
            &audio.bytes,
            &limits,
        )?;
        Ok(((image, image_checked), (audio, audio_checked)))
    })
    .await
    .map_err(|e| Problem::internal(format!("checking the inputs: {e}")))??;
    let upload = |(part, checked): (FilePart, CheckedInput)| UploadInput {
        bytes: part.bytes.into(),
        ext: checked.ext.to_owned(),
    };
    let submission = submit_job(
        api.queue(),
        api.storage(),
        &job,
        upload(checked.0),
        upload(checked.1),
        parameters,
    )
    .await
    .map_err(|e| service_problem(&job, e))?;
    tracing::info!(job = %job, created = submission.created, "job submitted");
    let status = if submission.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(api.view(&job).await?)).into_response())
}

/// A job's state, progress, timings and, once succeeded, a signed link to its video.
#[utoipa::path(get, path = "/v1/jobs/{job}", tag = "jobs", params(("job" = String, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job (for this key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_job(
    State(api): State<Api>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job = job_ref(&caller, &job)?;
    Ok(Json(api.view(&job).await?))
}

/// Asks a queued or running job to stop.
#[utoipa::path(delete, path = "/v1/jobs/{job}", tag = "jobs", params(("job" = String, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Cancellation requested", body = JobView),
        (status = 404, description = "No such job (for this key)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has finished, or waits for its upload", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn cancel_job(
    State(api): State<Api>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<Response> {
    let job = job_ref(&caller, &job)?;
    match api.queue().board().request_cancel(&job).await {
        Ok((state, _)) if state.is_terminal() && state.state != JobPhase::Cancelled => {
            Err(Problem::conflict(
                "job-finished",
                "Job finished",
                format!("job `{}` has finished ({})", job.job, state.state),
            )
            .with_field("job"))
        }
        Ok(_) => {
            tracing::info!(job = %job, "cancellation requested");
            Ok((StatusCode::ACCEPTED, Json(api.view(&job).await?)).into_response())
        }
        Err(ServiceError::NotFound { .. }) => match api.view(&job).await? {
            view if view.state == "awaiting_upload" => Err(Problem::conflict(
                "not-started",
                "Job not started",
                format!("job `{}` waits for its upload; nothing runs", job.job),
            )
            .with_field("job")),
            view => Err(Problem::conflict(
                "job-finished",
                "Job finished",
                format!("job `{}` has finished ({})", job.job, view.state),
            )
            .with_field("job")),
        },
        Err(e) => Err(service_problem(&job, e)),
    }
}

/// The query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Jobs per page (1 to 200; default 50).
    limit: Option<usize>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// The tenant's jobs, by id, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of jobs", body = JobList)))]
pub(crate) async fn list_jobs(
    State(api): State<Api>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<JobList>> {
    let Query(query) = query
        .map_err(|e| Problem::invalid("invalid-query", "Invalid query", "query", e.body_text()))?;
    let limit = query.limit.unwrap_or(api.config().page_size);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Problem::invalid(
            "invalid-query",
            "Invalid query",
            "limit",
            format!("`limit` must be 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    let entries = api
        .queue()
        .board()
        .list(&caller.tenant)
        .await
        .map_err(|e| {
            tracing::warn!(error = %report(&e), "cannot list jobs");
            Problem::unavailable(format!("the job board: {}", report(&e)))
        })?;
    let mut page: Vec<JobView> = entries
        .iter()
        .filter(|entry| {
            query
                .after
                .as_deref()
                .is_none_or(|after| entry.job.job.as_str() > after)
        })
        .take(limit + 1)
        .map(|entry| JobView::from_state(entry.job.job.as_str(), &entry.state))
        .collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|view| view.job.clone())
    } else {
        None
    };
    Ok(Json(JobList { jobs: page, next }))
}

/// A job's progress as Server-Sent Events: `event: job` with a JobView, at once and at every
/// change; the stream ends after the job finishes (the last event carries the video's link).
#[utoipa::path(get, path = "/v1/jobs/{job}/events", tag = "jobs", params(("job" = String, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `job` events", content_type = "text/event-stream", body = JobView),
        (status = 404, description = "No such job (for this key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn job_events(
    State(api): State<Api>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = job_ref(&caller, &job)?;
    let first = api.view(&job).await?;
    let keep_alive = api.config().keep_alive;
    let (sender, receiver) = tokio::sync::mpsc::channel::<JobView>(16);
    tokio::spawn(follow(api, job, first, sender));
    let stream = tokio_stream(receiver).map(|view| {
        Ok(Event::default()
            .event("job")
            .json_data(&view)
            .unwrap_or_else(|_| Event::default().event("job").data("{}")))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}

fn tokio_stream(mut receiver: tokio::sync::mpsc::Receiver<JobView>) -> impl Stream<Item = JobView> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// Sends `first`, then the job's view at every change of its board entry (or every second
/// while it has none), until it finishes or the client goes.
async fn follow(api: Api, job: JobRef, first: JobView, sender: tokio::sync::mpsc::Sender<JobView>) {
    let mut last = first.clone();
    if sender.send(first).await.is_err() || last.is_terminal() {
        return;
    }
    let mut watch = None;
    loop {
        if watch.is_none() && last.state != "awaiting_upload" {
            match api.queue().board().watch(&job).await {
                Ok(stream) => watch = Some(stream),
                Err(e) => tracing::debug!(error = %report(&e), "cannot watch; polling"),
            }
        }
        let changed = match watch.as_mut() {
            Some(stream) => tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(_)) => true,
                    _ => { watch = None; true }
                },
                () = tokio::time::sleep(Duration::from_secs(5)) => true,
                () = sender.closed() => return,
            },
            None => tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => true,
                () = sender.closed() => return,
            },
        };
        if !changed {
            continue;
        }
        let view = match api.view(&job).await {
            Ok(view) => view,
            Err(problem) => {
                tracing::debug!(%problem, "job view failed while following");
                continue;
            }
        };
        if view == last {
            continue;
        }
        last = view.clone();
        if sender.send(view).await.is_err() || last.is_terminal() {
            return;
        }
    }
}

/// The client says it finished uploading a `start_on_upload` job's files: the job starts if
/// both are there (and pass their checks).
#[utoipa::path(post, path = "/v1/hooks/upload-complete", tag = "jobs", request_body = UploadComplete,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Started, or still waiting for a file (`awaiting_upload`)", body = JobView),
        (status = 404, description = "No such upload (for this key)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a start-on-upload job", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An uploaded file is refused (the job is recorded failed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn upload_complete(
    State(api): State<Api>,
    caller: Caller,
    JsonBody(body): JsonBody<UploadComplete>,
) -> ApiResult<Response> {
    let job = job_ref(&caller, &body.job)?;
    let view = api.start_uploaded(&job).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_their_field() {
        let problem = schema_problem(
            "parameters.",
            "unknown field `stepz`, expected one of `duration`, `seed`",
        );
        assert_eq!(problem.field.as_deref(), Some("parameters.stepz"));
        assert_eq!(problem.kind, "urn:sonic:problem:unknown-field");
        let problem = schema_problem("", "missing field `job`");
        assert_eq!(problem.field.as_deref(), Some("job"));
        let problem = schema_problem("parameters.", "invalid type: string \"x\", expected u64");
        assert_eq!(problem.field.as_deref(), Some("parameters"));
        let problem = schema_problem("", "invalid type: string \"x\", expected u64");
        assert_eq!(problem.field, None);
    }
}
