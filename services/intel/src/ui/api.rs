//! The page's JSON endpoints. Each one authenticates ([`UiState::begin`]), checks its query
//! ([`ViewParams`]) and answers from the store's aggregation; nothing here counts events.

use attackmesh_attack::{Resolved, navigator::Tally};
use axum::{
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::{Value, json};

use attackmesh::proto::Campaign;

use super::{
    Refusal, UiState, campaign,
    view::{self, ViewParams},
};
use crate::{error::Error, store::matrix::MatrixFilter};

/// Observations whose evidence names a technique's rules.
const RULE_SAMPLE: usize = 500;

type Params = Result<Query<ViewParams>, QueryRejection>;

fn json_ok(body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Authenticates, then checks the query: `(collection, filter)` or the refusal.
fn start(state: &UiState, headers: &HeaderMap, params: Params) -> Result<(String, MatrixFilter, i64), Refusal> {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => {
            // Credentials come first: a malformed query without a token is still a 401.
            state.begin(headers, None)?;
            return Err(Refusal::from(Error::InvalidArgument(vec![
                attackmesh::proto::FieldViolation {
                    field: "query".into(),
                    description: e.body_text(),
                },
            ])));
        }
    };
    let (_, collection) = state.begin(headers, params.collection.as_deref())?;
    let now_us = Utc::now().timestamp_micros();
    let filter = params.filter(now_us)?;
    Ok((collection, filter, now_us))
}

/// `GET /ui/api/matrix`: the Enterprise matrix of the loaded ATT&CK release.
pub(super) async fn matrix(State(state): State<UiState>, headers: HeaderMap) -> Result<Response, Refusal> {
    state.begin(&headers, None)?;
    Ok(json_ok(state.inner.layout.clone()))
}

/// `GET /ui/api/counts`: observations per technique in the view.
pub(super) async fn counts(
    State(state): State<UiState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, Refusal> {
    let (collection, filter, now_us) = start(&state, &headers, params)?;
    let counts = state.inner.intel.store().matrix_counts(&collection, &filter).await?;
    Ok(json_ok(view::counts(&counts, &filter, now_us).to_string()))
}

/// `GET /ui/api/facets`: the detectors and campaigns a filter can choose from.
pub(super) async fn facets(
    State(state): State<UiState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, Refusal> {
    let (collection, _, _) = start(&state, &headers, params)?;
    let f = state.inner.intel.store().facets(&collection).await?;
    let pairs = |items: Vec<(String, u64)>| -> Vec<Value> {
        items
            .into_iter()
            .map(|(name, events)| json!({ "name": name, "events": events }))
            .collect()
    };
    let body = json!({
        "collection": collection,
        "detectors": pairs(f.detectors),
        "campaigns": pairs(f.campaigns),
        "severities": ["low", "medium", "high", "critical"],
    });
    Ok(json_ok(body.to_string()))
}

/// `GET /ui/api/techniques/{id}`: one technique's panel.
pub(super) async fn technique(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, Refusal> {
    let (collection, filter, _) = start(&state, &headers, params)?;
    let kb = state.inner.intel.kb().clone();
    let technique = match kb.resolve(&id) {
        Resolved::Active(t) => t,
        Resolved::Revoked { replacement, .. } => replacement,
        Resolved::Deprecated(_) | Resolved::Unknown => {
            return Err(Refusal::from(Error::NotFound(format!(
                "`{}` is not an active technique of ATT&CK {}",
                attackmesh::text::clip(&id, 64),
                kb.attack_version()
            ))));
        }
    };
    let store = state.inner.intel.store();
    let counts = store.matrix_counts(&collection, &filter).await?;
    let events = store
        .technique_events(&collection, &technique.id, &filter, RULE_SAMPLE)
        .await?;
    Ok(json_ok(view::technique(&kb, technique, &counts, &events).to_string()))
}

/// How many campaigns the list shows, latest activity first.
const CAMPAIGN_LIST: usize = 200;

/// A stored campaign's JSON read back; a body that does not parse is a storage fault.
fn parse_campaign(body: &str) -> Result<Campaign, Refusal> {
    serde_json::from_str(body).map_err(|e| Refusal::from(Error::Storage(format!("stored campaign unreadable: {e}"))))
}

/// `GET /ui/api/campaigns`: the collection's campaigns (latest revision each), newest first.
pub(super) async fn campaigns(
    State(state): State<UiState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, Refusal> {
    let (collection, _, _) = start(&state, &headers, params)?;
    let bodies = state.inner.intel.store().campaigns(&collection, CAMPAIGN_LIST).await?;
    let list = bodies
        .iter()
        .map(|b| parse_campaign(b).map(|c| campaign::summary(&c)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_ok(
        json!({ "collection": collection, "campaigns": list }).to_string(),
    ))
}

/// `GET /ui/api/campaigns/{id}`: one campaign's panel, from its latest revision.
pub(super) async fn campaign(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, Refusal> {
    let (collection, _, _) = start(&state, &headers, params)?;
    let Some(body) = state.inner.intel.store().campaign(&collection, &id).await? else {
        return Err(Refusal::from(Error::NotFound(format!(
            "campaign `{}` not found in collection `{collection}`",
            attackmesh::text::clip(&id, 64)
        ))));
    };
    let c = parse_campaign(&body)?;
    Ok(json_ok(campaign::detail(state.inner.intel.kb(), &c).to_string()))
}

/// `GET /ui/api/layer`: the view as an ATT&CK Navigator layer, to download.
pub(super) async fn layer(
    State(state): State<UiState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, Refusal> {
    let (collection, filter, _) = start(&state, &headers, params)?;
    let counts = state.inner.intel.store().matrix_counts(&collection, &filter).await?;
    let kb = state.inner.intel.kb();
    let tally = Tally::from_counts(
        counts.events,
        counts.techniques.iter().map(|(id, t)| (id.clone(), t.count)),
    );
    let mut response = json_ok(tally.layer(kb, &layer_name(&filter)).to_string());
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"attackmesh-layer.json\""),
    );
    Ok(response)
}

/// A layer's name: what the view shows.
fn layer_name(filter: &MatrixFilter) -> String {
    let mut parts = vec!["attackmesh observations".to_owned()];
    if filter.from_us != i64::MIN {
        parts.push(format!("from {}", crate::stix::taxii_timestamp(filter.from_us)));
    }
    if filter.to_us != i64::MAX {
        parts.push(format!("to {}", crate::stix::taxii_timestamp(filter.to_us)));
    }
    for (what, value) in [
        ("detector", &filter.detector),
        ("entity", &filter.entity),
        ("campaign", &filter.campaign),
    ] {
        if let Some(v) = value {
            parts.push(format!("{what} {v}"));
        }
    }
    if let Some(s) = filter.min_severity {
        parts.push(format!("severity ≥ {}", attackmesh::text::severity_name(s)));
    }
    parts.join(", ")
}
