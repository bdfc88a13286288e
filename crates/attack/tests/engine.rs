//! Engine behaviour a user notices: detector hints are validated and normalised, confidence
//! combines evidence, statuses are right, and free-text patterns map.

use attackmesh::proto::{AttributionStatus, DetectorKind, Endpoint, EvidenceSource, Process};
use attackmesh_attack::Engine;

fn engine() -> Engine {
    Engine::embedded().expect("embedded engine")
}

#[test]
fn revoked_hint_is_replaced_and_unknown_or_deprecated_hints_are_dropped() {
    let engine = engine();
    let mut ev = attackmesh_testkit::event(
        "falco.alert",
        DetectorKind::BehaviouralAnalysis,
        "custom rule fired",
        &[("rule", "My custom rule")],
    );
    ev.technique_hints = vec![
        "T1073".into(),
        "T9999".into(),
        "T1064".into(),
        "mitre_execution".into(),
        "t1059.004".into(),
    ];
    let a = engine.attribute(&ev);
    attackmesh_testkit::assert_only_active(engine.kb(), &a, "hints");
    assert_eq!(a.status, AttributionStatus::Ok as i32);
    let techniques = &a.metadata.as_ref().expect("metadata").techniques;
    let ids: Vec<&str> = techniques.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let replaced = techniques
        .iter()
        .find(|t| t.id == "T1574.001")
        .expect("T1073 replaced by T1574.001");
    assert_eq!(replaced.replaces_revoked_id, "T1073");
    assert_eq!(replaced.name, "DLL");
    assert_eq!(replaced.evidence[0].source, EvidenceSource::DetectorHint as i32);
    assert_eq!(replaced.evidence[0].rule_id, "T1073");
    let shell = techniques
        .iter()
        .find(|t| t.id == "T1059.004")
        .expect("lower-case hint normalised");
    assert_eq!(shell.replaces_revoked_id, "");
    assert_eq!(shell.tactics[0].id, "TA0002");
}

#[test]
fn degraded_carries_only_validated_hints() {
    let engine = engine();
    let mut ev = attackmesh_testkit::event(
        "cowrie.login.failed",
        DetectorKind::Decoy,
        "login attempt [root/root] failed",
        &[],
    );
    ev.technique_hints = vec!["T1110.001".into(), "T0000".into()];
    let a = Engine::degraded(engine.kb(), &ev);
    assert_eq!(a.status, AttributionStatus::Degraded as i32);
    assert_eq!(a.technique_ids, ["T1110.001"]);
    assert_eq!(a.attack_version, "18.1");
    assert!(a.metadata.as_ref().expect("metadata").threat_actors.is_empty());
    ev.technique_hints.clear();
    let a = Engine::degraded(engine.kb(), &ev);
    assert_eq!(a.status, AttributionStatus::Degraded as i32);
    assert!(a.technique_ids.is_empty() && a.confidence_score == 0.0);
}

#[test]
fn confidence_combines_evidence_and_detector_confidence() {
    let engine = engine();
    // A hint and a rule for the same technique combine by noisy-OR: 1 - (1-0.8)(1-0.6) = 0.92.
    let mut ev = attackmesh_testkit::event(
        "cowrie.login.failed",
        DetectorKind::Decoy,
        "login attempt [root/root] failed",
        &[],
    );
    ev.technique_hints = vec!["T1110.001".into()];
    let a = engine.attribute(&ev);
    let t = &a.metadata.as_ref().expect("metadata").techniques[0];
    assert_eq!(t.id, "T1110.001");
    assert_eq!(t.evidence.len(), 2);
    assert!((t.confidence - 0.92).abs() < 1e-9, "{}", t.confidence);
    assert_eq!(a.confidence_score, t.confidence);
    // The detector's own confidence scales every piece of evidence.
    ev.detector_confidence = Some(0.5);
    let a = engine.attribute(&ev);
    let t = &a.metadata.as_ref().expect("metadata").techniques[0];
    assert!((t.confidence - (1.0 - 0.6 * 0.7)).abs() < 1e-9, "{}", t.confidence);
    // Many agreeing rules never reach certainty.
    let cmd = attackmesh_testkit::event(
        "cowrie.command.input",
        DetectorKind::Decoy,
        "echo x >> ~/.ssh/authorized_keys",
        &[("input", "echo x >> ~/.ssh/authorized_keys")],
    );
    let mut cmd = cmd;
    cmd.technique_hints = vec!["T1098.004".into()];
    let top = engine.attribute(&cmd).confidence_score;
    assert!(top <= 0.99 && top > 0.95, "{top}");
}

