//! The OpenAPI 3 document, generated from the handlers and their types.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers;
use crate::problem::Problem;
use crate::view::{
    JobList, JobView, SignedUpload, SubmitRequest, UploadComplete, UploadRequest, UploadResponse,
    VideoView,
};

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sonic",
        description = "Talking-head videos from a portrait and a speech recording: upload, submit, follow and share jobs. Every /v1 route needs `Authorization: Bearer <key>`; errors are RFC 9457 `application/problem+json`.",
    ),
    paths(
        handlers::create_upload,
        handlers::submit,
        handlers::list_jobs,
        handlers::get_job,
        handlers::cancel_job,
        handlers::job_events,
        handlers::upload_complete,
        handlers::healthz,
        handlers::readyz,
    ),
    components(schemas(
        JobView, VideoView, JobList, UploadRequest, UploadResponse, SignedUpload, SubmitRequest,
        UploadComplete, Problem, handlers::MultipartSubmit,
    )),
    modifiers(&BearerKeys),
    tags((name = "jobs", description = "Uploads and jobs"), (name = "health", description = "Probes")),
)]
pub struct ApiDoc;

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, as `utoipa` builds it.
pub fn document_value() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(document_value())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_has_every_route_and_the_bearer_scheme() {
        let doc = serde_json::to_value(super::document_value()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/v1/uploads",
            "/v1/jobs",
            "/v1/jobs/{job}",
            "/v1/jobs/{job}/events",
            "/v1/hooks/upload-complete",
            "/healthz",
            "/readyz",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["paths"]["/v1/jobs"]["post"].is_object());
        assert!(doc["paths"]["/v1/jobs"]["get"].is_object());
        assert!(doc["paths"]["/v1/jobs/{job}"]["delete"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }
}
