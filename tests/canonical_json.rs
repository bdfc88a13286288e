//! The direct canonical writer against the pbjson-generated serde path it replaced (the oracle,
//! kept here only): byte for byte over every real sample event and over arbitrary events with
//! hostile strings, extreme numbers and timestamps; and where the oracle has no answer (enum
//! values the schema does not know, timestamps chrono cannot represent), still one JSON document.

use attackmesh::json::write_enriched_event;
use attackmesh::proto::{
    Campaign, CampaignEntity, CampaignRisk, CampaignTechnique, DetectorEvents, Endpoint, EnrichedEvent,
    EnrichmentMetadata, Evidence, Indicator, Process, RiskRuleHit, Tactic, TechniqueDetail, ThreatActor,
};
use attackmesh_testkit::data;
use pbjson_types::Timestamp;
use proptest::prelude::*;

/// What the pbjson-generated serde implementations write, or `None` where they fail.
fn oracle(event: &EnrichedEvent, with_original: bool) -> Option<Vec<u8>> {
    if with_original {
        serde_json::to_vec(event).ok()
    } else {
        serde_json::to_vec(&EnrichedEvent {
            original: String::new(),
            ..event.clone()
        })
        .ok()
    }
}

fn written(event: &EnrichedEvent, with_original: bool) -> Vec<u8> {
    let mut out = b"kept ".to_vec();
    write_enriched_event(event, with_original, &mut out);
    assert!(out.starts_with(b"kept "), "appends to what the buffer holds");
    out.split_off(5)
}

#[test]
fn the_writer_writes_what_pbjson_wrote_for_every_real_event() {
    let events = data::real_attributed_samples();
    for ev in &events {
        for with_original in [true, false] {
            let expected = oracle(ev, with_original).expect("real events encode");
            assert_eq!(
                String::from_utf8_lossy(&written(ev, with_original)),
                String::from_utf8_lossy(&expected),
                "{} (original: {with_original})",
                ev.event_id
            );
        }
    }
    eprintln!("{} events compared", events.len());
}

#[test]
fn what_pbjson_cannot_encode_is_still_one_document() {
    let ev = EnrichedEvent {
        event_id: "e-1".into(),
        severity: 99,
        timestamp: Some(Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        }),
        enriched_at: Some(Timestamp { seconds: 0, nanos: -1 }),
        related_indicators: vec![Indicator {
            r#type: -3,
            value: "x".into(),
        }],
        ..EnrichedEvent::default()
    };
    assert!(oracle(&ev, true).is_none());
    let doc: serde_json::Value = serde_json::from_slice(&written(&ev, true)).unwrap();
    assert_eq!(doc["severity"], 99, "an unknown enum value is written as its number");
    assert_eq!(doc["related_indicators"][0]["type"], -3);
    assert!(doc["timestamp"].is_null(), "an unrepresentable timestamp is null");
    assert!(doc["enriched_at"].is_null());
}

#[test]
fn leap_seconds_and_far_years_are_written_as_chrono_writes_them() {
    for (seconds, nanos) in [
        (1_483_228_799, 1_500_000_000),
        (-62_167_219_201, 0),
        (253_402_300_800, 5),
        (-377_705_116_800, 1_000),
        (0, 999_999_999),
    ] {
        let ev = EnrichedEvent {
            timestamp: Some(Timestamp { seconds, nanos }),
            ..EnrichedEvent::default()
        };
        let expected = oracle(&ev, true).expect("chrono represents it");
        assert_eq!(written(&ev, true), expected, "{seconds} {nanos}");
    }
}

/// Strings from every plane, weighted towards what needs escaping.
fn hostile() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => (0u8..0x20).prop_map(char::from),
        2 => prop::sample::select(vec!['"', '\\', '/', '\u{7f}', '\u{80}', '\u{2028}', '\u{fffd}', '\u{10ffff}']),
        3 => any::<char>(),
        2 => (0x20u8..0x7f).prop_map(char::from),
    ];
    prop::collection::vec(ch, 0..24).prop_map(String::from_iter)
}

