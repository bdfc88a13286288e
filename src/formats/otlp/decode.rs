//! Decoding of an OTLP logs export request, protobuf or OTLP/JSON, into one [`Slot`] per log
//! record: the record with its resource and scope, or why it could not be read.
//!
//! Protobuf either decodes whole or not at all. OTLP/JSON is read record by record, so one
//! record with a field of the wrong type (a number where a hex `traceId` belongs) is rejected on
//! its own while its neighbours go on; JSON that is not an object of `resourceLogs` arrays fails
//! the whole body. OTLP/JSON rules (camelCase names, hex trace and span ids, 64-bit integers as
//! decimal strings or numbers, enums as integers, unknown fields ignored) are those of the
//! `opentelemetry-proto` serde types.

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::InstrumentationScope,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::formats::ParseError;
use crate::text::clip;

/// A record with what it shares with its neighbours, borrowed from or moved out of the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Located {
    /// The record's resource (empty when the request had none).
    pub(crate) resource: Resource,
    /// The record's instrumentation scope (empty when the request had none).
    pub(crate) scope: InstrumentationScope,
    /// The record.
    pub(crate) record: LogRecord,
}

/// One log record of a request, in request order, or why it could not be read.
pub(crate) type Slot = Result<Located, ParseError>;

/// Where the record at `(resource, scope, record)` sits, as OTLP/JSON names the path.
pub(crate) fn path(resource: usize, scope: usize, record: usize) -> String {
    format!("resourceLogs[{resource}].scopeLogs[{scope}].logRecords[{record}]")
}

/// Decodes a protobuf `ExportLogsServiceRequest`.
pub(crate) fn protobuf(bytes: &[u8]) -> Result<ExportLogsServiceRequest, ParseError> {
    ExportLogsServiceRequest::decode(bytes).map_err(|e| ParseError::Otlp(format!("invalid OTLP protobuf: {e}")))
}

/// The records of a decoded request, with their paths.
pub(crate) fn slots(request: ExportLogsServiceRequest) -> Vec<(String, Slot)> {
    let mut out = Vec::new();
    for (r, resource_logs) in request.resource_logs.into_iter().enumerate() {
        let ResourceLogs {
            resource, scope_logs, ..
        } = resource_logs;
        let resource = resource.unwrap_or_default();
        for (s, scope_logs) in scope_logs.into_iter().enumerate() {
            let ScopeLogs { scope, log_records, .. } = scope_logs;
            let scope = scope.unwrap_or_default();
            for (i, record) in log_records.into_iter().enumerate() {
                let located = Located {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    record,
                };
                out.push((path(r, s, i), Ok(located)));
            }
        }
    }
    out
}

/// Reads an OTLP/JSON body record by record (see the module doc).
pub(crate) fn json(text: &str) -> Result<Vec<(String, Slot)>, ParseError> {
    let body = crate::formats::json_object(text.trim_start_matches('\u{feff}'))?;
    let mut out = Vec::new();
    for (r, resource_logs) in array(&body, "resourceLogs", "resourceLogs")?.iter().enumerate() {
        let at = format!("resourceLogs[{r}]");
        let resource: Result<Resource, ParseError> = field(resource_logs, "resource", &at);
        for (s, scope_logs) in array(resource_logs, "scopeLogs", &format!("{at}.scopeLogs"))?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.scopeLogs[{s}]");
            let scope: Result<InstrumentationScope, ParseError> = field(scope_logs, "scope", &at);
            for (i, record) in array(scope_logs, "logRecords", &format!("{at}.logRecords"))?
                .iter()
                .enumerate()
            {
                let slot = match (&resource, &scope) {
                    (Err(e), _) | (_, Err(e)) => Err(clone_error(e)),
                    (Ok(resource), Ok(scope)) => decode::<LogRecord>(record, "").map(|record| Located {
                        resource: resource.clone(),
                        scope: scope.clone(),
                        record,
                    }),
                };
                out.push((path(r, s, i), slot));
            }
        }
    }
    Ok(out)
}

/// The array under `key` of `object` (absent or null reads as empty); anything else fails the
/// whole body, since the records in it cannot be counted.
fn array<'a>(object: &'a Value, key: &str, at: &str) -> Result<&'a [Value], ParseError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ParseError::WrongType {
            field: at.to_owned(),
            expected: "an array",
        }),
    }
}

/// The message under `key` of `object` (absent or null: the default).
fn field<T: DeserializeOwned + Default>(object: &Value, key: &str, at: &str) -> Result<T, ParseError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => decode(value, &format!("{at}.{key}")),
    }
}

/// Decodes one message, naming the field that failed (`timeUnixNano`, `body.intValue`, …).
fn decode<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let field = match (at.is_empty(), inner.as_str()) {
            (true, _) => inner.clone(),
            (false, ".") => at.to_owned(),
            (false, _) => format!("{at}.{inner}"),
        };
        ParseError::Otlp(format!("field `{field}`: {}", clip(&e.into_inner().to_string(), 200)))
    })
}

/// [`ParseError`] holds an `io::Error` and so is not `Clone`; a resource or scope error is
/// copied to every record under it as its text.
fn clone_error(error: &ParseError) -> ParseError {
    ParseError::Otlp(error.to_string())
}
