use proptest::prelude::*;

use super::*;
use crate::proto::{
    Attribution, DetectionEvent, Endpoint, EnrichedEvent, EnrichmentMetadata, Evidence, Indicator, Process, Tactic,
    TechniqueDetail, ThreatActor,
};

fn sample_enriched() -> EnrichedEvent {
    EnrichedEvent {
        event_id: "e-1".into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: 1_546_401_011,
            nanos: 315_110_000,
        }),
        source_service: "suricata".into(),
        detector_kind: 1,
        event_type: "suricata.alert".into(),
        source: Some(Endpoint {
            ip: "8.42.77.171".into(),
            port: 49678,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "138.68.3.71".into(),
            port: 22,
            ..Default::default()
        }),
        severity: 2,
        description: "ET SCAN Potential SSH Scan".into(),
        technique_ids: vec!["T1046".into()],
        confidence_score: 0.7,
        related_indicators: vec![Indicator {
            r#type: 1,
            value: "8.42.77.171".into(),
        }],
        metadata: Some(EnrichmentMetadata {
            techniques: vec![TechniqueDetail {
                id: "T1046".into(),
                name: "Network Service Discovery".into(),
                tactics: vec![Tactic {
                    id: "TA0007".into(),
                    name: "Discovery".into(),
                    shortname: "discovery".into(),
                }],
                url: "https://attack.mitre.org/techniques/T1046".into(),
                confidence: 0.7,
                evidence: vec![Evidence {
                    source: 1,
                    rule_id: "suricata/scan".into(),
                    detail: "ET SCAN".into(),
                    confidence: 0.7,
                }],
                ..Default::default()
            }],
            threat_actors: vec![ThreatActor {
                group_id: "G0016".into(),
                score: 0.1,
                ..Default::default()
            }],
            rule_pack_version: "1.0.0".into(),
        }),
        attack_version: "18.1".into(),
        attribution_status: 1,
        revision: 1,
        ..Default::default()
    }
}

