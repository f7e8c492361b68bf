//! Errors as RFC 9457 problem details (`application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error the API answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer, as RFC 9457 problem details, with `field` naming the request part at fault
/// (`image`, `audio`, `parameters.inference_steps`, `job` ...).
///
/// ```json
/// {"type": "urn:sonic:problem:invalid-parameter", "title": "Invalid parameter", "status": 422,
///  "detail": "parameter `inference_steps` = 0 is out of range: expected 1..=1000",
///  "field": "parameters.inference_steps"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:sonic:problem:{slug}`: what kind of problem (stable; match on it).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for this request.
    pub detail: String,
    /// The request part at fault, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before retrying (429 only; also sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of kind `slug` (`urn:sonic:problem:{slug}`).
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("urn:sonic:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Names the request part at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400: the request cannot be read (bad JSON, bad multipart, bad query).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 401: no key, or a key the server does not know.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 404: no such job for this tenant (another tenant's job is 404 too).
    pub fn job_not_found(job: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "job-not-found",
            "Job not found",
            format!("no job `{job}`"),
        )
        .with_field("job")
    }

    /// 404: no such route.
    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no route {path}"),
        )
    }

    /// 409: the job is in a state that does not allow this.
    pub fn conflict(slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, title, detail)
    }

    /// 413: a body or an upload over its limit.
    pub fn too_large(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Upload too large",
            detail,
        )
        .with_field(field)
    }

    /// 415: a body of the wrong media type.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    /// 422: a value that parses but is not accepted.
    pub fn invalid(
        slug: &str,
        title: &str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title, detail).with_field(field)
    }

    /// 429: over the key's rate limit.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("over this key's request rate; retry in {retry_after_secs} s"),
        );
        problem.retry_after = Some(retry_after_secs);
        problem
    }

    /// 500: the server's fault (the detail says what, never a secret).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    /// 501: the store cannot do this (a folder store signs no links).
    pub fn not_supported(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "not-supported",
            "Not supported by this deployment",
            detail,
        )
    }

    /// 503: the queue or the store is unreachable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)?;
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sonic\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Every handler's result.
pub type ApiResult<T> = Result<T, Problem>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_problem_json_with_its_status_and_field() {
        let problem = Problem::invalid(
            "invalid-parameter",
            "Invalid parameter",
            "parameters.seed",
            "bad",
        );
        let response = problem.clone().into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], "urn:sonic:problem:invalid-parameter");
        assert_eq!(json["status"], 422);
        assert_eq!(json["field"], "parameters.seed");
    }

    #[test]
    fn unauthorized_says_how_to_authenticate_and_429_when_to_retry() {
        let response = Problem::unauthorized("no key").into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"sonic\""
        );
        let response = Problem::rate_limited(3).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
