//! The TAXII 2.1 HTTP server: discovery, API root, collections, objects (GET/POST), one object,
//! versions, manifest and status, with `added_after`, `match[id|type|version|spec_version]` and
//! `limit`/`next` paging over a stable cursor.
//!
//! Every request is authenticated (HTTP Basic with the token as password, or `Bearer`) against
//! the runtime's token digests, and authorised per collection from config. Errors are TAXII error
//! resources with the TAXII media type. This module does not build STIX objects or talk SQL.

pub mod auth;
mod handlers;
pub mod params;

use std::sync::Arc;

use attackmesh_runtime::auth::Authenticator;
use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
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
}

impl TaxiiState {
    /// State for `config`, serving `intel`'s store and checking tokens with `auth`.
    pub fn new(config: &IntelConfig, intel: Intel, auth: Authenticator) -> Self {
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
            get(get_objects).post(add_objects),
        )
        .route("/{root}/collections/{collection}/objects/{object}/", get(get_object))
        .route(
            "/{root}/collections/{collection}/objects/{object}/versions/",
            get(versions),
        )
        .route("/{root}/collections/{collection}/manifest/", get(manifest))
        .route("/{root}/status/{status}/", get(status))
        .route("/{root}/status/{status}", get(status))
        .fallback(not_found)
        .with_state(state)
}

/// A TAXII error resource with its HTTP status.
#[derive(Debug)]
pub struct TaxiiError {
    status: StatusCode,
    title: &'static str,
    description: String,
    challenge: bool,
}

impl TaxiiError {
    /// An error with `status`, a short title and a description for the client.
    pub fn new(status: StatusCode, title: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            title,
            description: description.into(),
            challenge: false,
        }
    }

    /// 401 with a `WWW-Authenticate` challenge for Basic and Bearer.
    pub fn unauthorized(description: impl Into<String>) -> Self {
        Self {
            challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", description)
        }
    }

    /// 400.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", description)
    }

    /// 403.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", description)
    }

    /// 404.
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", description)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<crate::error::Error> for TaxiiError {
    fn from(err: crate::error::Error) -> Self {
        match err {
            crate::error::Error::NotFound(m) => TaxiiError::not_found(m),
            other => {
                tracing::error!(error = %other, "taxii request failed");
                TaxiiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "see the intel service log",
                )
            }
        }
    }
}

impl IntoResponse for TaxiiError {
    fn into_response(self) -> Response {
        let body = json!({
            "title": self.title,
            "description": self.description,
            "http_status": self.status.as_u16().to_string(),
        });
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, TAXII_MEDIA_TYPE)],
            body.to_string(),
        )
            .into_response();
        if self.challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"attackmesh\", Bearer realm=\"attackmesh\""),
            );
        }
        resp
    }
}

/// A `200 OK` TAXII response with a JSON body.
pub(crate) fn taxii_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, TAXII_MEDIA_TYPE)], body).into_response()
}
