//! Validation of every event that enters or leaves attackmesh, in one place.
//!
//! Validation never mutates: [`prepare_detection`] is the one normalising step (it fills a
//! missing `event_id`). Violations carry the field path (`source.ip`, `indicators[2].value`, …)
//! and map to gRPC `InvalidArgument` with `BadRequest` field violations via [`to_status`].

use std::{fmt::Display, net::IpAddr};

use chrono::Utc;
use pbjson_types::Timestamp;

use crate::held::EventView;
use crate::limits::*;
use crate::proto::{
    AttributionStatus, DetectionEvent, DetectorKind, Endpoint, EnrichedEvent, EvidenceSource, FieldViolation,
    Indicator, IndicatorType, Severity,
};
use crate::text::{clip, is_domain};

mod repeats;

pub use repeats::{InBatch, repeats};

/// Collects violations under a path prefix.
#[derive(Debug, Default)]
pub struct Violations {
    prefix: String,
    items: Vec<FieldViolation>,
}

impl Violations {
    /// Starts an empty collection whose field paths begin with `prefix` (may be empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            items: Vec::new(),
        }
    }

    /// Records one violation of `field` (relative to the prefix). Callers pass composed paths
    /// as `format_args!`, so valid events (the common case) never format one.
    pub fn add(&mut self, field: impl Display, description: impl Into<String>) {
        let field = field.to_string();
        let field = match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field,
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{field}", self.prefix),
        };
        self.items.push(FieldViolation {
            field,
            description: description.into(),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn result(self) -> Result<(), Vec<FieldViolation>> {
        if self.items.is_empty() { Ok(()) } else { Err(self.items) }
    }

    fn max_len(&mut self, field: impl Display, value: &str, max: usize) {
        if value.len() > max {
            self.add(field, format!("must be at most {max} bytes, got {}", value.len()));
        }
    }

    fn required(&mut self, field: impl Display, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else {
            self.max_len(field, value, max);
        }
    }

    fn unit_interval(&mut self, field: impl Display, value: f64) {
        if !(0.0..=1.0).contains(&value) {
            self.add(field, format!("must be within [0, 1], got {value}"));
        }
    }
}

/// Fills what a detector may leave out: a missing `event_id` becomes a random UUID.
pub fn prepare_detection(event: &mut DetectionEvent) {
    if event.event_id.is_empty() {
        event.event_id = uuid::Uuid::new_v4().to_string();
    }
}

/// Checks a detection as received from a detector (after [`prepare_detection`]), its
/// attributes wherever they are held.
pub fn detection_event(event: &impl EventView<DetectionEvent>) -> Result<(), Vec<FieldViolation>> {
    let mut v = Violations::new("");
    check_detection(&mut v, event.event());
    check_attributes(&mut v, event.attribute_count(), event.attribute_bytes());
    v.result()
}

/// Checks an enriched event before it is exported, its attributes wherever they are held.
pub fn enriched_event(view: &impl EventView<EnrichedEvent>) -> Result<(), Vec<FieldViolation>> {
    let event = view.event();
    let mut v = Violations::new("");
    event_id(&mut v, &event.event_id, true);
    timestamp(&mut v, "timestamp", event.timestamp.as_ref(), true);
    v.required("source_service", &event.source_service, MAX_SOURCE_SERVICE_BYTES);
    v.required("event_type", &event.event_type, MAX_EVENT_TYPE_BYTES);
    enum_value::<DetectorKind>(&mut v, "detector_kind", event.detector_kind);
    enum_value::<Severity>(&mut v, "severity", event.severity);
    enum_value::<AttributionStatus>(&mut v, "attribution_status", event.attribution_status);
    endpoint(&mut v, "source", event.source.as_ref());
    endpoint(&mut v, "destination", event.destination.as_ref());
    v.max_len("description", &event.description, MAX_DESCRIPTION_BYTES);
    v.max_len("original", &event.original, MAX_ORIGINAL_BYTES);
    v.max_len("original_format", &event.original_format, MAX_SHORT_BYTES);
    if event.technique_ids.len() > MAX_TECHNIQUES {
        v.add("technique_ids", format!("at most {MAX_TECHNIQUES} techniques"));
    }
    for (i, id) in event.technique_ids.iter().enumerate() {
        if !is_technique_id(id) {
            v.add(
                format_args!("technique_ids[{i}]"),
                format!("`{id}` is not an ATT&CK technique id (T1234 or T1234.567)"),
            );
        }
    }
    v.unit_interval("confidence_score", event.confidence_score);
    if let Some(metadata) = &event.metadata {
        for (i, technique) in metadata.techniques.iter().enumerate() {
            v.unit_interval(
                format_args!("metadata.techniques[{i}].confidence"),
                technique.confidence,
            );
            for (j, evidence) in technique.evidence.iter().enumerate() {
                enum_value::<EvidenceSource>(
                    &mut v,
                    format_args!("metadata.techniques[{i}].evidence[{j}].source"),
                    evidence.source,
                );
                v.unit_interval(
                    format_args!("metadata.techniques[{i}].evidence[{j}].confidence"),
                    evidence.confidence,
                );
            }
        }
        for (i, actor) in metadata.threat_actors.iter().enumerate() {
            v.unit_interval(format_args!("metadata.threat_actors[{i}].score"), actor.score);
        }
    }
    indicators(&mut v, "related_indicators", &event.related_indicators);
    check_attributes(&mut v, view.attribute_count(), view.attribute_bytes());
    timestamp(&mut v, "enriched_at", event.enriched_at.as_ref(), false);
    if event.revision == 0 {
        v.add("revision", "must be at least 1");
    }
    v.result()
}

fn check_detection(v: &mut Violations, event: &DetectionEvent) {
    event_id(v, &event.event_id, false);
    timestamp(v, "timestamp", event.timestamp.as_ref(), true);
    v.required("source_service", &event.source_service, MAX_SOURCE_SERVICE_BYTES);
    v.required("event_type", &event.event_type, MAX_EVENT_TYPE_BYTES);
    enum_value::<DetectorKind>(v, "detector_kind", event.detector_kind);
    enum_value::<Severity>(v, "severity", event.severity);
    endpoint(v, "source", event.source.as_ref());
    endpoint(v, "destination", event.destination.as_ref());
    v.max_len("description", &event.description, MAX_DESCRIPTION_BYTES);
    v.max_len("original", &event.original, MAX_ORIGINAL_BYTES);
    v.max_len("original_format", &event.original_format, MAX_SHORT_BYTES);
    indicators(v, "indicators", &event.indicators);
    if event.technique_hints.len() > MAX_TECHNIQUE_HINTS {
        v.add(
            "technique_hints",
            format!(
                "at most {MAX_TECHNIQUE_HINTS} hints, got {}",
                event.technique_hints.len()
            ),
        );
    }
    for (i, hint) in event.technique_hints.iter().enumerate() {
        if !is_technique_id(hint) {
            v.add(
                format_args!("technique_hints[{i}]"),
                format!(
                    "`{}` is not an ATT&CK technique id (T1234 or T1234.567)",
                    clip(hint, 64)
                ),
            );
        }
    }
    if let Some(c) = event.detector_confidence {
        v.unit_interval("detector_confidence", c);
    }
}

fn event_id(v: &mut Violations, id: &str, required: bool) {
    if id.is_empty() {
        if required {
            v.add("event_id", "is required");
        }
        return;
    }
    if id.len() > MAX_EVENT_ID_BYTES {
        v.add("event_id", format!("must be at most {MAX_EVENT_ID_BYTES} bytes"));
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        v.add("event_id", "may contain only letters, digits and . _ : -");
    }
}

/// Checks a timestamp: present when required, nanos in range, between 1990 and one day ahead.
pub fn timestamp(v: &mut Violations, field: impl Display, ts: Option<&Timestamp>, required: bool) {
    let Some(ts) = ts else {
        if required {
            v.add(field, "is required");
        }
        return;
    };
    if !(0..1_000_000_000).contains(&ts.nanos) {
        v.add(field, format!("nanos must be within [0, 999999999], got {}", ts.nanos));
        return;
    }
    let latest = Utc::now().timestamp() + MAX_FUTURE_SKEW_SECS;
    if ts.seconds < MIN_TIMESTAMP_SECS {
        v.add(field, "must not be before 1990-01-01T00:00:00Z");
    } else if ts.seconds > latest {
        v.add(field, "must not be more than one day in the future");
    }
}

fn enum_value<E: TryFrom<i32>>(v: &mut Violations, field: impl Display, value: i32) {
    if E::try_from(value).is_err() {
        v.add(field, format!("unknown enum value {value}"));
    }
}

fn endpoint(v: &mut Violations, field: &str, endpoint: Option<&Endpoint>) {
    let Some(e) = endpoint else { return };
    if !e.ip.is_empty() && e.ip.parse::<IpAddr>().is_err() {
        v.add(
            format_args!("{field}.ip"),
            format!("`{}` is not an IPv4 or IPv6 address", clip(&e.ip, 64)),
        );
    }
    if e.port > u32::from(u16::MAX) {
        v.add(
            format_args!("{field}.port"),
            format!("must be at most 65535, got {}", e.port),
        );
    }
    v.max_len(format_args!("{field}.hostname"), &e.hostname, MAX_HOSTNAME_BYTES);
    v.max_len(format_args!("{field}.user"), &e.user, MAX_USER_BYTES);
    if let Some(p) = &e.process {
        v.max_len(format_args!("{field}.process.name"), &p.name, MAX_SHORT_BYTES);
        v.max_len(
            format_args!("{field}.process.executable"),
            &p.executable,
            MAX_SHORT_BYTES,
        );
        v.max_len(
            format_args!("{field}.process.parent_name"),
            &p.parent_name,
            MAX_SHORT_BYTES,
        );
        v.max_len(
            format_args!("{field}.process.command_line"),
            &p.command_line,
            MAX_COMMAND_LINE_BYTES,
        );
    }
}

fn indicators(v: &mut Violations, field: &str, items: &[Indicator]) {
    if items.len() > MAX_INDICATORS {
        v.add(
            field,
            format!("at most {MAX_INDICATORS} indicators, got {}", items.len()),
        );
    }
    for (i, ind) in items.iter().enumerate() {
        if let Err(why) = indicator(ind) {
            let sub = if why.on_type { "type" } else { "value" };
            v.add(format_args!("{field}[{i}].{sub}"), why.message);
        }
    }
}

struct IndicatorError {
    on_type: bool,
    message: String,
}

fn indicator(ind: &Indicator) -> Result<(), IndicatorError> {
    let bad_value = |message: String| IndicatorError {
        on_type: false,
        message,
    };
    let kind = IndicatorType::try_from(ind.r#type)
        .ok()
        .filter(|t| *t != IndicatorType::Unspecified)
        .ok_or_else(|| IndicatorError {
            on_type: true,
            message: format!("unknown indicator type {}", ind.r#type),
        })?;
    let value = ind.value.as_str();
    if value.is_empty() {
        return Err(bad_value("is required".into()));
    }
    if value.len() > MAX_INDICATOR_BYTES {
        return Err(bad_value(format!("must be at most {MAX_INDICATOR_BYTES} bytes")));
    }
    let ok = match kind {
        IndicatorType::Ipv4 => ip_or_cidr(value, true),
        IndicatorType::Ipv6 => ip_or_cidr(value, false),
        IndicatorType::Domain => is_domain(value),
        IndicatorType::Url => value
            .split_once("://")
            .is_some_and(|(s, rest)| !s.is_empty() && !rest.is_empty()),
        IndicatorType::FileMd5 => is_hex(value, 32),
        IndicatorType::FileSha1 | IndicatorType::X509Sha1 => is_hex(value, 40),
        IndicatorType::FileSha256 => is_hex(value, 64),
        IndicatorType::Email => value
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && is_domain(d)),
        IndicatorType::Mac => is_mac(value),
        IndicatorType::FileName | IndicatorType::UserAccount | IndicatorType::ProcessCommandLine => {
            !value.chars().any(|c| c == '\0')
        }
        IndicatorType::Unspecified => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad_value(format!(
            "`{}` is not a valid {}",
            clip(value, 64),
            kind.as_str_name()
        )))
    }
}

fn ip_or_cidr(value: &str, v4: bool) -> bool {
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    ip.is_ipv4() == v4 && prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_mac(value: &str) -> bool {
    let parts: Vec<&str> = value.split([':', '-']).collect();
    parts.len() == 6 && parts.iter().all(|p| is_hex(p, 2))
}

/// Checks the attributes' count and sizes; only a key named in a violation is read as text.
fn check_attributes<'a>(v: &mut Violations, count: usize, attrs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    if count > MAX_ATTRIBUTES {
        v.add(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes, got {count}"),
        );
    }
    for (key, value) in attrs {
        let text = || String::from_utf8_lossy(key);
        if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            v.add(
                "attributes",
                format!(
                    "key `{}` must be 1 to {MAX_ATTRIBUTE_KEY_BYTES} bytes",
                    clip(&text(), 64)
                ),
            );
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            v.add(
                format_args!("attributes[{}]", clip(&text(), 64)),
                format!("must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes"),
            );
        }
    }
}

/// True for `T` + four digits, optionally `.` + three digits.
pub fn is_technique_id(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..5]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..9]),
        _ => false,
    }
}

/// The first three violations as one line (`field: description; …`), for error messages and logs.
pub fn summary(violations: &[FieldViolation]) -> String {
    summarize("", violations)
}

/// Field path of a violation under `prefix` (`prefix.field`, or `field` without a prefix).
fn field_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn summarize(prefix: &str, violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .take(3)
        .map(|v| format!("{}: {}", field_path(prefix, &v.field), v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Turns violations into `InvalidArgument` with `BadRequest` details, every path under `prefix`.
pub fn to_status(prefix: &str, violations: &[FieldViolation]) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let summary = summarize(prefix, violations);
    let details = ErrorDetails::with_bad_request(
        violations
            .iter()
            .map(|fv| tonic_types::FieldViolation::new(field_path(prefix, &fv.field), fv.description.clone()))
            .collect::<Vec<_>>(),
    );
    tonic::Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid argument: {summary}"),
        details,
    )
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
