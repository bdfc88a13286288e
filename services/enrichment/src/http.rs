//! Falco's HTTP output: `POST /falco` with Falco JSON (`http_output`, falcosidekick webhook), a
//! JSON array of alerts, or NDJSON, authenticated with `Authorization: Bearer <token>` by the
//! runtime's HTTP credential check (the Falco row of the RBAC table: detectors and admins).
//!
//! A request is one batch and goes through exactly the gRPC path: same admission, validation,
//! attribution, and a 200 only once export holds every accepted event durably. Answers: 200 (all
//! delivered), 400 (unparseable body, an alert without a known Falco priority among them:
//! nothing taken; or some events invalid: the others were delivered, the body lists the
//! rejections), 401/403, 413 (body over `max_body_bytes` or too many alerts), 415 (a content type
//! other than JSON: `application/json`, what Falco and falcosidekick send, NDJSON or `+json`), 503
//! with `Retry-After` (backpressure: nothing taken, resend). Refusals take status and headers
//! from the error policy and carry `{"error": …}` bodies.

use std::{collections::HashMap, sync::Arc, time::Duration};

use attackmesh::{
    error::{ErrorAnswer, ServiceErrorCode},
    proto::{AckStatus, DetectionEvent, EventRejection},
};
use attackmesh_runtime::{
    auth::{Authenticator, HttpEndpoint},
    http::json_error,
};
use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

use crate::{error::Error, export::proto_duration, service::IngestState};

/// What the HTTP routes share.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) ingest: Arc<IngestState>,
    pub(crate) auth: Authenticator,
    pub(crate) max_body: usize,
}

/// The HTTP routes: `POST /falco` and OTLP/HTTP `POST /v1/logs` ([`crate::otlp::http`]).
pub fn router(ingest: Arc<IngestState>, auth: Authenticator, max_body: usize) -> Router {
    Router::new()
        .route("/falco", post(falco))
        .route("/v1/logs", post(crate::otlp::http::logs))
        .with_state(HttpState { ingest, auth, max_body })
}

fn error(code: ServiceErrorCode, message: impl Into<String>) -> Response {
    json_error(&ErrorAnswer::new(code, message))
}

async fn falco(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let caller = match state.auth.check_http(HttpEndpoint::FalcoIngest, &headers) {
        Ok(caller) => caller.name,
        Err(denied) => return json_error(&ErrorAnswer::from_error(&denied)),
    };
    if !is_json(&headers) {
        return error(
            ServiceErrorCode::UnsupportedMediaType,
            "content-type must be application/json (or application/x-ndjson)",
        );
    }
    let too_large = || {
        error(
            ServiceErrorCode::PayloadTooLarge,
            format!("body larger than {} bytes", state.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.max_body) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, state.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return error(ServiceErrorCode::BadRequest, "body is not UTF-8");
    };
    let events = match parse_body(text) {
        Ok(events) if events.is_empty() => return error(ServiceErrorCode::BadRequest, "body holds no Falco alert"),
        Ok(events) => events,
        Err(why) => return error(ServiceErrorCode::BadRequest, why),
    };
    if events.len() > state.ingest.limits.max_batch_events {
        return error(
            ServiceErrorCode::PayloadTooLarge,
            format!("at most {} alerts per request", state.ingest.limits.max_batch_events),
        );
    }
    let trace = trace_context(&headers);
    let pipeline = &state.ingest.pipeline;
    let permit = match pipeline.admit(&caller, events.len(), bytes.len(), None) {
        Ok(permit) => permit,
        Err(refused) => return unavailable(refused.after, refused.message),
    };
    let events = events.into_iter().map(Into::into).collect();
    let answer = pipeline.ingest(&caller, 0, events, trace, permit).await;
    if answer.status != AckStatus::Durable as i32 {
        let after = answer.retry_after.map(proto_duration).unwrap_or(Duration::from_secs(1));
        return unavailable(after, answer.message);
    }
    let body = json!({
        "accepted": answer.accepted,
        "rejected": answer.rejected,
        "rejections": answer.rejections.iter().map(rejection_json).collect::<Vec<_>>(),
    });
    let status = if answer.rejected == 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(body)).into_response()
}

/// True when the request declares a JSON body: `application/json`, NDJSON, or a `+json` type.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(
        media.as_str(),
        "application/json" | "application/x-ndjson" | "application/ndjson"
    ) || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Backpressure: nothing was taken; 503 with `Retry-After`.
fn unavailable(after: Duration, message: String) -> Response {
    json_error(&ErrorAnswer::from_error(&Error::Retry { after, message }))
}

fn rejection_json(r: &EventRejection) -> Value {
    json!({
        "index": r.index,
        "event_id": r.event_id,
        "violations": r.violations.iter().map(|v| json!({"field": v.field, "description": v.description})).collect::<Vec<_>>(),
    })
}

pub(crate) fn trace_context(headers: &HeaderMap) -> HashMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| {
            let value = headers.get(key)?.to_str().ok()?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Parses a body of one Falco alert, a JSON array of alerts, or several alerts separated by
/// whitespace or newlines (NDJSON). Any alert that does not parse fails the whole body.
pub fn parse_body(text: &str) -> Result<Vec<DetectionEvent>, String> {
    let mut events = Vec::new();
    let values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (position, value) in values.enumerate() {
        let value = value.map_err(|e| format!("alert {}: invalid JSON: {e}", position + 1))?;
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let event = attackmesh::formats::falco_from_value(item)
                        .map_err(|e| format!("alert {}: {e}", events.len() + i + 1))?;
                    events.push(event);
                }
            }
            other => {
                let event = attackmesh::formats::falco_from_value(&other)
                    .map_err(|e| format!("alert {}: {e}", events.len() + 1))?;
                events.push(event);
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::parse_body;

    const ALERT: &str = r#"{"output":"Shell spawned","priority":"Warning","rule":"Terminal shell in container","time":"2024-05-01T10:00:00.000000000Z","output_fields":{"proc.cmdline":"bash"},"tags":["T1059","container"],"hostname":"node-1"}"#;

    #[test]
    fn one_alert_an_array_and_ndjson_parse_alike() {
        let one = parse_body(ALERT).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].event_type, "falco.alert");
        assert_eq!(one[0].technique_hints, ["T1059"]);
        let array = parse_body(&format!("[{ALERT},{ALERT}]")).unwrap();
        assert_eq!(array.len(), 2);
        let ndjson = parse_body(&format!("{ALERT}\n{ALERT}\n")).unwrap();
        assert_eq!(ndjson.len(), 2);
        assert_eq!(
            one[0].event_id, ndjson[1].event_id,
            "the same alert gets the same id however it came"
        );
    }

    #[test]
    fn bad_bodies_name_the_alert() {
        let err = parse_body(&format!("{ALERT}\n{{\"rule\":\"x\"}}")).unwrap_err();
        assert!(err.starts_with("alert 2:"), "{err}");
        assert!(parse_body("{not json").unwrap_err().contains("invalid JSON"));
        assert!(parse_body("").unwrap().is_empty());
    }
}
