use super::*;
use crate::proto::{Endpoint, Indicator, IndicatorType};

fn good() -> DetectionEvent {
    DetectionEvent {
        event_id: "evt-1".into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        source_service: "suricata-edge".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: "port_scan".into(),
        source: Some(Endpoint {
            ip: "10.0.0.5".into(),
            port: 4444,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "2001:db8::1".into(),
            port: 22,
            ..Default::default()
        }),
        severity: Severity::High as i32,
        indicators: vec![
            Indicator {
                r#type: IndicatorType::Ipv4 as i32,
                value: "10.0.0.5".into(),
            },
            Indicator {
                r#type: IndicatorType::FileSha256 as i32,
                value: "a".repeat(64),
            },
        ],
        technique_hints: vec!["T1046".into(), "T1110.001".into()],
        detector_confidence: Some(0.8),
        ..Default::default()
    }
}

fn fields(result: Result<(), Vec<crate::proto::FieldViolation>>) -> Vec<String> {
    result.err().unwrap_or_default().into_iter().map(|v| v.field).collect()
}

#[test]
fn a_complete_event_passes() {
    assert_eq!(detection_event(&good()), Ok(()));
}

#[test]
fn each_bad_field_is_named() {
    type Mutation = Box<dyn Fn(&mut DetectionEvent)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("timestamp", Box::new(|e| e.timestamp = None)),
        (
            "timestamp",
            Box::new(|e| e.timestamp = Some(pbjson_types::Timestamp { seconds: 10, nanos: 0 })),
        ),
        (
            "timestamp",
            Box::new(|e| {
                e.timestamp = Some(pbjson_types::Timestamp {
                    seconds: 99_999_999_999,
                    nanos: 0,
                })
            }),
        ),
        (
            "timestamp",
            Box::new(|e| {
                e.timestamp = Some(pbjson_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: -1,
                })
            }),
        ),
        ("source_service", Box::new(|e| e.source_service = "  ".into())),
        ("event_type", Box::new(|e| e.event_type = "x".repeat(200))),
        ("event_id", Box::new(|e| e.event_id = "has space".into())),
        (
            "source.ip",
            Box::new(|e| e.source.as_mut().unwrap().ip = "300.1.1.1".into()),
        ),
        (
            "destination.port",
            Box::new(|e| e.destination.as_mut().unwrap().port = 70_000),
        ),
        ("severity", Box::new(|e| e.severity = 42)),
        ("detector_kind", Box::new(|e| e.detector_kind = -3)),
        ("detector_confidence", Box::new(|e| e.detector_confidence = Some(1.5))),
        (
            "detector_confidence",
            Box::new(|e| e.detector_confidence = Some(f64::NAN)),
        ),
        ("technique_hints[1]", Box::new(|e| e.technique_hints[1] = "T11".into())),
        (
            "indicators[0].value",
            Box::new(|e| e.indicators[0].value = "2001:db8::1".into()),
        ),
        ("indicators[1].value", Box::new(|e| e.indicators[1].value = "zz".into())),
        ("indicators[0].type", Box::new(|e| e.indicators[0].r#type = 0)),
        (
            "description",
            Box::new(|e| e.description = "d".repeat(crate::limits::MAX_DESCRIPTION_BYTES + 1)),
        ),
        (
            "attributes[k]",
            Box::new(|e| {
                e.attributes
                    .insert("k".into(), "v".repeat(crate::limits::MAX_ATTRIBUTE_VALUE_BYTES + 1));
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut ev = good();
        mutate(&mut ev);
        assert_eq!(
            fields(detection_event(&ev)),
            vec![field.to_string()],
            "mutating {field}"
        );
    }
}

#[test]
fn missing_event_id_is_generated_not_rejected() {
    let mut ev = good();
    ev.event_id.clear();
    prepare_detection(&mut ev);
    assert_eq!(ev.event_id.len(), 36);
    assert_eq!(detection_event(&ev), Ok(()));
}

#[test]
fn indicator_forms() {
    let check = |t: IndicatorType, v: &str| {
        indicator(&Indicator {
            r#type: t as i32,
            value: v.into(),
        })
        .is_ok()
    };
    assert!(check(IndicatorType::Ipv4, "192.0.2.0/24"));
    assert!(!check(IndicatorType::Ipv4, "192.0.2.0/33"));
    assert!(check(IndicatorType::Ipv6, "2001:db8::/32"));
    assert!(check(IndicatorType::Domain, "evil.example.com"));
    assert!(!check(IndicatorType::Domain, "evil..com"));
    assert!(check(IndicatorType::Url, "http://evil.example/x"));
    assert!(!check(IndicatorType::Url, "evil.example/x"));
    assert!(check(IndicatorType::Email, "a@b.example"));
    assert!(check(IndicatorType::Mac, "00:11:22:aa:bb:cc"));
    assert!(check(IndicatorType::FileMd5, &"0".repeat(32)));
}

#[test]
fn technique_id_shape() {
    for ok in ["T1046", "T1110.001"] {
        assert!(is_technique_id(ok), "{ok}");
    }
    for bad in ["t1046", "T104", "T1110.01", "T1110-001", "TA0001", "T1110.0011", ""] {
        assert!(!is_technique_id(bad), "{bad}");
    }
}

#[test]
fn enriched_events_need_id_revision_and_bounded_confidence() {
    let ev = EnrichedEvent {
        event_id: String::new(),
        timestamp: good().timestamp,
        source_service: "s".into(),
        event_type: "t".into(),
        technique_ids: vec!["T1046".into(), "bogus".into()],
        confidence_score: 1.2,
        ..Default::default()
    };
    assert_eq!(
        fields(enriched_event(&ev)),
        vec!["event_id", "technique_ids[1]", "confidence_score", "revision"]
    );
}

#[test]
fn unknown_evidence_sources_are_refused() {
    // Found by the validate_proto fuzz target: an unknown enum value nested in the metadata
    // passed validation, and canonical JSON then wrote `{"error":"Invalid variant 17"}` in
    // place of the event.
    use crate::proto::{EnrichmentMetadata, Evidence, TechniqueDetail};
    let evidence = |source| Evidence {
        source,
        ..Default::default()
    };
    let ev = EnrichedEvent {
        event_id: "e-1".into(),
        timestamp: good().timestamp,
        source_service: "s".into(),
        event_type: "t".into(),
        revision: 1,
        metadata: Some(EnrichmentMetadata {
            techniques: vec![TechniqueDetail {
                id: "T1046".into(),
                evidence: vec![evidence(1), evidence(17)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        fields(enriched_event(&ev)),
        vec!["metadata.techniques[0].evidence[1].source"]
    );
}

#[test]
fn nested_confidences_and_scores_are_within_the_unit_interval() {
    // Found by the validate_proto fuzz target: a NaN evidence confidence passed validation and
    // canonical JSON wrote `null`, which does not decode.
    use crate::proto::{EnrichmentMetadata, Evidence, TechniqueDetail, ThreatActor};
    let ev = EnrichedEvent {
        event_id: "e-1".into(),
        timestamp: good().timestamp,
        source_service: "s".into(),
        event_type: "t".into(),
        revision: 1,
        metadata: Some(EnrichmentMetadata {
            techniques: vec![TechniqueDetail {
                id: "T1046".into(),
                confidence: f64::INFINITY,
                evidence: vec![Evidence {
                    source: 1,
                    confidence: f64::NAN,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            threat_actors: vec![ThreatActor {
                group_id: "G0007".into(),
                score: 1.5,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        fields(enriched_event(&ev)),
        vec![
            "metadata.techniques[0].confidence",
            "metadata.techniques[0].evidence[0].confidence",
            "metadata.threat_actors[0].score"
        ]
    );
}

#[test]
fn enriched_at_must_be_a_plausible_instant() {
    // Found by the validate_proto fuzz target: `enriched_at` in year 19740 passed validation
    // and canonical JSON wrote `+19740-11-27T…`, which no decoder reads back.
    let mut ev = EnrichedEvent {
        event_id: "e-1".into(),
        timestamp: good().timestamp,
        source_service: "s".into(),
        event_type: "t".into(),
        revision: 1,
        enriched_at: Some(pbjson_types::Timestamp {
            seconds: 560_769_455_608,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_eq!(fields(enriched_event(&ev)), vec!["enriched_at"]);
    ev.enriched_at = good().timestamp;
    assert!(enriched_event(&ev).is_ok());
    ev.enriched_at = None;
    assert!(enriched_event(&ev).is_ok(), "enriched_at stays optional");
}

#[test]
fn status_carries_field_violations() {
    use tonic_types::StatusExt;
    let mut ev = good();
    ev.source.as_mut().unwrap().ip = "nope".into();
    let violations = detection_event(&ev).unwrap_err();
    let status = to_status("events[3]", &violations);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("events[3].source.ip"), "{}", status.message());
    let details = status.get_error_details();
    let bad = details.bad_request().expect("bad request details");
    assert_eq!(bad.field_violations[0].field, "events[3].source.ip");
}