fn strs() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(hostile(), 0..3)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            1e21,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]),
        (0u32..=1000).prop_map(|n| f64::from(n) / 1000.0),
    ]
}

/// Known values weighted over unknown ones.
fn enum_value(known: i32) -> impl Strategy<Value = i32> {
    prop_oneof![80 => 0..known, 1 => any::<i32>()]
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    let seconds = prop_oneof![
        4 => -62_167_219_300i64..=-62_167_219_100,
        8 => 0i64..4_102_444_800,
        4 => 253_402_300_700i64..=253_402_300_900,
        4 => -400_000_000_000i64..400_000_000_000,
        4 => (0i64..10_000).prop_map(|d| d * 86_400 + 86_399),
        1 => any::<i64>(),
    ];
    let nanos = prop_oneof![
        4 => Just(0),
        4 => (0i32..1000).prop_map(|n| n * 1_000_000),
        4 => (0i32..1_000_000).prop_map(|n| n * 1000),
        4 => 0i32..1_000_000_000,
        1 => 1_000_000_000i32..2_000_000_000,
        1 => any::<i32>(),
    ];
    proptest::option::of((seconds, nanos).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }))
}

fn endpoint() -> impl Strategy<Value = Option<Endpoint>> {
    let process = (any::<u32>(), hostile(), hostile(), hostile(), hostile()).prop_map(
        |(pid, name, executable, command_line, parent_name)| Process {
            pid,
            name,
            executable,
            command_line,
            parent_name,
        },
    );
    let endpoint = (
        hostile(),
        any::<u32>(),
        hostile(),
        hostile(),
        proptest::option::of(process),
    );
    proptest::option::of(endpoint.prop_map(|(ip, port, hostname, user, process)| Endpoint {
        ip,
        port,
        hostname,
        user,
        process,
    }))
}

fn metadata() -> impl Strategy<Value = Option<EnrichmentMetadata>> {
    let tactic = (hostile(), hostile(), hostile()).prop_map(|(id, name, shortname)| Tactic { id, name, shortname });
    let evidence =
        (enum_value(3), hostile(), hostile(), float()).prop_map(|(source, rule_id, detail, confidence)| Evidence {
            source,
            rule_id,
            detail,
            confidence,
        });
    let technique = (
        (hostile(), hostile(), prop::collection::vec(tactic, 0..3), hostile()),
        (float(), prop::collection::vec(evidence, 0..3), hostile(), hostile()),
    )
        .prop_map(
            |((id, name, tactics, url), (confidence, evidence, stix_id, replaces_revoked_id))| TechniqueDetail {
                id,
                name,
                tactics,
                url,
                confidence,
                evidence,
                stix_id,
                replaces_revoked_id,
            },
        );
    let actor = (hostile(), hostile(), strs(), float(), strs(), hostile()).prop_map(
        |(group_id, name, aliases, score, matched_techniques, stix_id)| ThreatActor {
            group_id,
            name,
            aliases,
            score,
            matched_techniques,
            stix_id,
        },
    );
    let metadata = (
        prop::collection::vec(technique, 0..3),
        prop::collection::vec(actor, 0..3),
        hostile(),
    );
    proptest::option::of(
        metadata.prop_map(|(techniques, threat_actors, rule_pack_version)| EnrichmentMetadata {
            techniques,
            threat_actors,
            rule_pack_version,
        }),
    )
}

fn entity() -> impl Strategy<Value = CampaignEntity> {
    (enum_value(4), hostile(), float(), any::<u32>(), timestamp()).prop_map(
        |(r#type, value, risk_score, event_count, first_seen)| CampaignEntity {
            r#type,
            value,
            risk_score,
            event_count,
            first_seen,
        },
    )
}

