//! Detections made for tests, and the invariants every attribution must hold.

use attackmesh::proto::{DetectionEvent, DetectorKind, Endpoint, Severity};

/// A valid detection event with the given type, kind, description and attributes.
pub fn event(event_type: &str, kind: DetectorKind, description: &str, attributes: &[(&str, &str)]) -> DetectionEvent {
    DetectionEvent {
        event_id: format!("test-{}", event_type.replace(|c: char| !c.is_ascii_alphanumeric(), "-")),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        source_service: "attribution-tests".into(),
        detector_kind: kind as i32,
        event_type: event_type.into(),
        description: description.into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

/// A SYN scan from `source_ip` reported now by a traffic monitor, with id `id`.
pub fn port_scan(id: &str, source_ip: &str) -> DetectionEvent {
    DetectionEvent {
        event_id: id.into(),
        timestamp: Some(chrono::Utc::now().into()),
        source_service: "netmon-01".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: "port_scan".into(),
        source: Some(Endpoint {
            ip: source_ip.into(),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.0.0.5".into(),
            port: 22,
            ..Default::default()
        }),
        severity: Severity::Medium as i32,
        description: "SYN scan of 1000 ports".into(),
        technique_hints: vec!["T1046".into()],
        ..Default::default()
    }
}

/// Asserts that every technique id an attribution mentions is an active technique of `kb`.
pub fn assert_only_active(kb: &attackmesh_attack::Kb, a: &attackmesh::proto::Attribution, context: &str) {
    use attackmesh_attack::Resolved;
    let meta = a.metadata.as_ref().unwrap_or_else(|| panic!("{context}: no metadata"));
    let detail_ids: Vec<&str> = meta.techniques.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        a.technique_ids.iter().map(String::as_str).collect::<Vec<_>>(),
        detail_ids,
        "{context}: order"
    );
    let actor_ids = meta
        .threat_actors
        .iter()
        .flat_map(|t| t.matched_techniques.iter().map(String::as_str));
    for id in detail_ids.iter().copied().chain(actor_ids) {
        assert!(
            matches!(kb.resolve(id), Resolved::Active(_)),
            "{context}: `{id}` is not an active ATT&CK technique"
        );
    }
    for t in &meta.techniques {
        assert!(
            (0.0..=0.99).contains(&t.confidence),
            "{context}: {} confidence {}",
            t.id,
            t.confidence
        );
        assert!(!t.evidence.is_empty(), "{context}: {} has no evidence", t.id);
        assert!(
            !t.name.is_empty() && !t.tactics.is_empty() && !t.url.is_empty(),
            "{context}: {} details",
            t.id
        );
    }
    for actor in &meta.threat_actors {
        assert!(
            (0.0..=1.0).contains(&actor.score),
            "{context}: actor score {}",
            actor.score
        );
    }
    assert!(
        (0.0..=1.0).contains(&a.confidence_score),
        "{context}: confidence {}",
        a.confidence_score
    );
    assert_eq!(a.attack_version, kb.attack_version(), "{context}: attack version");
}
