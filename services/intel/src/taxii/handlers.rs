//! TAXII 2.1 endpoint handlers that read. Each one checks its path, authenticates, checks the
//! `Accept` header, finds the API root and collection the caller may see, then answers from the
//! store. Every refusal is a [`TaxiiError`], so malformed paths and query strings are TAXII 400s
//! too. Adding objects and their status resources live in [`super::add`].

use attackmesh::error::ServiceErrorCode;
use attackmesh_runtime::auth::{Caller, HttpEndpoint};
use axum::{
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    TAXII_MEDIA_TYPE, TaxiiError, TaxiiState,
    auth::{Access, access},
    media::names_taxii,
    params, taxii_json,
};
use crate::{
    config::CollectionConfig,
    stix::{STIX_MEDIA_TYPE, taxii_timestamp},
    store::{Page, Query as StoreQuery, VersionMatch},
};

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;
pub(super) type Segments<T> = Result<Path<T>, PathRejection>;

const OBJECT_FILTERS: &[&str] = &["id", "type", "version", "spec_version"];
const ONE_OBJECT_FILTERS: &[&str] = &["version", "spec_version"];
const VERSION_FILTERS: &[&str] = &["spec_version"];

pub(super) fn finish(endpoint: &'static str, result: Result<Response, TaxiiError>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    crate::metrics::request(endpoint, response.status().as_u16());
    response
}

/// The path segments of a request (percent-decoded), or a 400 naming what is wrong with them.
pub(super) fn segments<T>(path: Segments<T>) -> Result<T, TaxiiError> {
    path.map(|Path(segments)| segments)
        .map_err(|e| TaxiiError::bad_request(e.body_text()))
}

/// Authenticates a request for `endpoint`, checks its `Accept` header and API root.
pub(super) fn begin(
    state: &TaxiiState,
    headers: &HeaderMap,
    root: Option<&str>,
    endpoint: HttpEndpoint,
) -> Result<Caller, TaxiiError> {
    let caller = state.inner.auth.check_http(endpoint, headers)?;
    if !names_taxii(headers.get(header::ACCEPT), true) {
        return Err(TaxiiError::new(
            ServiceErrorCode::NotAcceptable,
            format!("this server answers with {TAXII_MEDIA_TYPE} only"),
        ));
    }
    if root.is_some_and(|r| r != state.inner.api_root) {
        return Err(TaxiiError::not_found("no such API root"));
    }
    Ok(caller)
}

pub(super) fn find_collection<'a>(
    state: &'a TaxiiState,
    caller: &Caller,
    id: &str,
) -> Result<(&'a CollectionConfig, Access), TaxiiError> {
    let not_found = || TaxiiError::not_found(format!("collection `{id}` not found"));
    let c = state
        .inner
        .collections
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(not_found)?;
    let a = access(caller, c);
    if !a.read && !a.write {
        return Err(not_found());
    }
    Ok((c, a))
}

fn need_read(a: Access, id: &str) -> Result<(), TaxiiError> {
    if a.read {
        Ok(())
    } else {
        Err(TaxiiError::forbidden(format!("you may not read collection `{id}`")))
    }
}

fn query_params(
    state: &TaxiiState,
    collection: &str,
    pairs: Pairs,
    allowed: &[&str],
) -> Result<StoreQuery, TaxiiError> {
    let Query(pairs) = pairs.map_err(|e| TaxiiError::bad_request(e.body_text()))?;
    let next = |cursor: &str| state.inner.cursors.redeem(collection, cursor);
    params::parse(&pairs, state.inner.page_size, state.inner.max_page_size, allowed, next)
        .map_err(TaxiiError::bad_request)
}

fn root_url(state: &TaxiiState) -> String {
    format!(
        "{}/{}/",
        state.inner.public_url.as_deref().unwrap_or(""),
        state.inner.api_root
    )
}

pub(super) async fn discovery(State(state): State<TaxiiState>, headers: HeaderMap) -> Response {
    finish(
        "discovery",
        (|| {
            begin(&state, &headers, None, HttpEndpoint::TaxiiRead)?;
            let root = root_url(&state);
            let body = json!({
                "title": state.inner.title,
                "description": "STIX 2.1 indicators attributed to MITRE ATT&CK by attackmesh",
                "default": root,
                "api_roots": [root],
            });
            Ok(taxii_json(StatusCode::OK, body.to_string()))
        })(),
    )
}

pub(super) async fn api_root(State(state): State<TaxiiState>, path: Segments<String>, headers: HeaderMap) -> Response {
    finish(
        "api_root",
        (|| {
            let root = segments(path)?;
            begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let body = json!({
                "title": state.inner.title,
                "description": "attackmesh intel collections",
                "versions": [TAXII_MEDIA_TYPE],
                "max_content_length": state.inner.max_body_bytes,
            });
            Ok(taxii_json(StatusCode::OK, body.to_string()))
        })(),
    )
}

fn collection_resource(c: &CollectionConfig, a: Access) -> Value {
    json!({
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "can_read": a.read,
        "can_write": a.write,
        "media_types": [STIX_MEDIA_TYPE],
    })
}

pub(super) async fn collections(
    State(state): State<TaxiiState>,
    path: Segments<String>,
    headers: HeaderMap,
) -> Response {
    finish(
        "collections",
        (|| {
            let root = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let visible: Vec<Value> = state
                .inner
                .collections
                .iter()
                .map(|c| (c, access(&caller, c)))
                .filter(|(_, a)| a.read || a.write)
                .map(|(c, a)| collection_resource(c, a))
                .collect();
            let body = if visible.is_empty() {
                json!({})
            } else {
                json!({ "collections": visible })
            };
            Ok(taxii_json(StatusCode::OK, body.to_string()))
        })(),
    )
}

