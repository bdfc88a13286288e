//! `attackmesh enrich` runs the correlation rules over what it read and appends the findings
//! after the one-line-per-record output, which stays exactly what it is without correlation.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use attackmesh::proto::EnrichedEvent;

fn enrich(extra: &[&str], files: &[&str]) -> Vec<EnrichedEvent> {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../correlation/tests/data/");
    let out = Command::new(env!("CARGO_BIN_EXE_attackmesh"))
        .args(["enrich", "--format", "zeek"])
        .args(extra)
        .args(files.iter().map(|f| format!("{data}{f}")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| attackmesh::json::from_json(l).unwrap())
        .collect()
}

#[test]
fn findings_follow_the_unchanged_per_record_lines() {
    let files = ["dns_benign.log", "scan_conn.log", "kerberos_spray.log"];
    let plain = enrich(&["--no-correlation"], &files);
    let with = enrich(&[], &files);
    assert_eq!(plain.len(), 4 + 40 + 7);
    let strip = |e: &EnrichedEvent| EnrichedEvent {
        enriched_at: None,
        ..e.clone()
    };
    assert_eq!(
        with[..plain.len()].iter().map(strip).collect::<Vec<_>>(),
        plain.iter().map(strip).collect::<Vec<_>>()
    );
    let findings: Vec<&str> = with[plain.len()..].iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        findings,
        [
            "correlation.port_scan",
            "correlation.password_spraying",
            "correlation.success_after_failures"
        ]
    );
    let scan = &with[plain.len()];
    assert_eq!(scan.source_service, "attackmesh-correlation");
    assert!(
        scan.technique_ids.contains(&"T1046".to_owned()),
        "attributed like any detection"
    );
    assert!(
        scan.original.contains(&plain[4].event_id),
        "evidence lists the contributing events"
    );
}
