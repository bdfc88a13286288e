//! Suricata EVE JSON records.
//!
//! Every EVE event type becomes an event `suricata.<event_type>` (alerts and anomalies are
//! detections; protocol records such as `dns`, `http`, `tls`, `flow` are kept so rule packs can
//! map them like Zeek logs) except `stats`, which holds engine counters and is skipped.

use std::borrow::Cow;

use super::builder::EventBuilder;
use super::common::ip_text;
use super::tree::{self, Json, flatten, get, get_i64, get_port, get_str, get_strings, get_text};
use super::{Format, ParseError};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Severity};

/// What every event type starts with.
const EVENT_TYPE_PREFIX: &str = "suricata.";

/// Attributes kept first when a record has more than the cap allows.
const PRIORITY: &[&str] = &[
    "event_type",
    "alert.",
    "anomaly.",
    "proto",
    "app_proto",
    "dns.",
    "http.",
    "tls.",
    "ssh.",
    "fileinfo.",
    "smtp.",
];

/// Parses one EVE line; `Ok(None)` for `stats` records.
///
/// The record is read into a tree borrowing from `line` (see [`tree::with_object`]).
pub(super) fn parse(line: &str) -> Result<Option<DetectionEvent>, ParseError> {
    tree::with_object(line, |record| parse_record(line, record))
}

fn parse_record(line: &str, record: &Json<'_>) -> Result<Option<DetectionEvent>, ParseError> {
    // `suricata.<event_type>`, built once: the subtype is its tail.
    let event_type = match record.get("event_type") {
        None | Some(Json::Null) => return Err(ParseError::MissingField("event_type".into())),
        Some(Json::Str(s)) if !s.trim().is_empty() => {
            let mut event_type = String::with_capacity(EVENT_TYPE_PREFIX.len() + s.trim().len());
            event_type.push_str(EVENT_TYPE_PREFIX);
            event_type.push_str(s.trim());
            event_type.make_ascii_lowercase();
            event_type
        }
        Some(_) => {
            return Err(ParseError::WrongType {
                field: "event_type".into(),
                expected: "a non-empty string",
            });
        }
    };
    let subtype = &event_type[EVENT_TYPE_PREFIX.len()..];
    if subtype == "stats" {
        return Ok(None);
    }
    let mut b = EventBuilder::new(Format::SuricataEve, line, DetectorKind::TrafficMonitor);
    b.timestamp(tree::timestamp(record, "timestamp", line)?);
    let description = description(record, subtype);
    b.source_service(get_str(record, &["host"]).unwrap_or("suricata"));
    b.severity(severity(record, subtype));
    b.description_owned(description);
    b.event_type_owned(event_type);

    b.source(Endpoint {
        ip: get_str(record, &["src_ip"]).map(ip_text).unwrap_or_default(),
        port: get_port(record, &["src_port"]),
        ..Endpoint::default()
    });
    b.destination(Endpoint {
        ip: get_str(record, &["dest_ip"]).map(ip_text).unwrap_or_default(),
        port: get_port(record, &["dest_port"]),
        ..Endpoint::default()
    });

    for id in get_strings(record, &["alert", "metadata", "mitre_technique_id"]) {
        b.hint(&id);
    }
    indicators(&mut b, record);

    flatten(record, b.attributes_mut());
    b.priority(PRIORITY);
    Ok(Some(b.finish()))
}

fn severity(record: &Json<'_>, subtype: &str) -> Severity {
    if subtype != "alert" {
        return Severity::Low;
    }
    match get_i64(record, &["alert", "severity"]) {
        Some(1) => Severity::High,
        Some(2) => Severity::Medium,
        _ => Severity::Low,
    }
}

fn description(record: &Json<'_>, subtype: &str) -> String {
    let text = |path: &[&str]| get_text(record, path).map(Cow::into_owned);
    let found = match subtype {
        "alert" => text(&["alert", "signature"]),
        "anomaly" => text(&["anomaly", "event"]).map(|event| match text(&["anomaly", "type"]) {
            Some(kind) => format!("{kind} anomaly: {event}"),
            None => format!("anomaly: {event}"),
        }),
        "dns" => dns_names(record).into_iter().next().map(Cow::into_owned),
        "http" => match (text(&["http", "hostname"]), text(&["http", "url"])) {
            (Some(host), Some(url)) => Some(format!("{host}{url}")),
            (host, url) => host.or(url),
        },
        "tls" => text(&["tls", "sni"]).or_else(|| text(&["tls", "subject"])),
        "ssh" => text(&["ssh", "client", "software_version"]),
        "fileinfo" => text(&["fileinfo", "filename"]),
        "smtp" => text(&["email", "subject"]).or_else(|| text(&["smtp", "helo"])),
        _ => None,
    };
    found.unwrap_or_else(|| {
        let proto = text(&["proto"]).unwrap_or_default();
        let endpoint = |ip: &str, port: &str| match (text(&[ip]), text(&[port])) {
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            (Some(ip), None) => ip,
            _ => "?".to_owned(),
        };
        format!(
            "suricata {subtype} {proto} {} -> {}",
            endpoint("src_ip", "src_port"),
            endpoint("dest_ip", "dest_port")
        )
        .replace("  ", " ")
    })
}

