//! Canonical `DetectionEvent` JSON, one event per line (the proto3 JSON mapping, field names as
//! in the schema). Events are taken as given: size limits and field rules are for validation to
//! enforce. Only what a line cannot do without is filled in or required.

use super::builder::event_id;
use super::common::truncate;
use super::{Format, ParseError};
use crate::json::from_json;
use crate::limits::MAX_ORIGINAL_BYTES;
use crate::proto::DetectionEvent;

/// Parses one canonical event line.
///
/// A line without `timestamp` is an error. A missing `event_id` is derived from the line like
/// the other formats do, and a missing `original` becomes the line itself (cut to
/// [`MAX_ORIGINAL_BYTES`]) with `original_format` `ndjson`.
pub(super) fn parse(line: &str) -> Result<DetectionEvent, ParseError> {
    let mut event: DetectionEvent = from_json(line).map_err(|error| {
        // A syntax error reads better in the shape every format uses; a decoding error names
        // the offending field.
        match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Err(syntax) => ParseError::from_json(&syntax),
            _ => ParseError::InvalidEvent(error.to_string()),
        }
    })?;
    if event.timestamp.is_none() {
        return Err(ParseError::MissingField("timestamp".into()));
    }
    if event.event_id.is_empty() {
        event.event_id = event_id(Format::Ndjson.name(), &event.event_type, line);
    }
    if event.original.is_empty() {
        let mut original = line.to_owned();
        truncate(&mut original, MAX_ORIGINAL_BYTES);
        event.original = original;
        event.original_format = Format::Ndjson.name().to_owned();
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_event_round_trips() {
        let line = r#"{"event_id":"e-1","timestamp":"2024-01-01T00:00:00Z","source_service":"scanner-7","detector_kind":"DETECTOR_KIND_TRAFFIC_MONITOR","event_type":"port_scan","source":{"ip":"192.0.2.1"},"attributes":{"ports":"22,80"},"technique_hints":["T1046"]}"#;
        let event = parse(line).unwrap_or_default();
        assert_eq!(event.event_id, "e-1");
        assert_eq!(event.event_type, "port_scan");
        assert_eq!(event.detector_kind, 1);
        assert_eq!(event.attributes["ports"], "22,80");
        assert_eq!(event.original, line);
        assert_eq!(event.original_format, "ndjson");
    }

    #[test]
    fn errors_are_specific() {
        let missing = parse(r#"{"event_type":"x"}"#).err().map(|e| e.to_string());
        assert_eq!(missing.as_deref(), Some("missing field `timestamp`"));
        let derived = parse(r#"{"event_type":"x","timestamp":"2024-01-01T00:00:00Z"}"#).unwrap_or_default();
        assert_eq!(derived.event_id.len(), 36);
        let wrong = parse(r#"{"timestamp":"2024-01-01T00:00:00Z","severity":[1]}"#).err();
        assert!(matches!(wrong, Some(ParseError::InvalidEvent(_))), "{wrong:?}");
        let broken = parse(r#"{"event_type":"#).err().map(|e| e.to_string());
        assert!(broken.is_some_and(|e| e.starts_with("invalid JSON at column ")));
    }
}
