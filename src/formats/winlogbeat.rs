//! Windows events as Winlogbeat or Elastic Agent ship them (ECS documents): `winlog.channel`,
//! `winlog.event_id`, `winlog.provider_name`, `winlog.computer_name`, `winlog.event_data.*`,
//! `winlog.user_data.*`, `@timestamp`, with ECS `host.*`, `process.*`, `user.*` as fallbacks.
//! An Elasticsearch hit (`{"_source": {…}}`) is read through its `_source`.

use serde_json::Value;

use super::common::{get, get_str, parse_time, scalar_string};
use super::windows::{WinRecord, build};
use super::{Format, ParseError};
use crate::proto::DetectionEvent;

/// Parses one Winlogbeat document.
pub(super) fn parse(line: &str) -> Result<DetectionEvent, ParseError> {
    let value = super::json_object(line)?;
    build(Format::Winlogbeat, line, record(&value)?)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(text).collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        other => scalar_string(other),
    }
}

/// Reads one document (or the `_source` of a hit).
pub(super) fn record(value: &Value) -> Result<WinRecord, ParseError> {
    let doc = value.get("_source").filter(|s| s.is_object()).unwrap_or(value);
    let winlog = doc
        .get("winlog")
        .filter(|w| w.is_object())
        .ok_or_else(|| ParseError::MissingField("winlog".into()))?;
    let mut r = WinRecord::default();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            r.system.push((k.to_owned(), v));
        }
    };
    let event_id = winlog
        .get("event_id")
        .and_then(text)
        .or_else(|| get(doc, &["event", "code"]).and_then(text));
    push("EventID", event_id);
    push("Channel", winlog.get("channel").and_then(text));
    push(
        "Provider_Name",
        winlog
            .get("provider_name")
            .and_then(text)
            .or_else(|| get(doc, &["event", "provider"]).and_then(text)),
    );
    push("Provider_Guid", winlog.get("provider_guid").and_then(text));
    push(
        "Computer",
        winlog
            .get("computer_name")
            .and_then(text)
            .or_else(|| get_str(doc, &["host", "name"]).map(str::to_owned)),
    );
    push("EventRecordID", winlog.get("record_id").and_then(text));
    push("Task", winlog.get("task").and_then(text));
    push("Opcode", winlog.get("opcode").and_then(text));
    push("Version", winlog.get("version").and_then(text));
    push("Keywords", winlog.get("keywords").and_then(text));
    push("ProcessID", get(winlog, &["process", "pid"]).and_then(text));
    push("ThreadID", get(winlog, &["process", "thread", "id"]).and_then(text));
    push("UserID", get(winlog, &["user", "identifier"]).and_then(text));
    push(
        "Level",
        get(doc, &["log", "level"]).and_then(text).map(|l| level_number(&l)),
    );
    for section in ["event_data", "user_data"] {
        if let Some(Value::Object(map)) = winlog.get(section) {
            for (k, v) in map {
                r.data.push((k.clone(), text(v).unwrap_or_default()));
            }
        }
    }
    // ECS fields stand in for event data the document does not carry.
    let ecs = [
        (&["process", "executable"][..], "Image"),
        (&["process", "command_line"][..], "CommandLine"),
        (&["process", "pid"][..], "ProcessId"),
        (&["process", "parent", "executable"][..], "ParentImage"),
        (&["process", "parent", "command_line"][..], "ParentCommandLine"),
        (&["source", "ip"][..], "SourceIp"),
        (&["destination", "ip"][..], "DestinationIp"),
        (&["destination", "port"][..], "DestinationPort"),
    ];
    for (path, name) in ecs {
        if !r.data.iter().any(|(k, _)| k == name)
            && let Some(v) = get(doc, path).and_then(text)
        {
            r.data.push((name.to_owned(), v));
        }
    }
    r.message = doc.get("message").and_then(Value::as_str).map(str::to_owned);
    let ts = doc
        .get("@timestamp")
        .and_then(Value::as_str)
        .or_else(|| get_str(doc, &["event", "created"]))
        .ok_or_else(|| ParseError::MissingField("@timestamp".into()))?;
    r.timestamp = Some(parse_time("@timestamp", ts)?);
    Ok(r)
}

/// ECS `log.level` names back to Windows level numbers.
fn level_number(level: &str) -> String {
    match level.to_ascii_lowercase().as_str() {
        "critical" => "1".into(),
        "error" => "2".into(),
        "warning" => "3".into(),
        "information" | "info" => "4".into(),
        "verbose" => "5".into(),
        other => other.to_owned(),
    }
}
