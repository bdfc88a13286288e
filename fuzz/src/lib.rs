//! What must hold for any input, shared by the fuzz targets: beyond "never panic", a parser's
//! output is valid, survives canonical JSON, and the line reader agrees with `parse_line`.
//!
//! The targets live in `fuzz_targets/`; `scripts/fuzz` builds and runs them with cargo-fuzz.

#![forbid(unsafe_code)]

use std::io::Cursor;

use attackmesh::formats::{Format, ParseState, Reader, parse_line};
use attackmesh::json::{from_json, to_json};
use attackmesh::proto::DetectionEvent;
use attackmesh_intel::stix::{
    LATEST_VERSION_US, Producer, StixObject, builder,
    merge::{Stored, merge},
    micros_to_datetime, parse_micros, validate,
};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};

/// The stream name given to parsers (Zeek names a log by its file when there is no `#path`).
const SOURCE: &str = "conn.log";

/// Feeds `data` to `format`'s parser line by line and through [`Reader`], checking every event.
pub fn check_format(format: Format, data: &[u8]) {
    let by_line = parse_lines(format, data);
    let by_reader = read_all(format, data);
    // Document formats also join lines into multi-line documents and split arrays, so their
    // Reader may see events that no single line holds: each is checked, not compared.
    if std::str::from_utf8(data).is_ok() && !format.reads_documents() {
        assert_eq!(by_line, by_reader, "parse_line and Reader disagree on the events of a stream");
    }
}

/// Event ids from `parse_line` over each line of the lossily decoded input.
fn parse_lines(format: Format, data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut state = ParseState::new(SOURCE);
    let mut ids = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Ok(Some(event)) = parse_line(format, line, &mut state) {
            check_event(format, &event);
            // Deterministic ids: the same line in the same state yields the same event.
            let mut again = state.clone();
            if let Ok(Some(twin)) = parse_line(format, line, &mut again) {
                assert_eq!(twin.event_id, event.event_id, "event id is not deterministic");
            }
            ids.push(event.event_id);
        }
    }
    ids
}

/// Event ids from a [`Reader`] over the raw bytes, checking offsets as a shipper relies on them.
fn read_all(format: Format, data: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut end = 0u64;
    let mut records = 0usize;
    for record in Reader::new(format, Cursor::new(data), SOURCE) {
        records += 1;
        assert!(records <= data.len() + 1, "reader yields more records than there are bytes");
        assert_eq!(record.offset, end, "records must be contiguous");
        assert!(record.end_offset >= record.offset, "end before start");
        assert!(record.end_offset <= data.len() as u64, "record ends past the input");
        if record.result.is_ok() {
            assert!(record.end_offset > record.offset || data.is_empty(), "a record without bytes");
        }
        end = record.end_offset;
        if let Ok(Some(event)) = record.result {
            check_event(format, &event);
            ids.push(event.event_id);
        }
    }
    assert_eq!(end, data.len() as u64, "reader stopped before the end of the input");
    ids
}

/// A parsed event: valid (timestamps aside, they are checked against the clock) and canonical
/// JSON round-trips it. Canonical NDJSON events are taken as detectors wrote them, so only the
/// round trip is checked for them.
pub fn check_event(format: Format, event: &DetectionEvent) {
    if format != Format::Ndjson {
        check_parsed(event);
    }
    json_round_trip(event);
}

/// An event a parser made: valid (timestamps aside), with an id and a timestamp.
fn check_parsed(event: &DetectionEvent) {
    let violations: Vec<_> = attackmesh::validate::detection_event(event)
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.field != "timestamp")
        .collect();
    assert!(violations.is_empty(), "parsed event is invalid: {violations:?}");
    assert!(!event.event_id.is_empty());
    assert!(event.timestamp.is_some());
}

