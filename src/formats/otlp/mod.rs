//! OpenTelemetry logs (OTLP) as detections: the mapping from an `ExportLogsServiceRequest`, in
//! protobuf or OTLP/JSON, to one [`DetectionEvent`] per log record. Enrichment's
//! `LogsService/Export` and `POST /v1/logs` use it; it does no I/O and never panics.
//!
//! # Mapping of a log record
//!
//! | OTLP | detection |
//! |---|---|
//! | `time_unix_nano`, else `observed_time_unix_nano` (both 0: the record is rejected) | `timestamp` (validated like every detection: not before 1990, at most a day ahead) |
//! | `severity_number` 1–12 (TRACE…INFO) / 13–16 (WARN) / 17–20 (ERROR) / 21–24 (FATAL); 0: `severity_text` (`info`, `warning`, `error`, `critical`, … case-insensitive) | `severity` low / medium / high / critical; a number outside 0–24 rejects the record |
//! | `body` (a string; structured bodies as compact JSON, also flattened to `body.*` attributes) | `description` (else `security_rule.name`, else the event type) |
//! | `event_name`, else attribute `event.name`, else `otlp.log` | `event_type` |
//! | attributes, flattened to dotted keys (arrays of scalars joined with `,`) | `attributes`, `security_rule.*` and `event.name` kept first |
//! | resource attributes | `attributes` as `resource.<key>` |
//! | scope name / version | `attributes` `otel.scope.name` / `otel.scope.version` |
//! | resource `service.name` (else the scope name, else `otlp`) | `source_service` |
//! | resource `host.name` | `destination.hostname` (the host the event happened on) |
//! | `source.address`/`client.address`, `source.port`/`client.port`, `user.name`, `process.pid`, `process.executable.name`, `process.executable.path`, `process.command_line` | `source` endpoint and its process; addresses and the command line also become indicators |
//! | `destination.address`/`server.address`, `destination.port`/`server.port` | `destination` endpoint (a name, not an address, is its hostname and a domain indicator) |
//! | `url.full` | URL indicator |
//! | `security_rule.name`, `.uuid`, `.category`, `.ruleset.name`, `.version`, `.reference`, … | kept as attributes (the rule that fired, for analysts and sinks); `.uuid` also as `rule.id`, which ECS documents carry |
//! | technique ids in `security_rule.category`, `security_rule.reference` (`…/techniques/T1059/001/`), `threat.technique.id`, `threat.technique.subtechnique.id` | `technique_hints` (validated against ATT&CK by attribution, never trusted blindly) |
//! | `trace_id` + `span_id` (16 and 8 bytes, not all zero) and `flags` | [`OtlpEvent::traceparent`]: the batch the record travels in continues that trace; also the attributes `trace.id` / `span.id` (lowercase hex, as ECS names them) |
//!
//! A record from falcosidekick's OTLP logs output is a Falco alert: it is rebuilt and parsed by
//! the Falco parser (`original_format` `falco`), so it is attributed as the same alert over
//! Falco's HTTP output. Every other record has `detector_kind` OTHER, `original_format` `otlp`
//! and as `original` the record alone as an OTLP/JSON request (its resource and scope included),
//! so the same record sent twice, over protobuf or JSON, has the same deterministic `event_id`.
//!
//! Invalid ids are ignored as the OTLP specification asks (the record is then not part of a
//! trace); caps on sizes and counts are those of every format ([`crate::limits`]).

mod decode;
mod falco;
#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};
use pbjson_types::Timestamp;
use serde_json::{Map, Number, Value};

use super::builder::EventBuilder;
use super::common::{flatten, port_from_str};
use super::{ParseError, falco_from_value};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Process, Severity};
use decode::Located;

/// The OTLP protobuf and service types this module reads: `collector` holds
/// `ExportLogsServiceRequest`, `ExportLogsServiceResponse`, `ExportLogsPartialSuccess` and the
/// tonic `logs_service_server`.
pub mod proto {
    pub use opentelemetry_proto::tonic::collector::logs::v1 as collector;
    pub use opentelemetry_proto::tonic::common::v1 as common;
    pub use opentelemetry_proto::tonic::logs::v1 as logs;
    pub use opentelemetry_proto::tonic::resource::v1 as resource;
}

