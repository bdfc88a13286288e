//! Wazuh manager alerts, one JSON object per line as written to `alerts.json`.
//!
//! `data.srcip`/`data.srcport`/`data.srcuser` describe the source; `data.dstip`/`data.dstport`/
//! `data.dstuser` the destination, whose host is the reporting agent (`agent.name`, and
//! `agent.ip` when the alert names no destination address). The process that acted (Windows
//! event data, or the `data.command` of sudo alerts) is the source's process.

use super::builder::EventBuilder;
use super::common::ip_text;
use super::tree::{self, Json, flatten, get_i64, get_port, get_str, get_strings};
use super::{Format, ParseError};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Process, Severity};

/// Attributes kept first when a record has more than the cap allows.
const PRIORITY: &[&str] = &["rule.", "decoder.", "location", "data.", "syscheck.", "agent."];

/// Parses one `alerts.json` line.
pub(super) fn parse(line: &str) -> Result<DetectionEvent, ParseError> {
    tree::with_object(line, |record| parse_record(line, record))
}

fn parse_record(line: &str, record: &Json<'_>) -> Result<DetectionEvent, ParseError> {
    let mut b = EventBuilder::new(Format::Wazuh, line, DetectorKind::BehaviouralAnalysis);
    b.timestamp(tree::timestamp(record, "timestamp", line)?);
    b.event_type("wazuh.alert");
    let service = get_str(record, &["manager", "name"])
        .or(get_str(record, &["agent", "name"]))
        .unwrap_or("wazuh");
    b.source_service(service);
    b.severity(severity(get_i64(record, &["rule", "level"])));
    let description = get_str(record, &["rule", "description"])
        .or(get_str(record, &["full_log"]))
        .unwrap_or("wazuh alert");
    b.description(description);
    for id in get_strings(record, &["rule", "mitre", "id"]) {
        b.hint(&id);
    }

    let data = |name: &str| get_str(record, &["data", name]);
    let process = process(record);
    if !process.command_line.is_empty() {
        b.indicator(IndicatorType::ProcessCommandLine, &process.command_line);
    }
    b.source(Endpoint {
        ip: data("srcip").map(ip_text).unwrap_or_default(),
        port: get_port(record, &["data", "srcport"]),
        user: data("srcuser").unwrap_or_default().to_owned(),
        process: (process != Process::default()).then_some(process),
        ..Endpoint::default()
    });
    let dest_ip = data("dstip").or(get_str(record, &["agent", "ip"]));
    b.destination(Endpoint {
        ip: dest_ip.map(ip_text).unwrap_or_default(),
        port: get_port(record, &["data", "dstport"]),
        user: data("dstuser").unwrap_or_default().to_owned(),
        hostname: get_str(record, &["agent", "name"]).unwrap_or_default().to_owned(),
        ..Endpoint::default()
    });

    if let Some(user) = data("srcuser") {
        b.indicator(IndicatorType::UserAccount, user);
    }
    for (field, kind) in [
        ("md5_after", IndicatorType::FileMd5),
        ("sha1_after", IndicatorType::FileSha1),
        ("sha256_after", IndicatorType::FileSha256),
    ] {
        if let Some(hash) = get_str(record, &["syscheck", field]) {
            b.hash_indicator(kind, hash);
        }
    }
    if let Some(path) = get_str(record, &["syscheck", "path"]) {
        b.indicator(IndicatorType::FileName, path);
    }

    flatten(record, b.attributes_mut());
    b.priority(PRIORITY);
    Ok(b.finish())
}

/// The process that acted, from Windows event data (Sysmon and the like) or a logged command
/// (`data.command`, as sudo alerts carry it).
fn process(record: &Json<'_>) -> Process {
    let event = |name: &str| get_str(record, &["data", "win", "eventdata", name]);
    let image = event("image").unwrap_or_default();
    Process {
        pid: event("processId").and_then(|pid| pid.parse().ok()).unwrap_or(0),
        name: base_name(image).to_owned(),
        executable: image.to_owned(),
        command_line: event("commandLine")
            .or(get_str(record, &["data", "command"]))
            .unwrap_or_default()
            .to_owned(),
        parent_name: base_name(event("parentImage").unwrap_or_default()).to_owned(),
    }
}

/// The last component of a Windows or POSIX path.
fn base_name(path: &str) -> &str {
    path.rsplit(['\\', '/'])
        .find(|part| !part.is_empty())
        .unwrap_or_default()
}

/// Wazuh rule levels run from 0 to 15.
fn severity(level: Option<i64>) -> Severity {
    match level {
        Some(level) if level >= 12 => Severity::Critical,
        Some(level) if level >= 8 => Severity::High,
        Some(level) if level >= 5 => Severity::Medium,
        _ => Severity::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_grade_severity() {
        assert_eq!(severity(Some(15)), Severity::Critical);
        assert_eq!(severity(Some(12)), Severity::Critical);
        assert_eq!(severity(Some(10)), Severity::High);
        assert_eq!(severity(Some(5)), Severity::Medium);
        assert_eq!(severity(Some(3)), Severity::Low);
        assert_eq!(severity(None), Severity::Low);
    }

    #[test]
    fn level_may_be_a_string() {
        let line = r#"{"timestamp":"2024-01-01T10:00:00.123+0000","rule":{"level":"10","description":"sshd: brute force","id":"5712","mitre":{"id":["t1110"]}},"agent":{"id":"001","name":"web-01","ip":"10.0.0.10"},"data":{"srcip":"198.51.100.23","srcport":"70000"}}"#;
        let event = parse(line).unwrap_or_default();
        assert_eq!(event.severity, Severity::High as i32);
        assert_eq!(event.technique_hints, vec!["T1110".to_owned()]);
        assert_eq!(event.source_service, "web-01");
        assert_eq!(
            event.source.map(|s| (s.ip, s.port)),
            Some(("198.51.100.23".to_owned(), 0))
        );
        assert_eq!(event.destination.map(|d| d.ip), Some("10.0.0.10".to_owned()));
    }
}
