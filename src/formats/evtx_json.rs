//! Windows events as JSON in the shape `evtx_dump` writes (and the `evtx` crate renders):
//! `{"Event":{"System":{…},"EventData":{…}}}` with XML attributes under `#attributes` and
//! element text under `#text`. Also read for binary `.evtx` files, which
//! [`super::evtx`] renders to this shape record by record.
//!
//! A line may hold one record, or an array of records (see [`super::Reader`] for documents
//! spread over several lines). `evtx_dump`'s `Record N` separator lines carry no event.

use serde_json::{Map, Value};

use super::common::{parse_time, scalar_string};
use super::windows::{WinRecord, build};
use super::{Format, ParseError};
use crate::proto::DetectionEvent;

/// Parses one record of `format` (`evtx` or `evtx-json`).
pub(super) fn parse(format: Format, line: &str) -> Result<Option<DetectionEvent>, ParseError> {
    if is_record_header(line) {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(line).map_err(|e| ParseError::from_json(&e))?;
    match value {
        Value::Object(_) => build(format, line, record(&value)?).map(Some),
        _ => Err(ParseError::NotAnObject("not a record")),
    }
}

/// `Record 12` lines between records of `evtx_dump`'s default output.
pub(super) fn is_record_header(line: &str) -> bool {
    line.trim()
        .strip_prefix("Record ")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads the `Event` of one record.
pub(super) fn record(value: &Value) -> Result<WinRecord, ParseError> {
    if let Some(message) = value.get("evtx_error").and_then(Value::as_str) {
        return Err(ParseError::InvalidEvent(format!("EVTX record: {message}")));
    }
    let event = value
        .get("Event")
        .and_then(Value::as_object)
        .ok_or_else(|| ParseError::MissingField("Event".into()))?;
    let system = event
        .get("System")
        .and_then(Value::as_object)
        .ok_or_else(|| ParseError::MissingField("Event.System".into()))?;
    let mut r = WinRecord::default();
    read_system(system, &mut r)?;
    for section in ["EventData", "UserData"] {
        if let Some(data) = event.get(section) {
            read_data(data, &mut r.data);
        }
    }
    if let Some(text) = event
        .get("RenderingInfo")
        .and_then(|i| i.get("Message"))
        .and_then(Value::as_str)
    {
        r.message = Some(text.to_owned());
    }
    Ok(r)
}

/// The text of an element: a scalar, or its `#text`.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m.get("#text").and_then(text),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(text).collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        Value::String(s) => Some(s.clone()),
        other => scalar_string(other),
    }
}

fn attr<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    v?.get("#attributes")?.get(name)
}

fn read_system(system: &Map<String, Value>, r: &mut WinRecord) -> Result<(), ParseError> {
    let provider = system.get("Provider");
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            r.system.push((k.to_owned(), v));
        }
    };
    push("EventID", system.get("EventID").and_then(text));
    push("Channel", system.get("Channel").and_then(text));
    push("Provider_Name", attr(provider, "Name").and_then(text));
    push("Provider_Guid", attr(provider, "Guid").and_then(text));
    push("EventSourceName", attr(provider, "EventSourceName").and_then(text));
    push("Computer", system.get("Computer").and_then(text));
    push("EventRecordID", system.get("EventRecordID").and_then(text));
    for key in ["Level", "Task", "Opcode", "Keywords", "Version"] {
        push(key, system.get(key).and_then(text));
    }
    let execution = system.get("Execution");
    push("ProcessID", attr(execution, "ProcessID").and_then(text));
    push("ThreadID", attr(execution, "ThreadID").and_then(text));
    push("UserID", attr(system.get("Security"), "UserID").and_then(text));
    let created = attr(system.get("TimeCreated"), "SystemTime")
        .and_then(text)
        .ok_or_else(|| ParseError::MissingField("Event.System.TimeCreated.#attributes.SystemTime".into()))?;
    r.timestamp = Some(parse_time("Event.System.TimeCreated", &created)?);
    Ok(())
}

/// Event data fields by name; nested UserData leaves by their element name; unnamed `Data`
/// items joined with `,` under `Data`.
fn read_data(data: &Value, out: &mut Vec<(String, String)>) {
    let Value::Object(map) = data else {
        if let Some(t) = text(data) {
            out.push(("Data".into(), t));
        }
        return;
    };
    for (key, value) in map {
        if key == "#attributes" {
            continue;
        }
        if key == "Data" || key == "#text" {
            if let Some(t) = text(value) {
                out.push(("Data".into(), t));
            }
            continue;
        }
        match value {
            Value::Object(inner) if !inner.contains_key("#text") => read_data(value, out),
            Value::Null => out.push((key.clone(), String::new())),
            other => out.push((key.clone(), text(other).unwrap_or_default())),
        }
    }
}