/// An OTLP logs export request, protobuf (first byte even) or OTLP/JSON (odd), mapped as
/// enrichment maps it: one outcome per record with a distinct path, every event valid (timestamps
/// aside) and surviving canonical JSON, rejections naming something, and the mapping
/// deterministic (the same request twice gives the same event ids).
pub fn check_otlp(data: &[u8]) {
    use attackmesh::formats::otlp::{OtlpRecord, otlp_from_json, otlp_from_protobuf};
    let Some((&which, rest)) = data.split_first() else { return };
    let map = |bytes: &[u8]| -> Option<Vec<OtlpRecord>> {
        if which % 2 == 0 {
            otlp_from_protobuf(bytes).ok()
        } else {
            otlp_from_json(std::str::from_utf8(bytes).ok()?).ok()
        }
    };
    let Some(records) = map(rest) else { return };
    let paths: std::collections::HashSet<&str> = records.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), records.len(), "two records share a path");
    let mut ids = Vec::new();
    for record in &records {
        match &record.result {
            Ok(mapped) => {
                check_parsed(&mapped.event);
                json_round_trip(&mapped.event);
                assert!(["otlp", "falco"].contains(&mapped.event.original_format.as_str()));
                if let Some(traceparent) = &mapped.traceparent {
                    assert_eq!(traceparent.len(), 55, "traceparent: {traceparent}");
                }
                ids.push(Some(mapped.event.event_id.clone()));
            }
            Err(error) => {
                assert!(!error.to_string().is_empty());
                ids.push(None);
            }
        }
    }
    let again: Vec<Option<String>> = map(rest)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.result.ok().map(|m| m.event.event_id))
        .collect();
    assert_eq!(again, ids, "OTLP mapping is not deterministic");
}

/// Canonical JSON of `message` decodes, and encodes again to the same document (compared as
/// JSON values: map entries such as `attributes` come out in no fixed order).
pub fn json_round_trip<T: Serialize + DeserializeOwned>(message: &T) {
    let text = to_json(message);
    let back: T = match from_json(&text) {
        Ok(back) => back,
        Err(e) => panic!("canonical JSON does not decode: {e}: {text}"),
    };
    assert_eq!(json_value(&to_json(&back)), json_value(&text), "canonical JSON does not round-trip");
}

/// `text` as a JSON value, for comparisons that ignore the order of object keys.
pub fn json_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("canonical JSON is not JSON: {e}: {text}"))
}


/// The instant STIX objects are checked against (2026-05-28T20:26:40Z): fixed, so that an input
/// means the same on every run.
pub fn stix_now() -> DateTime<Utc> {
    micros_to_datetime(1_780_000_000_000_000)
}

/// A STIX object a TAXII writer's post was let through with: it passes the checks again
/// unchanged, its id names its type, its version sorts within STIX's years and (for objects
/// with timestamps) not past the allowed clock skew, it survives JSON, and merging over itself
/// (as attackmesh does over stored versions) either refuses with a reason or yields a version
/// strictly later than the stored one.
pub fn check_stix_object(object: &StixObject, now: DateTime<Utc>) {
    let value = serde_json::Value::Object(object.0.clone());
    assert_eq!(validate::check(&value, now).as_ref(), Ok(object), "checks are not idempotent");
    assert!(validate::is_identifier_of(object.id(), object.object_type()), "id: {value}");
    let text = object.to_json();
    assert_eq!(serde_json::from_str::<StixObject>(&text).ok().as_ref(), Some(object), "JSON: {text}");
    let _ = builder::has_attackmesh_id(object, &Producer::default().id());
    let Some(version) = object.version() else {
        return;
    };
    let version_us = parse_micros(version).unwrap_or_else(|| panic!("unsortable version {version}"));
    assert!(version_us <= LATEST_VERSION_US, "version past year 9999: {version}");
    if object.0.contains_key("modified") {
        let limit = now.timestamp_micros() + validate::MAX_CLOCK_SKEW_SECS * 1_000_000;
        assert!(version_us <= limit, "version too far ahead: {version}");
    }
    let stored = Stored {
        object,
        version_us,
    };
    match merge(Some(stored), Some(version_us), object.clone(), now) {
        Ok(None) => {}
        Ok(Some(merged)) => {
            let merged_us = merged.version().and_then(parse_micros);
            assert!(merged_us.is_some_and(|us| us > version_us && us <= LATEST_VERSION_US), "{merged:?}");
        }
        Err(why) => assert!(why.contains(object.id()), "a refusal names the object: {why}"),
    }
}