/// `original_format` of events mapped from generic log records.
pub const FORMAT: &str = "otlp";

/// Event type of a record with neither `event_name` nor an `event.name` attribute.
pub const DEFAULT_EVENT_TYPE: &str = "otlp.log";

/// Deepest nesting of attribute values read; deeper values are left out.
const MAX_DEPTH: usize = 16;

/// Attributes kept first when a record has more than the cap allows.
const PRIORITY: &[&str] = &[
    "event.name",
    "security_rule.",
    "rule.id",
    "process.command_line",
    "resource.",
];

/// One log record of a request, mapped.
#[derive(Debug)]
pub struct OtlpRecord {
    /// Where the record is in the request (`resourceLogs[0].scopeLogs[0].logRecords[2]`).
    pub path: String,
    /// The detection, or why the record is rejected (naming the field).
    pub result: Result<OtlpEvent, ParseError>,
}

/// A detection mapped from a log record.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpEvent {
    /// The detection.
    pub event: DetectionEvent,
    /// W3C `traceparent` of the span the record was logged in, when it has valid ids.
    pub traceparent: Option<String>,
}

/// Maps every log record of a decoded request, in request order.
pub fn otlp_from_request(request: ExportLogsServiceRequest) -> Vec<OtlpRecord> {
    map_slots(decode::slots(request))
}

/// Decodes a protobuf `ExportLogsServiceRequest` and maps its records; a body that is not one
/// fails whole.
pub fn otlp_from_protobuf(bytes: &[u8]) -> Result<Vec<OtlpRecord>, ParseError> {
    decode::protobuf(bytes).map(otlp_from_request)
}

/// Reads an OTLP/JSON `ExportLogsServiceRequest` and maps its records. A record whose fields do
/// not decode is rejected on its own; a body whose shape hides the records fails whole.
pub fn otlp_from_json(text: &str) -> Result<Vec<OtlpRecord>, ParseError> {
    decode::json(text).map(map_slots)
}

/// Counts the log records of a request without mapping them.
pub fn record_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

fn map_slots(slots: Vec<(String, decode::Slot)>) -> Vec<OtlpRecord> {
    slots
        .into_iter()
        .map(|(path, slot)| OtlpRecord {
            path,
            result: slot.and_then(|located| map(&located)),
        })
        .collect()
}

