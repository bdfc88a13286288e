//! What must hold for any input, shared by the fuzz targets: beyond "never panic", a parser's
//! output is valid, survives canonical JSON, and the line reader agrees with `parse_line`.
//!
//! The targets live in `fuzz_targets/`; `scripts/fuzz` builds and runs them with cargo-fuzz.

#![forbid(unsafe_code)]

use std::io::Cursor;

use attackmesh::formats::{Format, ParseState, Reader, parse_line};
use attackmesh::json::{from_json, to_json};
use attackmesh::proto::DetectionEvent;
use serde::{Serialize, de::DeserializeOwned};

/// The stream name given to parsers (Zeek names a log by its file when there is no `#path`).
const SOURCE: &str = "conn.log";

/// Feeds `data` to `format`'s parser line by line and through [`Reader`], checking every event.
pub fn check_format(format: Format, data: &[u8]) {
    let by_line = parse_lines(format, data);
    let by_reader = read_all(format, data);
    if std::str::from_utf8(data).is_ok() {
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
    json_round_trip(event);
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
