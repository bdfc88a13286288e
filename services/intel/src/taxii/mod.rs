//! The TAXII 2.1 HTTP server: discovery, API root, collections, objects (GET/POST), one object,
//! versions, manifest and status, with `added_after`, `match[id|type|version|spec_version]` and
//! `limit`/`next` paging over a stable cursor.
//!
//! Every request is authenticated by the runtime (HTTP Basic with the token as password, or
//! `Bearer`; the TAXII rows of the RBAC table), and authorised per collection from config.
//! Errors take their status, `Retry-After` and challenge from the error policy and are written as
//! TAXII error resources with the TAXII media type; internal details never reach the body. This
//! module does not build STIX objects or talk SQL.

mod add;
pub mod auth;
pub mod cursor;
pub mod envelope;
mod handlers;
mod media;
pub mod params;

use std::sync::Arc;

use attackmesh::error::{ErrorAnswer, ServiceError, ServiceErrorCode};
use attackmesh_runtime::auth::Authenticator;
use axum::{
    Router,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{config::CollectionConfig, config::IntelConfig, ingest::Intel};

/// The TAXII 2.1 media type.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// Shared state of the TAXII routes.
#[derive(Clone)]
pub struct TaxiiState {
    inner: Arc<Inner>,
}

struct Inner {
    intel: Intel,
    auth: Authenticator,
    api_root: String,
    title: String,
    public_url: Option<String>,
    max_body_bytes: usize,
    page_size: usize,
    max_page_size: usize,
    collections: Vec<CollectionConfig>,
    cursors: cursor::Cursors,
}

impl TaxiiState {
    /// State for `config`, serving `intel`'s store and checking tokens with `auth`.
    pub fn new(config: &IntelConfig, intel: Intel, auth: Authenticator) -> Self {
        let cursors = cursor::Cursors::new(intel.store().cursor_key());
        Self {
            inner: Arc::new(Inner {
                intel,
                auth,
                api_root: config.api_root.clone(),
                title: config.title.clone(),
                public_url: config.public_url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
                max_body_bytes: config.max_body_bytes,
                page_size: config.page_size,
                max_page_size: config.max_page_size,
                collections: config.collections(),
                cursors,
            }),
        }
    }
}

/// The TAXII routes.
pub fn router(state: TaxiiState) -> Router {
    use handlers::*;
    Router::new()
        .route("/taxii2/", get(discovery))
        .route("/{root}/", get(api_root))
        .route("/{root}/collections/", get(collections))
        .route("/{root}/collections/{collection}/", get(collection))
        .route(
            "/{root}/collections/{collection}/objects/",
            get(get_objects).post(add::add_objects),
        )
        .route("/{root}/collections/{collection}/objects/{object}/", get(get_object))
        .route(
            "/{root}/collections/{collection}/objects/{object}/versions/",
            get(versions),
        )
        .route("/{root}/collections/{collection}/manifest/", get(manifest))
        .route("/{root}/status/{status}/", get(add::status))
        .route("/{root}/status/{status}", get(add::status))
        .fallback(not_found)
        .with_state(state)
}

/// A TAXII error resource: what the error policy answers, written in TAXII's shape.
#[derive(Debug)]
pub struct TaxiiError(ErrorAnswer);

impl TaxiiError {
    /// An error with `code` and a description written for the client.
    pub fn new(code: ServiceErrorCode, description: impl Into<String>) -> Self {
        Self(ErrorAnswer::new(code, description))
    }

    /// 400.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(ServiceErrorCode::BadRequest, description)
    }

    /// 403.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(ServiceErrorCode::PermissionDenied, description)
    }

    /// 404.
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(ServiceErrorCode::NotFound, description)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.http_status()
    }
}

/// Any service error (intel's own, a refused credential) answers as the policy says.
impl<E: ServiceError> From<E> for TaxiiError {
    fn from(err: E) -> Self {
        Self(ErrorAnswer::from_error(&err))
    }
}

impl IntoResponse for TaxiiError {
    fn into_response(self) -> Response {
        let status = self.0.http_status();
        let body = json!({
            "title": status.canonical_reason().unwrap_or("Error"),
            "description": self.0.message,
            "http_status": status.as_u16().to_string(),
        });
        attackmesh_runtime::http::error_response(&self.0, TAXII_MEDIA_TYPE, body.to_string())
    }
}

/// A `200 OK` TAXII response with a JSON body.
pub(crate) fn taxii_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, TAXII_MEDIA_TYPE)], body).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::Error;

    async fn answer(err: TaxiiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = err.into_response();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn unavailable_storage_is_503_with_retry_after_and_no_detail() {
        let err = TaxiiError::from(Error::StorageUnavailable("sqlite: database is locked".into()));
        let (status, headers, body) = answer(err).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::CONTENT_TYPE], TAXII_MEDIA_TYPE);
        let after: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!(Duration::from_secs(after) >= Duration::from_secs(1));
        assert_eq!(body["http_status"], "503");
        assert!(!body.to_string().contains("sqlite"), "{body}");
    }

    #[tokio::test]
    async fn only_internal_faults_are_500_and_they_say_nothing_of_themselves() {
        let err = TaxiiError::from(Error::Storage("sqlite: no such table: objects".into()));
        let (status, headers, body) = answer(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!headers.contains_key(header::RETRY_AFTER));
        assert!(!body.to_string().contains("objects"), "{body}");
        let cases = [
            (
                Error::InvalidArgument(vec![attackmesh::proto::FieldViolation {
                    field: "limit".into(),
                    description: "must be positive".into(),
                }]),
                StatusCode::BAD_REQUEST,
            ),
            (Error::PermissionDenied("read-only".into()), StatusCode::FORBIDDEN),
            (
                Error::NotFound("collection `x` not found".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                Error::Unavailable("push target down".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (err, want) in cases {
            let (status, _, body) = answer(TaxiiError::from(err)).await;
            assert_eq!(status, want, "{body}");
            assert_eq!(body["http_status"], want.as_u16().to_string());
            assert!(body["title"].is_string());
        }
    }
}