/// Maps one record (see the module doc).
fn map(located: &Located) -> Result<OtlpEvent, ParseError> {
    let record = &located.record;
    let time = record_time(record)?;
    let severity = severity(record)?;
    let traceparent = traceparent(record);
    if let Some(alert) = falco::alert(located, &time)? {
        let event = falco_from_value(&alert)?;
        return Ok(OtlpEvent { event, traceparent });
    }
    let original = serde_json::to_string(&alone(located)).map_err(|e| ParseError::Otlp(e.to_string()))?;
    let mut b = EventBuilder::named(FORMAT, &original, DetectorKind::Other);
    b.timestamp(time);
    b.severity(severity);
    let attributes = attributes_object(&record.attributes);
    let text = |key: &str| attributes.get(key).and_then(value_text);
    let event_type = Some(record.event_name.trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .or_else(|| text("event.name"))
        .unwrap_or_else(|| DEFAULT_EVENT_TYPE.to_owned());
    b.event_type(&event_type);
    let service = attr_str(&located.resource.attributes, "service.name")
        .or(Some(located.scope.name.as_str()))
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(FORMAT);
    b.source_service(service);
    let description = body_text(record.body.as_ref())
        .or_else(|| text("security_rule.name"))
        .unwrap_or(event_type);
    b.description(&description);
    endpoints(&mut b, &attributes, attr_str(&located.resource.attributes, "host.name"));
    for key in [
        "security_rule.category",
        "security_rule.reference",
        "threat.technique.id",
        "threat.technique.subtechnique.id",
    ] {
        if let Some(value) = text(key) {
            technique_ids(&value).iter().for_each(|id| b.hint(id));
        }
    }
    b.priority(PRIORITY);
    b.attributes(flat_attributes(located, attributes));
    if traceparent.is_some() {
        b.attributes([
            ("trace.id".to_owned(), hex(&record.trace_id)),
            ("span.id".to_owned(), hex(&record.span_id)),
        ]);
    }
    Ok(OtlpEvent {
        event: b.finish(),
        traceparent,
    })
}

/// The record as a request of its own, the `original` of its event.
fn alone(located: &Located) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(located.resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(located.scope.clone()),
                log_records: vec![located.record.clone()],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The record's time: `time_unix_nano`, else `observed_time_unix_nano`.
fn record_time(record: &LogRecord) -> Result<Timestamp, ParseError> {
    let nanos = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => return Err(ParseError::MissingField("time_unix_nano".into())),
        (0, observed) => observed,
        (time, _) => time,
    };
    // u64 nanoseconds end in 2554: both parts fit.
    let seconds = i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = i32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok(Timestamp { seconds, nanos })
}

/// The severity of a record (see the module doc).
fn severity(record: &LogRecord) -> Result<Severity, ParseError> {
    Ok(match record.severity_number {
        0 => severity_from_text(&record.severity_text),
        1..=12 => Severity::Low,
        13..=16 => Severity::Medium,
        17..=20 => Severity::High,
        21..=24 => Severity::Critical,
        other => {
            return Err(ParseError::UnknownValue {
                field: "severity_number".into(),
                value: other.to_string(),
                expected: "0 to 24 (OpenTelemetry SeverityNumber)",
            });
        }
    })
}

/// A severity named in free text (`INFO`, `Warning`, `ERROR2`, `crit`, …); unknown: unspecified.
fn severity_from_text(text: &str) -> Severity {
    let lower = text.trim().to_ascii_lowercase();
    match lower.trim_end_matches(|c: char| c.is_ascii_digit()) {
        "trace" | "debug" | "info" | "information" | "informational" | "notice" | "low" => Severity::Low,
        "warn" | "warning" | "medium" => Severity::Medium,
        "error" | "err" | "high" => Severity::High,
        "fatal" | "critical" | "crit" | "alert" | "emergency" | "emerg" => Severity::Critical,
        _ => Severity::Unspecified,
    }
}

/// `00-<trace id>-<span id>-<flags>` when both ids are valid (right length, not all zero).
fn traceparent(record: &LogRecord) -> Option<String> {
    let valid = |id: &[u8], len: usize| id.len() == len && id.iter().any(|b| *b != 0);
    if !valid(&record.trace_id, 16) || !valid(&record.span_id, 8) {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        hex(&record.trace_id),
        hex(&record.span_id),
        record.flags & 0xff
    ))
}

/// Bytes as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets the endpoints from semantic-convention attributes and the resource's host name.
fn endpoints(b: &mut EventBuilder<'_>, attributes: &Map<String, Value>, host: Option<&str>) {
    let text = |keys: &[&str]| keys.iter().find_map(|key| attributes.get(*key).and_then(value_text));
    let port = |keys: &[&str]| text(keys).map(|p| port_from_str(&p)).unwrap_or(0);
    let process = Process {
        pid: text(&["process.pid"]).and_then(|p| p.parse().ok()).unwrap_or(0),
        name: text(&["process.executable.name"]).unwrap_or_default(),
        executable: text(&["process.executable.path"]).unwrap_or_default(),
        command_line: text(&["process.command_line"]).unwrap_or_default(),
        parent_name: String::new(),
    };
    let source_address = text(&["source.address", "client.address"]).unwrap_or_default();
    let (source_ip, source_host) = address(b, &source_address);
    b.source(Endpoint {
        ip: source_ip,
        port: port(&["source.port", "client.port"]),
        hostname: source_host,
        user: text(&["user.name", "enduser.id"]).unwrap_or_default(),
        process: (process != Process::default()).then_some(process.clone()),
    });
    let destination_address = text(&["destination.address", "server.address"]).unwrap_or_default();
    let (destination_ip, destination_host) = address(b, &destination_address);
    let hostname = Some(destination_host)
        .filter(|h| !h.is_empty())
        .or(host.map(str::to_owned))
        .unwrap_or_default();
    b.destination(Endpoint {
        ip: destination_ip,
        port: port(&["destination.port", "server.port"]),
        hostname,
        ..Endpoint::default()
    });
    if !process.command_line.trim().is_empty() {
        b.indicator(IndicatorType::ProcessCommandLine, &process.command_line);
    }
    if let Some(url) = text(&["url.full"]) {
        b.indicator(IndicatorType::Url, &url);
    }
}