#[test]
fn seed_field_names_and_rfc3339_timestamps() {
    let json = to_json(&sample_enriched());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in [
        "technique_ids",
        "confidence_score",
        "related_indicators",
        "event_id",
        "event_type",
        "source_service",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(v["timestamp"], "2019-01-02T03:50:11.315110+00:00");
    assert_eq!(v["severity"], "SEVERITY_MEDIUM");
    assert_eq!(v["metadata"]["techniques"][0]["tactics"][0]["id"], "TA0007");
    assert_eq!(from_json::<EnrichedEvent>(&json).unwrap(), sample_enriched());
}

#[test]
fn defaults_are_written_so_consumers_see_every_field() {
    let json = to_json(&EnrichedEvent::default());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["technique_ids"], serde_json::json!([]));
    assert_eq!(v["confidence_score"], 0.0);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (r#"{"source":{"port":"abc"}}"#, "source.port"),
        (r#"{"timestamp":"yesterday"}"#, "timestamp"),
        (
            r#"{"indicators":[{"type":"INDICATOR_TYPE_IPV4"},{"type":"NOPE"}]}"#,
            "indicators[1].type",
        ),
        (r#"{"event_typo":"x"}"#, "event_typo"),
        (r#"{"detector_confidence":"high"}"#, "detector_confidence"),
    ];
    for (input, field) in cases {
        let err = from_json::<DetectionEvent>(input).unwrap_err();
        assert_eq!(err.field, field, "{input}: {err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = from_json::<DetectionEvent>("{\"event_id\": \"a\"} trailing").unwrap_err();
    assert!(err.field.is_empty() && err.to_string().contains("line 1"), "{err}");
    assert!(from_json::<DetectionEvent>("[1,2]").is_err());
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._:/\\-\u{e9}\u{4e2d}\"\\\\]{0,24}"
}

fn endpoint() -> impl Strategy<Value = Option<Endpoint>> {
    proptest::option::of(
        (
            text(),
            0u32..=65535,
            text(),
            text(),
            proptest::option::of((any::<u32>(), text(), text())),
        )
            .prop_map(|(ip, port, hostname, user, process)| Endpoint {
                ip,
                port,
                hostname,
                user,
                process: process.map(|(pid, name, command_line)| Process {
                    pid,
                    name,
                    command_line,
                    ..Default::default()
                }),
            }),
    )
}

fn timestamp() -> impl Strategy<Value = Option<pbjson_types::Timestamp>> {
    proptest::option::of(
        (0i64..4_102_444_800, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| pbjson_types::Timestamp { seconds, nanos }),
    )
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![0.0..=1.0f64, -1e12..1e12f64]
}

prop_compose! {
    fn detection()(
        event_id in text(), timestamp in timestamp(), source_service in text(), detector_kind in 0i32..5,
        event_type in text(), source in endpoint(), destination in endpoint(), severity in 0i32..5,
        description in text(), indicators in proptest::collection::vec((0i32..14, text()), 0..4),
        technique_hints in proptest::collection::vec(text(), 0..3), detector_confidence in proptest::option::of(finite()),
        attributes in proptest::collection::btree_map(text(), text(), 0..4), original in text(), original_format in text(),
        submitted_by in text(),
    ) -> DetectionEvent {
        DetectionEvent {
            event_id, timestamp, source_service, detector_kind, event_type, source, destination, severity, description,
            indicators: indicators.into_iter().map(|(t, value)| Indicator { r#type: t, value }).collect(),
            technique_hints, detector_confidence, attributes, original, original_format, submitted_by,
        }
    }
}

prop_compose! {
    fn enriched()(d in detection(), technique_ids in proptest::collection::vec(text(), 0..3), confidence_score in finite(),
        status in 0i32..4, revision in any::<u32>(), enriched_at in timestamp(), version in text(),
        tech in proptest::option::of((text(), text(), finite(), text())), actor in proptest::option::of((text(), finite(), proptest::collection::vec(text(), 0..3))),
    ) -> EnrichedEvent {
        let metadata = Some(EnrichmentMetadata {
            techniques: tech.into_iter().map(|(id, name, confidence, url)| TechniqueDetail {
                id, name, confidence, url,
                tactics: vec![Tactic { id: "TA0001".into(), name: "Initial Access".into(), shortname: "initial-access".into() }],
                ..Default::default()
            }).collect(),
            threat_actors: actor.into_iter().map(|(name, score, aliases)| ThreatActor { name, score, aliases, ..Default::default() }).collect(),
            rule_pack_version: version.clone(),
        });
        EnrichedEvent {
            event_id: d.event_id, timestamp: d.timestamp, source_service: d.source_service, detector_kind: d.detector_kind,
            event_type: d.event_type, source: d.source, destination: d.destination, severity: d.severity,
            description: d.description, technique_ids, confidence_score, related_indicators: d.indicators, metadata,
            attack_version: version.clone(), attribution_status: status, attributes: d.attributes, original: d.original,
            original_format: d.original_format, enriched_at, revision, submitted_by: d.submitted_by,
            campaign_id: version.clone(), campaign: None,
        }
    }
}

proptest! {
    #[test]
    fn detection_round_trips_losslessly(ev in detection()) {
        let json = to_json(&ev);
        prop_assert_eq!(from_json::<DetectionEvent>(&json).unwrap(), ev);
    }

    #[test]
    fn enriched_round_trips_losslessly(ev in enriched()) {
        let json = to_json(&ev);
        let back = from_json::<EnrichedEvent>(&json).unwrap();
        prop_assert_eq!(&back, &ev);
        // and through protobuf binary as well
        let bytes = prost::Message::encode_to_vec(&back);
        prop_assert_eq!(<EnrichedEvent as prost::Message>::decode(bytes.as_slice()).unwrap(), ev);
    }
}

#[test]
fn attribution_round_trips() {
    let a = Attribution {
        technique_ids: vec!["T1046".into()],
        confidence_score: 0.5,
        status: 1,
        ..Default::default()
    };
    assert_eq!(from_json::<Attribution>(&to_json(&a)).unwrap(), a);
}
