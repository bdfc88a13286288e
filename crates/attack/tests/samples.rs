//! The default rule packs against the real sample files in the shared data: Suricata coverage,
//! Cowrie commands and logins, Zeek notices, and no output that is not an active technique.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use attackmesh::formats::{self, Format, Reader};
use attackmesh::proto::AttributionStatus;
use attackmesh_attack::{Engine, Kb};

fn engine() -> Engine {
    Engine::embedded().expect("embedded engine")
}

fn files(dir: &Path, sub: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn suricata_alerts_map_to_a_technique_in_at_least_80_percent_of_each_sample() {
    let Some(dir) = attackmesh_testkit::shared_data() else {
        return;
    };
    let engine = engine();
    let paths = files(&dir, "samples/suricata", ".eve.ndjson");
    assert!(paths.len() >= 3, "expected the three Suricata samples, found {paths:?}");
    for path in paths {
        let (mut alerts, mut mapped) = (0usize, 0usize);
        let mut unmapped = BTreeMap::<String, usize>::new();
        for (_, ev) in attackmesh_testkit::sample_events(Format::SuricataEve, &path) {
            if ev.event_type != "suricata.alert" {
                continue;
            }
            alerts += 1;
            let a = engine.attribute(&ev);
            if a.technique_ids.is_empty() {
                *unmapped.entry(ev.description.clone()).or_default() += 1;
            } else {
                mapped += 1;
            }
        }
        let coverage = mapped as f64 / alerts as f64;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("coverage {name}: {mapped}/{alerts} alerts = {:.1}%", coverage * 100.0);
        for (sig, n) in &unmapped {
            println!("  unmapped ({n}): {sig}");
        }
        assert!(alerts > 0, "{name}: no alerts parsed");
        assert!(
            coverage >= 0.8,
            "{name}: only {:.1}% of alerts mapped",
            coverage * 100.0
        );
    }
}

#[test]
fn suricata_signatures_map_to_what_an_analyst_would_say() {
    let Some(dir) = attackmesh_testkit::shared_data() else {
        return;
    };
    let engine = engine();
    let expected: &[(&str, &[&str])] = &[
        ("ET SCAN Potential SSH Scan", &["T1046"]),
        ("ET SCAN Suspicious inbound to MSSQL port 1433", &["T1046"]),
        ("ET WEB_SERVER Possible SQL Injection Attempt UNION SELECT", &["T1190"]),
        ("ET WEB_SERVER Possible CVE-2014-6271 Attempt in Headers", &["T1190"]),
        ("ET POLICY PE EXE or DLL Windows file download HTTP", &["T1105"]),
        ("ET POLICY curl User-Agent Outbound", &["T1105"]),
        ("ET TROJAN Possible NanoCore C2 60B", &["T1071"]),
        (
            "ET TOR Known Tor Relay/Router (Not Exit) Node Traffic group 128",
            &["T1090.003"],
        ),
        ("ET POLICY SMB2 Remote AT Scheduled Job Create Request", &["T1053.002"]),
        (
            "ET DOS Possible NTP DDoS Inbound Frequent Un-Authed MON_LIST Requests IMPL 0x03",
            &["T1498.002"],
        ),
        ("ET WEB_CLIENT Hex Obfuscation of unescape % Encoding", &["T1027"]),
        (
            "ET ATTACK_RESPONSE Metasploit Meterpreter Reverse HTTPS certificate",
            &["T1573.002"],
        ),
        ("ET POLICY Possible IP Check api.ipify.org", &["T1016"]),
    ];
    let mut seen = BTreeMap::new();
    for path in files(&dir, "samples/suricata", ".eve.ndjson") {
        for (_, ev) in attackmesh_testkit::sample_events(Format::SuricataEve, &path) {
            seen.entry(ev.description.clone())
                .or_insert_with(|| engine.attribute(&ev).technique_ids);
        }
    }
    for (signature, techniques) in expected {
        let got = seen
            .get(*signature)
            .unwrap_or_else(|| panic!("signature not in samples: {signature}"));
        for t in *techniques {
            assert!(got.iter().any(|g| g == t), "{signature}: expected {t}, got {got:?}");
        }
    }
    // Words inside other words must not trigger: "VOIP Checking" is neither an IP check nor a
    // C2 check-in, and "Boaxxe" is not XXE.
    let skype = &seen["ET CHAT Skype VOIP Checking Version (Startup)"];
    assert!(skype.is_empty(), "Skype version check mapped to {skype:?}");
    let miuref = &seen["ET TROJAN Miuref/Boaxxe Checkin"];
    assert!(
        !miuref.iter().any(|t| t == "T1190"),
        "Boaxxe check-in mapped to {miuref:?}"
    );
}

/// What every command of the Cowrie sample session means.
const COWRIE_COMMANDS: &[(&str, &[&str])] = &[
    ("uname -a", &["T1082"]),
    ("cat /proc/cpuinfo | grep name | wc -l", &["T1082"]),
    ("whoami", &["T1033"]),
    ("cat /etc/passwd", &["T1087.001"]),
    (
        "mkdir -p ~/.ssh && echo 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0 attacker@evil' >> ~/.ssh/authorized_keys",
        &["T1098.004"],
    ),
    ("crontab -l", &["T1053.003"]),
    ("chmod +x /tmp/.x", &["T1222.002", "T1564.001"]),
    ("history -c", &["T1070.003"]),
    ("rm -rf /var/log/wtmp", &["T1070.002"]),
    ("id", &["T1033"]),
    ("ls -la /tmp", &["T1083"]),
    ("nproc", &["T1082"]),
    // No technique of its own: only the generic shell-use fallback.
    ("exit", &[]),
];

#[test]
fn cowrie_commands_and_logins_map_right() {
    let Some(dir) = attackmesh_testkit::shared_data() else {
        return;
    };
    let engine = engine();
    let path = dir.join("samples/cowrie/cowrie_local_session.json");
    let mut counts = BTreeMap::<&str, usize>::new();
    for (line, ev) in attackmesh_testkit::sample_events(Format::Cowrie, &path) {
        let a = engine.attribute(&ev);
        let ids = &a.technique_ids;
        let ctx = format!("line {line} {} `{}`", ev.event_type, ev.description);
        match ev.event_type.as_str() {
            "cowrie.login.failed" => assert_eq!(ids.first().map(String::as_str), Some("T1110.001"), "{ctx}: {ids:?}"),
            "cowrie.login.success" => {
                assert_eq!(ids.first().map(String::as_str), Some("T1078"), "{ctx}: {ids:?}");
                assert!(
                    ids.iter().any(|t| t == "T1021.004"),
                    "{ctx}: SSH login should be T1021.004: {ids:?}"
                );
            }
            "cowrie.command.input" => {
                let input = ev.attributes.get("input").cloned().unwrap_or_default();
                let (_, expected) = COWRIE_COMMANDS
                    .iter()
                    .find(|(cmd, _)| *cmd == input)
                    .unwrap_or_else(|| panic!("{ctx}: command not in the expectation table: {input}"));
                if expected.is_empty() {
                    assert_eq!(ids, &["T1059.004"], "{ctx}");
                }
                for t in *expected {
                    assert!(ids.iter().any(|i| i == t), "{ctx}: expected {t}, got {ids:?}");
                }
                assert!(
                    !ids.iter().any(|t| t == "T1059.004") || expected.is_empty(),
                    "{ctx}: fallback fired: {ids:?}"
                );
            }
            "cowrie.session.file_download" => {
                assert_eq!(
                    ev.attributes.get("destfile").map(String::as_str),
                    Some("/root/.ssh/authorized_keys")
                );
                assert_eq!(
                    ids,
                    &["T1098.004"],
                    "{ctx}: a shell redirect into authorized_keys, not a download"
                );
            }
            "cowrie.session.connect"
            | "cowrie.client.version"
            | "cowrie.client.kex"
            | "cowrie.client.size"
            | "cowrie.session.params"
            | "cowrie.log.closed"
            | "cowrie.session.closed" => {
                assert!(ids.is_empty(), "{ctx}: bookkeeping mapped to {ids:?}");
                assert_eq!(a.status, AttributionStatus::NoMatch as i32);
            }
            other => panic!("{ctx}: unexpected Cowrie event {other}"),
        }
        *counts
            .entry(match ev.event_type.as_str() {
                "cowrie.login.failed" => "failed logins",
                "cowrie.login.success" => "successful logins",
                "cowrie.command.input" => "commands",
                _ => "other",
            })
            .or_default() += 1;
    }
    assert_eq!(counts.get("commands"), Some(&13), "{counts:?}");
    assert_eq!(counts.get("failed logins"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("successful logins"), Some(&11), "{counts:?}");
}

#[test]
fn cowrie_session_as_a_whole_never_names_an_actor_strongly() {
    let Some(dir) = attackmesh_testkit::shared_data() else {
        return;
    };
    let engine = engine();
    let mut all: Vec<String> = Vec::new();
    for (_, ev) in
        attackmesh_testkit::sample_events(Format::Cowrie, &dir.join("samples/cowrie/cowrie_local_session.json"))
    {
        all.extend(engine.attribute(&ev).technique_ids);
    }
    all.sort();
    all.dedup();
    let ids: Vec<&str> = all.iter().map(String::as_str).collect();
    let actors = engine.rank_actors(&ids);
    assert!(!actors.is_empty(), "a dozen techniques should give candidates");
    for a in &actors {
        assert!(a.matched_techniques.len() >= 2 || a.score <= 0.3, "{a:?}");
    }
}

#[test]
fn zeek_notices_and_features_map_and_benign_logs_do_not() {
    let Some(dir) = attackmesh_testkit::shared_data() else {
        return;
    };
    let engine = engine();
    let zeek = dir.join("samples/zeek/zat-0.4.9");
    for (line, ev) in attackmesh_testkit::sample_events(Format::Zeek, &zeek.join("notice.log")) {
        let a = engine.attribute(&ev);
        assert_eq!(
            ev.attributes.get("note").map(String::as_str),
            Some("TeamCymruMalwareHashRegistry::Match")
        );
        assert_eq!(
            a.technique_ids.first().map(String::as_str),
            Some("T1105"),
            "notice line {line}"
        );
    }
    let dyn_dns = attackmesh_testkit::sample_events(Format::Zeek, &zeek.join("dns.log"))
        .into_iter()
        .filter(|(_, ev)| ev.description.ends_with("myftp.biz"))
        .map(|(_, ev)| engine.attribute(&ev).technique_ids)
        .collect::<Vec<_>>();
    assert!(
        !dyn_dns.is_empty() && dyn_dns.iter().all(|t| t == &["T1568"]),
        "{dyn_dns:?}"
    );
    for log in [
        "conn.log",
        "json/conn.log",
        "json/dns.log",
        "json/kerberos.log",
        "x509.log",
        "ssl.log",
    ] {
        let events = attackmesh_testkit::sample_events(Format::Zeek, &zeek.join(log));
        assert!(!events.is_empty(), "{log}: no events");
        for (line, ev) in events {
            let a = engine.attribute(&ev);
            assert!(
                a.technique_ids.is_empty(),
                "{log}:{line} benign record mapped to {:?}",
                a.technique_ids
            );
        }
    }
}

#[test]
fn no_output_on_any_sample_names_anything_but_an_active_technique() {
    let Some(dir) = attackmesh_testkit::shared_data() else {
        return;
    };
    let engine = engine();
    let kb: &Kb = engine.kb();
    let mut inputs: Vec<(Format, PathBuf)> = Vec::new();
    inputs.extend(
        files(&dir, "samples/suricata", ".ndjson")
            .into_iter()
            .map(|p| (Format::SuricataEve, p)),
    );
    inputs.extend(
        files(&dir, "samples/cowrie", ".json")
            .into_iter()
            .map(|p| (Format::Cowrie, p)),
    );
    inputs.extend(
        files(&dir, "samples/zeek/zat-0.4.9", ".log")
            .into_iter()
            .map(|p| (Format::Zeek, p)),
    );
    inputs.extend(
        files(&dir, "samples/zeek/zat-0.4.9/json", ".log")
            .into_iter()
            .map(|p| (Format::Zeek, p)),
    );
    let (mut events, mut attributed) = (0usize, 0usize);
    for (format, path) in &inputs {
        let input = formats::open_path(path).expect("opens");
        for record in Reader::new(*format, input, path.display().to_string()) {
            let Ok(Some(ev)) = record.result else { continue };
            let ctx = format!("{}:{}", path.display(), record.line);
            let a = engine.attribute(&ev);
            attackmesh_testkit::assert_only_active(kb, &a, &ctx);
            attackmesh_testkit::assert_only_active(kb, &Engine::degraded(kb, &ev), &ctx);
            events += 1;
            attributed += usize::from(!a.technique_ids.is_empty());
        }
    }
    println!("{events} sample events, {attributed} attributed");
    assert!(
        events > 1500 && attributed > 350,
        "{events} events, {attributed} attributed"
    );
    // Every signature as a free-text pattern, too.
    let mut signatures: Vec<String> = Vec::new();
    for path in files(&dir, "samples/suricata", ".eve.ndjson") {
        signatures.extend(
            attackmesh_testkit::sample_events(Format::SuricataEve, &path)
                .into_iter()
                .map(|(_, ev)| ev.description),
        );
    }
    for mapping in engine.map_patterns(&signatures, "", attackmesh::proto::DetectorKind::Unspecified) {
        for t in &mapping.techniques {
            assert!(
                matches!(kb.resolve(&t.id), attackmesh_attack::Resolved::Active(_)),
                "{}: {}",
                mapping.pattern,
                t.id
            );
        }
    }
}
