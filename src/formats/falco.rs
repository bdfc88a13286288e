//! Falco alerts in Falco's JSON output (`json_output: true`), which is also the body that
//! `http_output` posts; [`falco_from_json`] serves both a log line and an HTTP request body.
//!
//! Network fields follow Falco's own names: `fd.cip`/`fd.cport` (client, the initiator) become the
//! source and `fd.sip`/`fd.sport` (server) the destination. Rules that expose `fd.dip`/`fd.dport`
//! instead are read as `fd.sip` → source and `fd.dip` → destination.
//!
//! Falco's priorities map to severities explicitly (case-insensitively): Emergency, Alert and
//! Critical → critical; Error → high; Warning → medium; Notice, Informational (`Info` in rules
//! files) and Debug → low. Any other priority, or none, is an error naming the field `priority`:
//! an alert is never graded by guess.

use serde_json::Value;

use super::builder::EventBuilder;
use super::common::ip_text;
use super::tree::{self, Json, flatten, get_i64, get_port, get_str, get_strings};
use super::{Format, ParseError};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Process, Severity};
use crate::text::clip;

/// Falco's priorities, as an error message lists them.
const PRIORITIES: &str = "one of Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug";

/// Attributes kept first when a record has more than the cap allows.
const PRIORITY: &[&str] = &["rule", "priority", "source", "tags", "output_fields."];

/// Builds an event from one Falco JSON alert (a log line or an `http_output` body).
pub fn falco_from_json(body: &str) -> Result<DetectionEvent, ParseError> {
    let body = body.trim_end_matches(['\r', '\n']);
    tree::with_object(body, |record| build(body, record))
}

/// Builds an event from an already decoded Falco alert; `original` is its compact JSON text.
pub fn falco_from_value(record: &Value) -> Result<DetectionEvent, ParseError> {
    if !record.is_object() {
        return Err(ParseError::NotAnObject("another JSON value"));
    }
    build(&record.to_string(), &Json::from_value(record))
}

fn build(line: &str, record: &Json<'_>) -> Result<DetectionEvent, ParseError> {
    let mut b = EventBuilder::new(Format::Falco, line, DetectorKind::BehaviouralAnalysis);
    b.timestamp(tree::timestamp(record, "time", line)?);
    b.event_type("falco.alert");
    match get_str(record, &["hostname"]) {
        Some(host) => b.source_service(&format!("falco:{host}")),
        None => b.source_service("falco"),
    }
    let priority = get_str(record, &["priority"]).ok_or_else(|| ParseError::MissingField("priority".into()))?;
    let severity = severity(priority).ok_or_else(|| ParseError::UnknownValue {
        field: "priority".into(),
        value: clip(priority, 64).to_owned(),
        expected: PRIORITIES,
    })?;
    b.severity(severity);
    let rule = get_str(record, &["rule"]);
    b.description(get_str(record, &["output"]).or(rule).unwrap_or("falco alert"));
    for tag in get_strings(record, &["tags"]) {
        if is_technique_id(tag.trim()) {
            b.hint(&tag);
        }
    }

    let field = |name: &str| get_str(record, &["output_fields", name]);
    let port = |name: &str| get_port(record, &["output_fields", name]);
    let (source_ip, source_port, dest_ip, dest_port) = if field("fd.dip").is_some() {
        (field("fd.sip"), port("fd.sport"), field("fd.dip"), port("fd.dport"))
    } else {
        (field("fd.cip"), port("fd.cport"), field("fd.sip"), port("fd.sport"))
    };
    let process = Process {
        pid: get_i64(record, &["output_fields", "proc.pid"])
            .and_then(|pid| u32::try_from(pid).ok())
            .unwrap_or(0),
        name: field("proc.name").unwrap_or_default().to_owned(),
        executable: field("proc.exepath").unwrap_or_default().to_owned(),
        command_line: field("proc.cmdline").unwrap_or_default().to_owned(),
        parent_name: field("proc.pname").unwrap_or_default().to_owned(),
    };
    b.source(Endpoint {
        ip: source_ip.map(ip_text).unwrap_or_default(),
        port: source_port,
        user: field("user.name").unwrap_or_default().to_owned(),
        process: (process != Process::default()).then_some(process),
        ..Endpoint::default()
    });
    let container = field("container.name").filter(|name| *name != "host");
    b.destination(Endpoint {
        ip: dest_ip.map(ip_text).unwrap_or_default(),
        port: dest_port,
        hostname: container
            .or(get_str(record, &["hostname"]))
            .unwrap_or_default()
            .to_owned(),
        ..Endpoint::default()
    });

    if let Some(cmdline) = field("proc.cmdline") {
        b.indicator(IndicatorType::ProcessCommandLine, cmdline);
    }
    if let Some(server) = field("fd.sip.name") {
        b.domain_indicator(server);
    }

    flatten(record, b.attributes_mut());
    b.priority(PRIORITY);
    Ok(b.finish())
}