/// An address attribute as (ip, hostname): a name is also a domain indicator.
fn address(b: &mut EventBuilder<'_>, text: &str) -> (String, String) {
    let ip = super::common::ip_text(text);
    if !ip.is_empty() || text.trim().is_empty() {
        return (ip, String::new());
    }
    b.domain_indicator(text);
    (String::new(), text.trim().to_owned())
}

/// The record's attributes, resource attributes (`resource.`), scope and structured body
/// (`body.`), flattened; `security_rule.uuid` is also `rule.id`.
fn flat_attributes(located: &Located, attributes: Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(uuid) = attributes.get("security_rule.uuid").and_then(value_text) {
        out.push(("rule.id".to_owned(), uuid));
    }
    flatten(&Value::Object(attributes), &mut out);
    let mut nested = Map::new();
    nested.insert(
        "resource".into(),
        Value::Object(attributes_object(&located.resource.attributes)),
    );
    let mut scope = Map::new();
    for (key, value) in [("name", &located.scope.name), ("version", &located.scope.version)] {
        if !value.is_empty() {
            scope.insert(key.into(), Value::String(value.clone()));
        }
    }
    nested.insert(
        "otel".into(),
        Value::Object(Map::from_iter([("scope".into(), Value::Object(scope))])),
    );
    if let Some(body @ Value::Object(_)) = located.record.body.as_ref().map(|v| json_value(v, 0)) {
        nested.insert("body".into(), body);
    }
    flatten(&Value::Object(nested), &mut out);
    out
}

/// Technique ids in free text: `T1059`, `t1059.001`, and ATT&CK URLs' `/techniques/T1059/001`.
fn technique_ids(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '/')) {
        let parts: Vec<&str> = chunk.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let is_parent =
                part.len() == 5 && part.starts_with(['T', 't']) && part[1..].bytes().all(|b| b.is_ascii_digit());
            let next = parts
                .get(i + 1)
                .filter(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
            match next {
                Some(sub) if is_parent => ids.push(format!("{part}.{sub}")),
                _ if part.starts_with(['T', 't']) && part.as_bytes().get(1).is_some_and(u8::is_ascii_digit) => {
                    ids.push((*part).to_owned());
                }
                _ => {}
            }
        }
    }
    ids
}

/// The first string value of `key` among `attributes`.
pub(crate) fn attr_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Attributes as a JSON object; the first of duplicate keys wins (OTLP forbids duplicates).
pub(crate) fn attributes_object(attributes: &[KeyValue]) -> Map<String, Value> {
    kvlist(attributes, 0)
}

fn kvlist(attributes: &[KeyValue], depth: usize) -> Map<String, Value> {
    let mut map = Map::new();
    for kv in attributes {
        if kv.key.is_empty() || map.contains_key(&kv.key) {
            continue;
        }
        let value = kv.value.as_ref().map_or(Value::Null, |v| json_value(v, depth + 1));
        map.insert(kv.key.clone(), value);
    }
    map
}

/// An `AnyValue` as JSON: bytes as lowercase hex, non-finite doubles as text, nesting beyond
/// [`MAX_DEPTH`] as null.
fn json_value(value: &AnyValue, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match &value.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::Number((*i).into()),
        Some(any_value::Value::DoubleValue(d)) => {
            Number::from_f64(*d).map_or_else(|| Value::String(d.to_string()), Value::Number)
        }
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(|v| json_value(v, depth + 1)).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(kvlist(&list.values, depth)),
        Some(any_value::Value::BytesValue(bytes)) => Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// A scalar as text (numbers and booleans as written); `None` for empty text and structures.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The body as a description: a string as it is, anything else as compact JSON.
pub(crate) fn body_text(body: Option<&AnyValue>) -> Option<String> {
    match json_value(body?, 0) {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}
