//! Cowrie honeypot JSON log records (`cowrie.json`).
//!
//! The `eventid` (`cowrie.login.failed`, `cowrie.command.input`, ...) is the event type as is.
//! Any interaction with a decoy is suspicious, so every record is an event.

use super::builder::EventBuilder;
use super::common::ip_text;
use super::tree::{self, Json, flatten, get, get_port, get_str};
use super::{Format, ParseError};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Severity};

/// Attributes kept first when a record has more than the cap allows.
const PRIORITY: &[&str] = &[
    "eventid", "input", "username", "password", "url", "shasum", "protocol", "session",
];

/// Parses one Cowrie line.
pub(super) fn parse(line: &str) -> Result<DetectionEvent, ParseError> {
    tree::with_object(line, |record| parse_record(line, record))
}

fn parse_record(line: &str, record: &Json<'_>) -> Result<DetectionEvent, ParseError> {
    let event_id = match record.get("eventid") {
        None | Some(Json::Null) => return Err(ParseError::MissingField("eventid".into())),
        Some(Json::Str(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(_) => {
            return Err(ParseError::WrongType {
                field: "eventid".into(),
                expected: "a non-empty string",
            });
        }
    };
    let mut b = EventBuilder::new(Format::Cowrie, line, DetectorKind::Decoy);
    b.timestamp(tree::timestamp(record, "timestamp", line)?);
    b.event_type(&event_id);
    match get_str(record, &["sensor"]) {
        Some(sensor) => b.source_service(&format!("cowrie:{sensor}")),
        None => b.source_service("cowrie"),
    }
    b.severity(severity(&event_id));

    let input = get_str(record, &["input"]);
    let message = match get(record, &["message"]) {
        Some(Json::Str(text)) => Some(text.to_string()),
        // Older Cowrie releases log `message` as a list of strings.
        Some(Json::Array(parts)) => Some(parts.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(" ")),
        _ => None,
    };
    let description = match (event_id.as_str(), input) {
        ("cowrie.command.input", Some(input)) => input.to_owned(),
        _ => message
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| event_id.clone()),
    };
    b.description(&description);

    let username = get_str(record, &["username"]);
    b.source(Endpoint {
        ip: get_str(record, &["src_ip"]).map(ip_text).unwrap_or_default(),
        port: get_port(record, &["src_port"]),
        user: username.unwrap_or_default().to_owned(),
        ..Endpoint::default()
    });
    b.destination(Endpoint {
        ip: get_str(record, &["dst_ip"]).map(ip_text).unwrap_or_default(),
        port: get_port(record, &["dst_port"]),
        hostname: get_str(record, &["sensor"]).unwrap_or_default().to_owned(),
        ..Endpoint::default()
    });

    if let Some(username) = username {
        b.indicator(IndicatorType::UserAccount, username);
    }
    if let Some(input) = input {
        b.indicator(IndicatorType::ProcessCommandLine, input);
    }
    if let Some(url) = get_str(record, &["url"]) {
        b.indicator(IndicatorType::Url, url);
    }
    // `shasum` of a `log.closed` record hashes the session's TTY log, not an attacker's file.
    if (event_id.contains("file_download") || event_id.contains("file_upload"))
        && let Some(hash) = get_str(record, &["shasum"])
    {
        b.hash_indicator(IndicatorType::FileSha256, hash);
    }

    flatten(record, b.attributes_mut());
    b.priority(PRIORITY);
    Ok(b.finish())
}

fn severity(event_id: &str) -> Severity {
    match event_id {
        "cowrie.login.success" | "cowrie.command.input" => Severity::High,
        "cowrie.login.failed" => Severity::Medium,
        id if id.starts_with("cowrie.session.file_download")
            || id.starts_with("cowrie.session.file_upload")
            || id.starts_with("cowrie.direct-tcpip") =>
        {
            Severity::High
        }
        _ => Severity::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_download_carries_url_and_hash() {
        let line = r#"{"eventid":"cowrie.session.file_download","url":"http://198.51.100.7/bins/x86","outfile":"dl/abc","shasum":"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08","src_ip":"203.0.113.9","src_port":41000,"dst_ip":"10.1.1.1","dst_port":22,"sensor":"hp-eu-1","session":"a1","timestamp":"2024-02-03T04:05:06.789012Z","message":["Downloaded URL","(http://198.51.100.7/bins/x86)"]}"#;
        let event = parse(line).unwrap_or_default();
        assert_eq!(event.event_type, "cowrie.session.file_download");
        assert_eq!(event.source_service, "cowrie:hp-eu-1");
        assert_eq!(event.severity, Severity::High as i32);
        assert_eq!(event.description, "Downloaded URL (http://198.51.100.7/bins/x86)");
        let has = |kind: IndicatorType, value: &str| {
            event
                .indicators
                .iter()
                .any(|i| i.r#type == kind as i32 && i.value == value)
        };
        assert!(has(IndicatorType::Url, "http://198.51.100.7/bins/x86"));
        assert!(has(
            IndicatorType::FileSha256,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        ));
        assert!(has(IndicatorType::Ipv4, "203.0.113.9"));
    }

    #[test]
    fn eventid_is_required() {
        let error = parse(r#"{"timestamp":"2024-02-03T04:05:06Z"}"#).err();
        assert_eq!(error.map(|e| e.to_string()).as_deref(), Some("missing field `eventid`"));
        assert_eq!(severity("cowrie.direct-tcpip.request"), Severity::High);
        assert_eq!(severity("cowrie.session.connect"), Severity::Low);
    }
}