fn campaign() -> impl Strategy<Value = Option<Campaign>> {
    let detector = (hostile(), enum_value(5), strs(), any::<u32>()).prop_map(
        |(source_service, detector_kind, event_ids, event_count)| DetectorEvents {
            source_service,
            detector_kind,
            event_ids,
            event_count,
        },
    );
    let technique = (
        (hostile(), hostile(), strs(), timestamp()),
        (hostile(), any::<u32>(), hostile(), hostile()),
    )
        .prop_map(
            |((id, name, tactic_ids, first_seen), (stix_id, event_count, first_event_id, first_asset))| {
                CampaignTechnique {
                    id,
                    name,
                    tactic_ids,
                    first_seen,
                    stix_id,
                    event_count,
                    first_event_id,
                    first_asset,
                }
            },
        );
    let rule = (hostile(), enum_value(4), hostile(), hostile(), timestamp()).prop_map(
        |(rule, object_type, object, detail, fired_at)| RiskRuleHit {
            rule,
            object_type,
            object,
            detail,
            fired_at,
        },
    );
    let risk = (
        float(),
        prop::collection::vec(entity(), 0..2),
        prop::collection::vec(rule, 0..2),
        hostile(),
    )
        .prop_map(|(score, objects, rules, formula)| CampaignRisk {
            score,
            objects,
            rules,
            formula,
        });
    let tactic = (hostile(), hostile(), hostile()).prop_map(|(id, name, shortname)| Tactic { id, name, shortname });
    let campaign = (
        (
            hostile(),
            any::<u32>(),
            enum_value(3),
            prop::collection::vec(entity(), 0..2),
        ),
        (timestamp(), timestamp(), prop::collection::vec(detector, 0..2)),
        (
            prop::collection::vec(technique, 0..2),
            prop::collection::vec(tactic, 0..2),
        ),
        (proptest::option::of(risk), metadata(), enum_value(4)),
        (strs(), hostile(), hostile(), hostile()),
    );
    proptest::option::of(campaign.prop_map(
        |(
            (campaign_id, revision, status, entities),
            (first_seen, last_seen, detectors),
            (techniques, tactics),
            (risk, groups, actor_evidence),
            (merged_ids, summary, attack_version, merged_into),
        )| Campaign {
            campaign_id,
            revision,
            status,
            entities,
            first_seen,
            last_seen,
            detectors,
            techniques,
            tactics,
            risk,
            candidate_groups: groups.map(|m| m.threat_actors).unwrap_or_default(),
            actor_evidence,
            merged_ids,
            summary,
            attack_version,
            merged_into,
        },
    ))
}

fn enriched() -> impl Strategy<Value = EnrichedEvent> {
    let indicator = (enum_value(14), hostile()).prop_map(|(r#type, value)| Indicator { r#type, value });
    (
        (hostile(), timestamp(), hostile(), enum_value(5), hostile()),
        (endpoint(), endpoint(), enum_value(5), hostile(), strs()),
        (
            float(),
            prop::collection::vec(indicator, 0..3),
            metadata(),
            hostile(),
            enum_value(4),
        ),
        (
            prop::collection::btree_map(hostile(), hostile(), 0..4),
            hostile(),
            hostile(),
            timestamp(),
        ),
        (any::<u32>(), hostile(), hostile(), campaign()),
    )
        .prop_map(
            |(
                (event_id, timestamp, source_service, detector_kind, event_type),
                (source, destination, severity, description, technique_ids),
                (confidence_score, related_indicators, metadata, attack_version, attribution_status),
                (attributes, original, original_format, enriched_at),
                (revision, submitted_by, campaign_id, campaign),
            )| EnrichedEvent {
                event_id,
                timestamp,
                source_service,
                detector_kind,
                event_type,
                source,
                destination,
                severity,
                description,
                technique_ids,
                confidence_score,
                related_indicators,
                metadata,
                attack_version,
                attribution_status,
                attributes,
                original,
                original_format,
                enriched_at,
                revision,
                submitted_by,
                campaign_id,
                campaign: campaign.map(Box::new),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_writer_writes_what_pbjson_writes(ev in enriched(), with_original in any::<bool>()) {
        let out = written(&ev, with_original);
        match oracle(&ev, with_original) {
            Some(expected) => {
                prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));
            }
            None => {
                serde_json::from_slice::<serde_json::Value>(&out).unwrap();
            }
        }
    }
}