#[test]
fn no_match_has_no_techniques_and_zero_confidence() {
    let a = engine().attribute(&attackmesh_testkit::event(
        "heartbeat",
        DetectorKind::Other,
        "all quiet",
        &[],
    ));
    assert_eq!(a.status, AttributionStatus::NoMatch as i32);
    assert!(a.technique_ids.is_empty());
    assert_eq!(a.confidence_score, 0.0);
    assert!(
        a.metadata
            .as_ref()
            .expect("metadata")
            .rule_pack_version
            .contains("suricata@")
    );
}

/// Event type, detector kind, attributes, expected technique.
type Case = (
    &'static str,
    DetectorKind,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn detector_kinds_of_the_seed_map() {
    let engine = engine();
    let cases: &[Case] = &[
        ("port_scan", DetectorKind::TrafficMonitor, &[], "T1046"),
        ("brute_force", DetectorKind::TrafficMonitor, &[], "T1110"),
        ("beaconing", DetectorKind::TrafficMonitor, &[], "T1071"),
        ("dns_tunneling", DetectorKind::TrafficMonitor, &[], "T1071.004"),
        ("exfiltration_volume", DetectorKind::TrafficMonitor, &[], "T1048"),
        ("ddos", DetectorKind::TrafficMonitor, &[], "T1498"),
        ("unusual_login", DetectorKind::BehaviouralAnalysis, &[], "T1078"),
        ("impossible_travel", DetectorKind::BehaviouralAnalysis, &[], "T1078"),
        ("privilege_escalation", DetectorKind::BehaviouralAnalysis, &[], "T1068"),
        ("lateral_movement", DetectorKind::BehaviouralAnalysis, &[], "T1021"),
        ("credential_dumping", DetectorKind::BehaviouralAnalysis, &[], "T1003"),
        ("new_admin_account", DetectorKind::BehaviouralAnalysis, &[], "T1136"),
        (
            "scheduled_task",
            DetectorKind::BehaviouralAnalysis,
            &[("platform", "windows")],
            "T1053.005",
        ),
        (
            "persistence",
            DetectorKind::BehaviouralAnalysis,
            &[("mechanism", "cron")],
            "T1053.003",
        ),
        (
            "decoy_login",
            DetectorKind::Decoy,
            &[("outcome", "failure")],
            "T1110.001",
        ),
        ("decoy_file_drop", DetectorKind::Decoy, &[], "T1105"),
        ("honeytoken_use", DetectorKind::Decoy, &[], "T1078"),
    ];
    for (event_type, kind, attrs, expected) in cases {
        let a = engine.attribute(&attackmesh_testkit::event(event_type, *kind, "", attrs));
        assert!(
            a.technique_ids.iter().any(|t| t == expected),
            "{event_type}: expected {expected}, got {:?}",
            a.technique_ids
        );
        attackmesh_testkit::assert_only_active(engine.kb(), &a, event_type);
    }
    // A persistence event with a known mechanism does not also get the generic fallback.
    let a = engine.attribute(&attackmesh_testkit::event(
        "persistence",
        DetectorKind::BehaviouralAnalysis,
        "",
        &[("mechanism", "cron")],
    ));
    assert_eq!(a.technique_ids, ["T1053.003"]);
    let a = engine.attribute(&attackmesh_testkit::event(
        "persistence",
        DetectorKind::BehaviouralAnalysis,
        "",
        &[],
    ));
    assert_eq!(a.technique_ids, ["T1547"]);
}

#[test]
fn process_command_lines_map_whatever_the_detector() {
    let engine = engine();
    let mut ev = attackmesh_testkit::event("process_start", DetectorKind::Other, "process started", &[]);
    ev.source = Some(Endpoint {
        process: Some(Process {
            command_line: "vssadmin.exe delete shadows /all /quiet".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(engine.attribute(&ev).technique_ids, ["T1490"]);
}

#[test]
fn falco_and_wazuh_map_by_rule_without_tags() {
    let engine = engine();
    let falco = attackmesh_testkit::event(
        "falco.alert",
        DetectorKind::BehaviouralAnalysis,
        "shell",
        &[("rule", "Terminal shell in container")],
    );
    assert_eq!(engine.attribute(&falco).technique_ids, ["T1059"]);
    let wazuh = attackmesh_testkit::event(
        "wazuh.alert",
        DetectorKind::BehaviouralAnalysis,
        "sshd: brute force trying to get access to the system.",
        &[
            ("rule.id", "5712"),
            ("rule.groups", "syslog,sshd,authentication_failures"),
        ],
    );
    assert_eq!(engine.attribute(&wazuh).technique_ids, ["T1110"]);
}

#[test]
fn free_text_patterns_map() {
    let engine = engine();
    let patterns = [
        "ET SCAN Potential SSH Scan",
        "cat /etc/shadow",
        "Run shell untrusted",
        "nothing to see here",
        "",
    ];
    let m = engine.map_patterns(&patterns, "", DetectorKind::Unspecified);
    assert_eq!(m.len(), patterns.len());
    let ids = |i: usize| m[i].techniques.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert!(ids(0).contains(&"T1046".to_owned()), "{:?}", ids(0));
    assert!(ids(1).contains(&"T1003.008".to_owned()), "{:?}", ids(1));
    assert!(ids(2).contains(&"T1059.004".to_owned()), "{:?}", ids(2));
    assert!(ids(3).is_empty() && ids(4).is_empty(), "{:?} {:?}", ids(3), ids(4));
    assert_eq!(m[1].pattern, "cat /etc/shadow");
    // An event type restricts the rules to those of that type.
    let only_cowrie = engine.map_patterns(
        &["cat /etc/shadow", "ET SCAN Potential SSH Scan"],
        "cowrie.command.input",
        DetectorKind::Unspecified,
    );
    assert!(only_cowrie[0].techniques.iter().any(|t| t.id == "T1003.008"));
    assert!(
        !only_cowrie[1].techniques.iter().any(|t| t.id == "T1046"),
        "suricata rule applied to a cowrie type"
    );
}

#[test]
fn emittable_techniques_cover_the_rule_packs_and_sigma_once_each() {
    let full = engine();
    let emitted = full.emittable_techniques();
    let ids: Vec<&str> = emitted.iter().map(|t| t.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "sorted, once each");
    // T1110.001 comes from the packs, T1003.001 (LSASS memory) from SigmaHQ rules.
    for id in ["T1110.001", "T1046", "T1003.001"] {
        assert!(ids.contains(&id), "{id} missing");
    }
    assert!(emitted.iter().all(|t| t.is_active()));
    let packs_only = Engine::with_sigma(
        full.kb().clone(),
        attackmesh_attack::rules::RulePack::embedded().unwrap(),
        Vec::new(),
    )
    .unwrap();
    let fewer = packs_only.emittable_techniques();
    assert!(
        !fewer.is_empty() && fewer.len() < emitted.len(),
        "{} vs {}",
        fewer.len(),
        emitted.len()
    );
}
