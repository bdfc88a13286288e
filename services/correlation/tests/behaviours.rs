//! The built-in behaviours over Zeek captures written to mimic each one (`tests/data`), their
//! benign counterparts, and the real Zeek samples of the shared data: each behaviour is found
//! with its technique, and benign traffic of the same protocols raises nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use attackmesh::{
    enriched_event,
    formats::Format,
    proto::{Attribution, DetectionEvent, EnrichedEvent},
};
use attackmesh_correlation::{CorrelationConfig, Engine, Shard, config::AllowConfig};

fn events(path: &Path) -> Vec<EnrichedEvent> {
    attackmesh_testkit::data::sample_events(Format::Zeek, path)
        .into_iter()
        .map(|(_, mut e)| {
            attackmesh::validate::prepare_detection(&mut e);
            enriched_event(e, Attribution::default(), 1)
        })
        .collect()
}

fn run(engine: &mut Engine, files: &[&str]) -> Vec<DetectionEvent> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut all: Vec<EnrichedEvent> = files.iter().flat_map(|f| events(&dir.join(f))).collect();
    all.sort_by_key(|e| e.timestamp.as_ref().map(|t| (t.seconds, t.nanos)));
    let mut out = Vec::new();
    for e in &all {
        engine.observe(e, Shard::default(), &mut out);
    }
    out
}

fn found(files: &[&str]) -> Vec<(String, Vec<String>, String)> {
    let mut engine = CorrelationConfig::default().engine().unwrap();
    run(&mut engine, files)
        .into_iter()
        .map(|f| (f.event_type, f.technique_hints, f.source.unwrap_or_default().ip))
        .collect()
}

fn one(files: &[&str], rule: &str, technique: &str, source: &str) {
    let found = found(files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, format!("correlation.{rule}"));
    assert!(found[0].1.iter().any(|t| t == technique), "{found:?}");
    assert_eq!(found[0].2, source);
}

#[test]
fn lateral_movement_over_rdp_smb_and_winrm() {
    let allowed = CorrelationConfig {
        allow: vec![AllowConfig {
            rules: vec!["lateral_movement_rdp".into()],
            matches: serde_yaml::from_str("{source.ip: 10.0.0.5}").unwrap(),
        }],
        ..Default::default()
    };
    let mut engine = allowed.engine().unwrap();
    let rdp: Vec<_> = run(&mut engine, &["rdp.log"])
        .into_iter()
        .map(|f| (f.event_type, f.source.unwrap().ip))
        .collect();
    assert_eq!(
        rdp,
        [("correlation.lateral_movement_rdp".to_owned(), "10.10.5.23".to_owned())],
        "the workstation hopping between servers, not the allowed jump host"
    );
    let unallowed = found(&["rdp.log"]);
    assert_eq!(
        unallowed.len(),
        2,
        "without the allow-list the jump host is reported too: {unallowed:?}"
    );
    one(&["smb_mapping.log"], "lateral_movement_smb", "T1021.002", "10.10.5.40");
    one(&["winrm_conn.log"], "lateral_movement_winrm", "T1021.006", "10.10.5.41");
}

#[test]
fn c2_over_dns_and_not_one_spf_lookup() {
    let mut engine = CorrelationConfig::default().engine().unwrap();
    let tunnel = run(&mut engine, &["dns_tunnel.log", "dns_benign.log"]);
    assert_eq!(tunnel.len(), 1, "{tunnel:?}");
    assert_eq!(tunnel[0].event_type, "correlation.dns_c2_tunnel");
    assert!(tunnel[0].technique_hints.contains(&"T1071.004".to_owned()));
    assert_eq!(tunnel[0].indicators[0].value, "cdn-sync-update.net");
    assert_eq!(tunnel[0].attributes["correlation.events"], "10");
    assert!(found(&["dns_benign.log"]).is_empty());
}

#[test]
fn beaconing_at_a_steady_period_but_not_irregular_browsing() {
    one(&["beacon_conn.log"], "beaconing", "T1071", "10.10.5.90");
}

#[test]
fn password_spraying_then_success_after_failures() {
    let found = found(&["kerberos_spray.log"]);
    let rules: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        rules,
        ["correlation.password_spraying", "correlation.success_after_failures"],
        "{found:?}"
    );
    assert!(found[0].1.contains(&"T1110.003".to_owned()));
    assert!(found[1].1.contains(&"T1078".to_owned()));
}

#[test]
fn port_scan_from_conn_log() {
    one(&["scan_conn.log"], "port_scan", "T1046", "10.10.5.13");
}

#[test]
fn real_zeek_samples() {
    let Some(data) = attackmesh_testkit::data::shared_data() else {
        return;
    };
    let zat = data.join("samples/zeek/zat-0.4.9");
    let mut engine = CorrelationConfig::default().engine().unwrap();
    let mut all = Vec::new();
    for f in [
        "conn.log",
        "dns.log",
        "http.log",
        "ssl.log",
        "files.log",
        "weird.log",
        "notice.log",
    ] {
        all.extend(events(&zat.join(f)));
    }
    for f in [
        "dce_rpc.log",
        "kerberos.log",
        "smb_files.log",
        "smb_mapping.log",
        "ssl.log",
        "dns.log",
        "conn.log",
    ] {
        all.extend(events(&zat.join("json").join(f)));
    }
    all.sort_by_key(|e| e.timestamp.as_ref().map(|t| (t.seconds, t.nanos)));
    let mut out = Vec::new();
    for e in &all {
        engine.observe(e, Shard::default(), &mut out);
    }
    let rules: Vec<(&str, &str)> = out
        .iter()
        .map(|f| {
            (
                f.event_type.as_str(),
                f.attributes
                    .get("correlation.group.destination.port")
                    .map_or("", String::as_str),
            )
        })
        .collect();
    // 192.168.33.10 probing UDP 16464 on many peers without answers: ZeroAccess's peer-to-peer port.
    assert_eq!(rules, [("correlation.host_sweep", "16464")], "{rules:?}");
}
