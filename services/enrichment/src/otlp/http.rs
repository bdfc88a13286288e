//! OTLP/HTTP logs: `POST /v1/logs` with an `ExportLogsServiceRequest` as protobuf
//! (`application/x-protobuf`) or OTLP/JSON (`application/json`), plain or `Content-Encoding:
//! gzip`, authenticated with `Authorization: Bearer <token>` (the `OtlpLogs` row of the RBAC
//! table).
//!
//! Answers follow the OTLP/HTTP specification, in the request's encoding: 200 with an
//! `ExportLogsServiceResponse` (its `partial_success` counts and names rejected records) once
//! every accepted record is durable; errors carry a `google.rpc.Status` body (`code`, `message`):
//! 400 (a body that does not decode), 401/403, 413 (over `max_body_bytes`, compressed or not, or
//! more records than `ingest.max_batch_events`), 415 (another content type or encoding), and
//! the retryable 429/503 with `Retry-After` (nothing taken: resend).

use std::io::Read as _;

use attackmesh::{
    error::{ErrorAnswer, ServiceError, ServiceErrorCode},
    formats::otlp::{
        OtlpRecord, otlp_from_json, otlp_from_request, proto::collector::ExportLogsServiceRequest, record_count,
    },
};
use attackmesh_runtime::{auth::HttpEndpoint, http::error_response};
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use prost::Message as _;

use crate::http::{HttpState, trace_context};

/// How a request body is encoded, and so its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// `google.rpc.Status` without details: the error body of OTLP/HTTP.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error answer under the error policy, its body a `Status` in `encoding`.
fn refuse(answer: &ErrorAnswer, encoding: Encoding) -> Response {
    let status = RpcStatus {
        code: answer.code.grpc_code() as i32,
        message: answer.message.clone(),
    };
    let mut response = error_response(answer, encoding.media_type(), String::new());
    *response.body_mut() = match encoding {
        Encoding::Protobuf => Body::from(status.encode_to_vec()),
        Encoding::Json => Body::from(serde_json::json!({"code": status.code, "message": status.message}).to_string()),
    };
    response
}

fn error(code: ServiceErrorCode, message: impl Into<String>, encoding: Encoding) -> Response {
    refuse(&ErrorAnswer::new(code, message), encoding)
}

/// `POST /v1/logs`.
pub(crate) async fn logs(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let declared = Encoding::of(&headers);
    let caller = match state.auth.check_http(HttpEndpoint::OtlpLogs, &headers) {
        Ok(caller) => caller.name,
        Err(denied) => return refuse(&ErrorAnswer::from_error(&denied), declared.unwrap_or(Encoding::Json)),
    };
    let Some(encoding) = declared else {
        return error(
            ServiceErrorCode::UnsupportedMediaType,
            "content-type must be application/x-protobuf or application/json",
            Encoding::Json,
        );
    };
    let max = state.max_body;
    let too_large = |what: &str| {
        error(
            ServiceErrorCode::PayloadTooLarge,
            format!("{what} larger than {max} bytes"),
            encoding,
        )
    };
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|len| len > max) {
        return too_large("body");
    }
    let Ok(bytes) = axum::body::to_bytes(body, max).await else {
        return too_large("body");
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let bytes = match content_encoding.as_deref() {
        None | Some("" | "identity") => bytes.to_vec(),
        Some("gzip") => match gunzip(&bytes, max) {
            Ok(Some(plain)) => plain,
            Ok(None) => return too_large("decompressed body"),
            Err(why) => return error(ServiceErrorCode::BadRequest, why, encoding),
        },
        Some(_) => {
            return error(
                ServiceErrorCode::UnsupportedMediaType,
                "content-encoding must be gzip or identity",
                encoding,
            );
        }
    };
    let records = match decode(&bytes, encoding, state.ingest.limits.max_batch_events) {
        Ok(records) => records,
        Err((code, why)) => return error(code, why, encoding),
    };
    let trace = trace_context(&headers);
    match super::export(&state.ingest, &caller, records, trace, bytes.len(), None).await {
        Ok(answer) => {
            let body = match encoding {
                Encoding::Protobuf => Body::from(answer.encode_to_vec()),
                Encoding::Json => Body::from(serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into())),
            };
            let mut response = (StatusCode::OK, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.media_type()));
            response
        }
        Err(e) => {
            if e.error_code() == ServiceErrorCode::Internal {
                tracing::warn!(error = %e, "otlp logs export failed");
            }
            refuse(&ErrorAnswer::from_error(&e), encoding)
        }
    }
}

/// Decodes and maps a body; refuses (with the code and reason) one that does not decode or
/// holds too many records.
fn decode(bytes: &[u8], encoding: Encoding, max_records: usize) -> Result<Vec<OtlpRecord>, (ServiceErrorCode, String)> {
    let bad = |why: String| (ServiceErrorCode::BadRequest, why);
    let too_many = |count: usize| {
        let why = format!("at most {max_records} log records per request, got {count}");
        (ServiceErrorCode::PayloadTooLarge, why)
    };
    let records = match encoding {
        Encoding::Protobuf => {
            let request = ExportLogsServiceRequest::decode(bytes)
                .map_err(|e| bad(format!("body is not an OTLP ExportLogsServiceRequest: {e}")))?;
            let count = record_count(&request);
            if count > max_records {
                return Err(too_many(count));
            }
            otlp_from_request(request)
        }
        Encoding::Json => {
            let text = std::str::from_utf8(bytes).map_err(|_| bad("body is not UTF-8".into()))?;
            otlp_from_json(text).map_err(|e| bad(format!("body is not OTLP/JSON logs: {e}")))?
        }
    };
    if records.len() > max_records {
        return Err(too_many(records.len()));
    }
    Ok(records)
}

/// Inflates a gzip body; `Ok(None)` when it inflates beyond `max` bytes.
fn gunzip(bytes: &[u8], max: usize) -> Result<Option<Vec<u8>>, String> {
    let mut plain = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut plain)
        .map_err(|e| format!("body is not valid gzip: {e}"))?;
    Ok((plain.len() <= max).then_some(plain))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn gzip_bodies_inflate_within_the_limit() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&vec![b'a'; 10_000]).unwrap();
        let zipped = encoder.finish().unwrap();
        assert_eq!(gunzip(&zipped, 10_000).unwrap().map(|p| p.len()), Some(10_000));
        assert_eq!(gunzip(&zipped, 9_999).unwrap(), None, "a bomb stops at the limit");
        assert!(gunzip(b"not gzip", 100).is_err());
    }

    #[test]
    fn content_types_choose_the_encoding() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            Encoding::of(&headers)
        };
        assert_eq!(with("application/x-protobuf"), Some(Encoding::Protobuf));
        assert_eq!(with("Application/JSON; charset=utf-8"), Some(Encoding::Json));
        assert_eq!(with("text/plain"), None);
        assert_eq!(Encoding::of(&HeaderMap::new()), None);
    }
}