pub(super) async fn collection(
    State(state): State<TaxiiState>,
    path: Segments<(String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(
        "collection",
        (|| {
            let (root, id) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let (c, a) = find_collection(&state, &caller, &id)?;
            Ok(taxii_json(StatusCode::OK, collection_resource(c, a).to_string()))
        })(),
    )
}

/// A paged envelope (`objects`, `versions`, …) of `collection` with the TAXII date-added
/// headers, and a `next` cursor when more records follow.
fn paged(state: &TaxiiState, collection: &str, page: &Page, key: &str, items: Vec<String>) -> Response {
    let mut body = format!("{{\"more\":{}", page.more);
    if page.more
        && let Some(last) = page.records.last()
    {
        let next = state.inner.cursors.issue(collection, last.date_added_us);
        body.push_str(&format!(",\"next\":{}", Value::from(next)));
    }
    if !items.is_empty() {
        body.push_str(&format!(",\"{key}\":[{}]", items.join(",")));
    }
    body.push('}');
    let mut resp = taxii_json(StatusCode::OK, body);
    if let (Some(first), Some(last)) = (page.records.first(), page.records.last()) {
        for (name, us) in [
            ("x-taxii-date-added-first", first.date_added_us),
            ("x-taxii-date-added-last", last.date_added_us),
        ] {
            if let Ok(v) = HeaderValue::from_str(&taxii_timestamp(us)) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
    resp
}

pub(super) async fn get_objects(
    State(state): State<TaxiiState>,
    path: Segments<(String, String)>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    finish(
        "objects",
        async {
            let (root, id) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let (_, a) = find_collection(&state, &caller, &id)?;
            need_read(a, &id)?;
            let q = query_params(&state, &id, pairs, OBJECT_FILTERS)?;
            let page = state.inner.intel.store().query(&id, &q).await?;
            let items = page.records.iter().map(|r| r.body.clone()).collect();
            Ok(paged(&state, &id, &page, "objects", items))
        }
        .await,
    )
}

pub(super) async fn get_object(
    State(state): State<TaxiiState>,
    path: Segments<(String, String, String)>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    finish(
        "object",
        async {
            let (root, id, object) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let (_, a) = find_collection(&state, &caller, &id)?;
            need_read(a, &id)?;
            let mut q = query_params(&state, &id, pairs, ONE_OBJECT_FILTERS)?;
            q.object_id = Some(object.clone());
            let page = state.inner.intel.store().query(&id, &q).await?;
            if page.records.is_empty() && !object_exists(&state, &id, &object).await? {
                return Err(TaxiiError::not_found(format!("object `{object}` not found")));
            }
            let items = page.records.iter().map(|r| r.body.clone()).collect();
            Ok(paged(&state, &id, &page, "objects", items))
        }
        .await,
    )
}

/// Whether collection `id` holds any version of `object`.
async fn object_exists(state: &TaxiiState, id: &str, object: &str) -> Result<bool, TaxiiError> {
    let any = StoreQuery {
        object_id: Some(object.to_owned()),
        versions: vec![VersionMatch::All],
        limit: 1,
        ..Default::default()
    };
    Ok(!state.inner.intel.store().query(id, &any).await?.records.is_empty())
}

pub(super) async fn versions(
    State(state): State<TaxiiState>,
    path: Segments<(String, String, String)>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    finish(
        "versions",
        async {
            let (root, id, object) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let (_, a) = find_collection(&state, &caller, &id)?;
            need_read(a, &id)?;
            let mut q = query_params(&state, &id, pairs, VERSION_FILTERS)?;
            q.object_id = Some(object.clone());
            q.versions = vec![VersionMatch::All];
            let page = state.inner.intel.store().query(&id, &q).await?;
            if page.records.is_empty() && !object_exists(&state, &id, &object).await? {
                return Err(TaxiiError::not_found(format!("object `{object}` not found")));
            }
            let items = page
                .records
                .iter()
                .map(|r| Value::from(r.version.clone()).to_string())
                .collect();
            Ok(paged(&state, &id, &page, "versions", items))
        }
        .await,
    )
}

pub(super) async fn manifest(
    State(state): State<TaxiiState>,
    path: Segments<(String, String)>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    finish(
        "manifest",
        async {
            let (root, id) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let (_, a) = find_collection(&state, &caller, &id)?;
            need_read(a, &id)?;
            let q = query_params(&state, &id, pairs, OBJECT_FILTERS)?;
            let page = state.inner.intel.store().query(&id, &q).await?;
            let items = page
                .records
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "date_added": taxii_timestamp(r.date_added_us),
                        "version": r.version,
                        "media_type": format!("application/stix+json;version={}", r.spec_version),
                    })
                    .to_string()
                })
                .collect();
            Ok(paged(&state, &id, &page, "objects", items))
        }
        .await,
    )
}

pub(super) async fn not_found(State(state): State<TaxiiState>, headers: HeaderMap) -> Response {
    finish(
        "other",
        (|| {
            begin(&state, &headers, None, HttpEndpoint::TaxiiRead)?;
            Err(TaxiiError::not_found("no such TAXII resource"))
        })(),
    )
}
