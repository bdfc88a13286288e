//! The live ATT&CK matrix page, served on the intel HTTP listener beside TAXII (same TLS, same
//! tokens, its own RBAC row: analysts and admins; detectors are refused with 403).
//!
//! `GET /ui/` is one self-contained HTML document (style and script inlined from files
//! compiled into the binary, no CDN, no build step), locked down by a Content-Security-Policy
//! that admits only those exact inline blocks (by hash) and requests to this origin. A browser
//! cannot send a token when it navigates, so without one the page answers 401 with the same
//! document, which holds no data and asks for the token (or reads it from the URL fragment,
//! which never reaches a server); with an analyst token it answers 200. The data comes from the
//! JSON endpoints under `/ui/api/`, which the page calls with `Authorization: Bearer`; without a
//! token they answer 401 and carry nothing. Counts are aggregated by the store
//! ([`crate::store::matrix`]); the page polls them every few seconds (`EventSource` cannot send
//! an `Authorization` header, and a token in a URL would reach logs).

mod api;
mod campaign;
pub mod observation;
mod view;

use std::sync::Arc;

use attackmesh::error::ErrorAnswer;
use attackmesh_runtime::auth::{Authenticator, Caller, HttpEndpoint};
use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::{config::CollectionConfig, config::IntelConfig, error::Error, ingest::Intel, taxii::auth::access};

pub use observation::observation;

const PAGE: &str = include_str!("assets/page.html");
const STYLE: &str = include_str!("assets/page.css");
const SCRIPT: &str = include_str!("assets/page.js");

/// Shared state of the page and its data endpoints.
#[derive(Clone)]
pub struct UiState {
    inner: Arc<Inner>,
}

struct Inner {
    intel: Intel,
    auth: Authenticator,
    collections: Vec<CollectionConfig>,
    page: String,
    csp: String,
    layout: String,
}

impl UiState {
    /// State for `config`, reading `intel`'s store and checking tokens with `auth`.
    pub fn new(config: &IntelConfig, intel: Intel, auth: Authenticator) -> Self {
        let layout = view::layout(intel.kb()).to_string();
        let page = PAGE.replace("/*STYLE*/", STYLE).replace("//SCRIPT", SCRIPT);
        let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(SCRIPT),
            hash(STYLE)
        );
        Self {
            inner: Arc::new(Inner {
                intel,
                auth,
                collections: config.collections(),
                page,
                csp,
                layout,
            }),
        }
    }

    /// Authenticates a request for the page's data and finds the collection it reads (the
    /// default one unless named), which the caller must be allowed to read.
    fn begin(&self, headers: &HeaderMap, collection: Option<&str>) -> Result<(Caller, String), Refusal> {
        let caller = self
            .inner
            .auth
            .check_http(HttpEndpoint::UiRead, headers)
            .map_err(|e| Refusal(ErrorAnswer::from_error(&e)))?;
        let id = match collection.filter(|c| !c.is_empty()) {
            Some(id) => id.to_owned(),
            None => self.inner.intel.default_collection().to_owned(),
        };
        let readable = self
            .inner
            .collections
            .iter()
            .find(|c| c.id == id)
            .map(|c| access(&caller, c).read);
        match readable {
            Some(true) => Ok((caller, id)),
            Some(false) => Err(Refusal::from(Error::PermissionDenied(format!(
                "`{}` may not read collection `{id}`",
                caller.name
            )))),
            None => Err(Refusal::from(Error::NotFound(format!("collection `{id}` not found")))),
        }
    }
}

/// The page and its data routes.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/api/matrix", get(api::matrix))
        .route("/ui/api/counts", get(api::counts))
        .route("/ui/api/facets", get(api::facets))
        .route("/ui/api/layer", get(api::layer))
        .route("/ui/api/techniques/{id}", get(api::technique))
        .route("/ui/api/campaigns", get(api::campaigns))
        .route("/ui/api/campaigns/{id}", get(api::campaign))
        .with_state(state)
}

/// A refused request of the page's data: a JSON error under the error policy.
#[derive(Debug)]
pub(crate) struct Refusal(ErrorAnswer);

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Self(ErrorAnswer::from_error(&err))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refuse(&self.0)
    }
}

/// A JSON error under the error policy, never cached.
fn refuse(answer: &ErrorAnswer) -> Response {
    let mut response = attackmesh_runtime::http::json_error(answer);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /ui/`: the page; 401 (with the page, which asks for a token) without credentials,
/// 403 for a token whose role may not read it.
async fn page(axum::extract::State(state): axum::extract::State<UiState>, headers: HeaderMap) -> Response {
    let status = match state.inner.auth.check_http(HttpEndpoint::UiRead, &headers) {
        Ok(_) => StatusCode::OK,
        Err(e) => {
            let answer = ErrorAnswer::from_error(&e);
            if answer.http_status() != StatusCode::UNAUTHORIZED {
                return refuse(&answer);
            }
            StatusCode::UNAUTHORIZED
        }
    };
    let mut response = (status, state.inner.page.clone()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(csp) = HeaderValue::from_str(&state.inner.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(HttpEndpoint::UiRead.challenge()),
        );
    }
    response
}