/// The severity of a Falco priority (case-insensitive); `None` for anything Falco does not define.
fn severity(priority: &str) -> Option<Severity> {
    Some(match priority.trim().to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" => Severity::Critical,
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "notice" | "informational" | "info" | "debug" => Severity::Low,
        _ => return None,
    })
}

/// `T` + 4 digits, optionally `.` + 3 digits (case-insensitive), as Falco tags carry them.
fn is_technique_id(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let digits = |range: &[u8]| range.iter().all(u8::is_ascii_digit);
    match bytes {
        [t, rest @ ..] if t.eq_ignore_ascii_case(&b'T') => match rest.len() {
            4 => digits(rest),
            8 => digits(&rest[..4]) && rest[4] == b'.' && digits(&rest[5..]),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_tags_are_recognised() {
        for tag in ["T1059", "t1059.004", "T1552.001"] {
            assert!(is_technique_id(tag), "{tag}");
        }
        for tag in [
            "TA0003",
            "mitre_execution",
            "T105",
            "T1059.04",
            "T1059x004",
            "NIST_800-53_AC-2",
        ] {
            assert!(!is_technique_id(tag), "{tag}");
        }
    }

    #[test]
    fn http_output_body_and_value_agree() {
        let body = r#"{"hostname":"node-3","output":"Outbound connection to C2 server","output_fields":{"fd.cip":"10.244.1.7","fd.cport":40112,"fd.sip":"203.0.113.50","fd.sport":4444,"fd.sip.name":"c2.bad.example","proc.cmdline":"nc 203.0.113.50 4444","proc.name":"nc","proc.pid":4242,"user.name":"www-data","container.name":"web"},"priority":"Critical","rule":"Outbound Connection to C2 Servers","source":"syscall","tags":["network","mitre_command_and_control","TA0011","T1071"],"time":"2024-03-04T05:06:07.123456789Z"}"#;
        let event = falco_from_json(body).unwrap_or_default();
        assert_eq!(event.severity, Severity::Critical as i32);
        assert_eq!(event.technique_hints, vec!["T1071".to_owned()]);
        let source = event.source.clone().unwrap_or_default();
        assert_eq!((source.ip.as_str(), source.port), ("10.244.1.7", 40112));
        assert_eq!(source.process.map(|p| p.pid), Some(4242));
        let destination = event.destination.clone().unwrap_or_default();
        assert_eq!(
            (destination.ip.as_str(), destination.port, destination.hostname.as_str()),
            ("203.0.113.50", 4444, "web")
        );
        let value: Value = serde_json::from_str(body).unwrap_or_default();
        let from_value = falco_from_value(&value).unwrap_or_default();
        assert_eq!(from_value.description, event.description);
        assert_eq!(from_value.attributes, event.attributes);
        assert!(falco_from_json(r#"{"rule":"x"}"#).is_err_and(|e| e.to_string() == "missing field `time`"));
    }

    #[test]
    fn priorities_map_explicitly_and_unknown_ones_are_errors() {
        let alert = |priority: &str| {
            format!(r#"{{"output":"x","priority":"{priority}","rule":"r","time":"2024-03-04T05:06:07Z"}}"#)
        };
        for (priority, severity) in [
            ("Emergency", Severity::Critical),
            ("ALERT", Severity::Critical),
            ("Error", Severity::High),
            ("warning", Severity::Medium),
            ("Notice", Severity::Low),
            ("Informational", Severity::Low),
            ("Info", Severity::Low),
            ("Debug", Severity::Low),
        ] {
            let event = falco_from_json(&alert(priority)).unwrap_or_default();
            assert_eq!(event.severity, severity as i32, "{priority}");
        }
        let err = falco_from_json(&alert("Urgent"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("field `priority` has unknown value `Urgent`"), "{err}");
        let none = r#"{"output":"x","rule":"r","time":"2024-03-04T05:06:07Z"}"#;
        assert!(falco_from_json(none).is_err_and(|e| e.to_string() == "missing field `priority`"));
    }
}