/// Query names of a `dns` object in every EVE layout (v1 `rrname`, `query[]`, v3 `queries[]`).
fn dns_names<'v>(record: &'v Json<'_>) -> Vec<Cow<'v, str>> {
    let mut names: Vec<Cow<'v, str>> = get_text(record, &["dns", "rrname"]).into_iter().collect();
    for list in ["query", "queries"] {
        if let Some(Json::Array(items)) = get(record, &["dns", list]) {
            names.extend(items.iter().filter_map(|item| get_text(item, &["rrname"])));
        }
    }
    names
}

fn indicators(b: &mut EventBuilder<'_>, record: &Json<'_>) {
    let host = get_text(record, &["http", "hostname"]);
    if let Some(host) = &host {
        b.domain_indicator(host);
        if let Some(url) = get_text(record, &["http", "url"]) {
            if url.starts_with("http://") || url.starts_with("https://") {
                b.indicator(IndicatorType::Url, &url);
            } else {
                b.indicator(IndicatorType::Url, &format!("http://{host}{url}"));
            }
        }
    }
    for name in dns_names(record) {
        b.domain_indicator(&name);
    }
    if let Some(sni) = get_text(record, &["tls", "sni"]) {
        b.domain_indicator(&sni);
    }
    if let Some(fingerprint) = get_text(record, &["tls", "fingerprint"]) {
        b.hash_indicator(IndicatorType::X509Sha1, &fingerprint.replace(':', ""));
    }
    for (field, kind) in [
        ("md5", IndicatorType::FileMd5),
        ("sha1", IndicatorType::FileSha1),
        ("sha256", IndicatorType::FileSha256),
    ] {
        if let Some(hash) = get_text(record, &["fileinfo", field]) {
            b.hash_indicator(kind, &hash);
        }
    }
    let mut emails = get_strings(record, &["smtp", "mail_from"]);
    emails.extend(get_strings(record, &["smtp", "rcpt_to"]));
    for email in emails {
        let address = email.trim().trim_start_matches('<').trim_end_matches('>');
        if address.contains('@') {
            b.indicator(IndicatorType::Email, address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{ParseState, parse_line};

    fn parse_one(line: &str) -> DetectionEvent {
        match parse_line(Format::SuricataEve, line, &mut ParseState::default()) {
            Ok(Some(event)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn alert_with_mitre_metadata_and_http() {
        let line = r#"{"timestamp":"2024-05-01T10:00:00.000001+0000","event_type":"alert","host":"edge-1","src_ip":"10.0.0.5","src_port":51515,"dest_ip":"2001:db8::1","dest_port":80,"proto":"TCP","alert":{"signature_id":2024897,"signature":"ET EXPLOIT Apache Struts RCE","category":"Attempted Administrator Privilege Gain","severity":1,"metadata":{"mitre_technique_id":[" t1190 "],"mitre_tactic_id":["TA0001"]}},"http":{"hostname":"Victim.example.com","url":"/struts2-showcase/index.action","http_method":"POST"}}"#;
        let event = parse_one(line);
        assert_eq!(event.event_type, "suricata.alert");
        assert_eq!(event.source_service, "edge-1");
        assert_eq!(event.severity, Severity::High as i32);
        assert_eq!(event.technique_hints, vec!["T1190".to_owned()]);
        assert_eq!(event.attributes["alert.metadata.mitre_tactic_id"], "TA0001");
        let indicators: Vec<(i32, &str)> = event.indicators.iter().map(|i| (i.r#type, i.value.as_str())).collect();
        assert!(indicators.contains(&(IndicatorType::Ipv6 as i32, "2001:db8::1")));
        assert!(indicators.contains(&(IndicatorType::Domain as i32, "victim.example.com")));
        assert!(indicators.contains(&(
            IndicatorType::Url as i32,
            "http://Victim.example.com/struts2-showcase/index.action"
        )));
    }

    #[test]
    fn non_alert_records_are_events_and_stats_are_skipped() {
        let dns = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"dns","src_ip":"10.0.0.5","dest_ip":"10.0.0.53","src_port":70000,"dns":{"type":"query","rrname":"evil.example.net","rrtype":"A"}}"#;
        let event = parse_one(dns);
        assert_eq!(event.event_type, "suricata.dns");
        assert_eq!(event.description, "evil.example.net");
        assert_eq!(event.severity, Severity::Low as i32);
        assert_eq!(event.source.map(|s| s.port), Some(0), "port 70000 is dropped");
        let stats = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"stats","stats":{"uptime":1}}"#;
        let parsed = parse_line(Format::SuricataEve, stats, &mut ParseState::default());
        assert!(matches!(parsed, Ok(None)));
    }

    #[test]
    fn missing_fields_are_named() {
        let mut state = ParseState::default();
        let no_type = parse_line(
            Format::SuricataEve,
            r#"{"timestamp":"2024-05-01T10:00:00Z"}"#,
            &mut state,
        );
        assert_eq!(
            no_type.map_err(|e| e.to_string()).err().as_deref(),
            Some("missing field `event_type`")
        );
        let bad_time = parse_line(
            Format::SuricataEve,
            r#"{"timestamp":"soon","event_type":"alert"}"#,
            &mut state,
        );
        assert_eq!(
            bad_time.map_err(|e| e.to_string()).err().as_deref(),
            Some("bad timestamp `soon` in field `timestamp`")
        );
    }
}
