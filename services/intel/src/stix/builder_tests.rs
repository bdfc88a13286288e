use attackmesh::proto::{AttributionStatus, EnrichedEvent, EnrichmentMetadata, Indicator, IndicatorType, ThreatActor};
use chrono::TimeZone;
use serde_json::json;

use super::*;

fn kb() -> std::sync::Arc<Kb> {
    Kb::embedded().expect("embedded kb")
}

fn event(indicators: Vec<Indicator>, techniques: &[&str], actors: Vec<ThreatActor>) -> EnrichedEvent {
    EnrichedEvent {
        event_id: "e1".into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: 1_780_000_000,
            nanos: 0,
        }),
        source_service: "suricata-edge-01".into(),
        event_type: "suricata.alert".into(),
        technique_ids: techniques.iter().map(|t| t.to_string()).collect(),
        confidence_score: 0.8,
        related_indicators: indicators,
        metadata: Some(EnrichmentMetadata {
            threat_actors: actors,
            ..Default::default()
        }),
        attribution_status: AttributionStatus::Ok as i32,
        revision: 1,
        ..Default::default()
    }
}

fn ip(v: &str) -> Indicator {
    Indicator {
        r#type: IndicatorType::Ipv4 as i32,
        value: v.into(),
    }
}

fn options() -> StixOptions {
    StixOptions {
        now: Some(chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()),
        ..Default::default()
    }
}

fn of_type<'a>(objects: &'a [StixObject], t: &str) -> Vec<&'a StixObject> {
    objects.iter().filter(|o| o.object_type() == t).collect()
}

#[test]
fn indicators_carry_attack_labels_phases_and_references() {
    let kb = kb();
    let objects = stix_objects_for(&event(vec![ip("203.0.113.5")], &["T1110.001"], vec![]), &kb, &options());
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind.len(), 1);
    let i = &ind[0].0;
    assert_eq!(i["pattern"], json!("[ipv4-addr:value = '203.0.113.5']"));
    assert_eq!(i["pattern_type"], json!("stix"));
    assert_eq!(i["labels"], json!(["mitre_attack:T1110.001"]));
    assert_eq!(
        i["kill_chain_phases"],
        json!([{"kill_chain_name": "mitre-attack", "phase_name": "credential-access"}])
    );
    assert_eq!(i["external_references"][0]["source_name"], json!("mitre-attack"));
    assert_eq!(i["external_references"][0]["external_id"], json!("T1110.001"));
    assert!(
        i["external_references"][0]["url"]
            .as_str()
            .unwrap()
            .contains("T1110/001")
    );
    assert_eq!(i["confidence"], json!(80));
    assert_eq!(i["valid_from"], json!("2026-05-28T20:26:40.000Z"));
    assert_eq!(i["created_by_ref"], json!(Producer::default().id()));
    assert_eq!(
        i["object_marking_refs"],
        json!(["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"])
    );
    let technique = kb.technique("T1110.001").unwrap();
    let rels = of_type(&objects, "relationship");
    assert_eq!(rels.len(), 1);
    assert_eq!(rels[0].0["relationship_type"], json!("indicates"));
    assert_eq!(rels[0].0["target_ref"], json!(technique.stix_id));
    assert_eq!(rels[0].0["source_ref"], json!(ind[0].id()));
    let sightings = of_type(&objects, "sighting");
    assert_eq!(sightings[0].0["count"], json!(1));
    assert_eq!(sightings[0].0["sighting_of_ref"], json!(ind[0].id()));
}

#[test]
fn the_same_observable_is_the_same_object() {
    let kb = kb();
    let a = stix_objects_for(
        &event(vec![ip("203.0.113.5"), ip("203.0.113.5")], &["T1046"], vec![]),
        &kb,
        &options(),
    );
    let b = stix_objects_for(&event(vec![ip("203.0.113.5")], &["T1110"], vec![]), &kb, &options());
    assert_eq!(of_type(&a, "indicator").len(), 1, "duplicates within an event collapse");
    assert_eq!(of_type(&a, "sighting")[0].0["count"], json!(2));
    assert_eq!(of_type(&a, "indicator")[0].id(), of_type(&b, "indicator")[0].id());
}

#[test]
fn unknown_techniques_are_dropped_and_revoked_ones_replaced() {
    let kb = kb();
    let objects = stix_objects_for(
        &event(vec![ip("198.51.100.7")], &["T9999", "T1046"], vec![]),
        &kb,
        &options(),
    );
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind[0].0["labels"], json!(["mitre_attack:T1046"]));
    assert_eq!(of_type(&objects, "relationship").len(), 1);
    let revoked = kb
        .techniques()
        .find(|t| t.revoked && t.revoked_by.is_some())
        .expect("a revoked technique");
    let links = technique_links(&kb, &[revoked.id.as_str()]);
    assert_eq!(links.len(), 1);
    assert_ne!(links[0].id, revoked.id);
}

#[test]
fn strong_actors_link_their_intrusion_set_weak_ones_do_not() {
    let kb = kb();
    let group = kb.group("G0016").expect("APT29");
    let actor = |score| ThreatActor {
        group_id: "G0016".into(),
        score,
        ..Default::default()
    };
    let strong = stix_objects_for(
        &event(vec![ip("203.0.113.9")], &["T1046"], vec![actor(0.7)]),
        &kb,
        &options(),
    );
    let targets: Vec<_> = of_type(&strong, "relationship")
        .iter()
        .map(|r| r.str("target_ref").to_owned())
        .collect();
    assert!(targets.contains(&group.stix_id), "{targets:?}");
    let weak = stix_objects_for(
        &event(vec![ip("203.0.113.9")], &["T1046"], vec![actor(0.3)]),
        &kb,
        &options(),
    );
    assert_eq!(of_type(&weak, "relationship").len(), 1);
}

#[test]
fn no_technique_means_an_anomaly_without_attack_properties() {
    let kb = kb();
    let objects = stix_objects_for(&event(vec![ip("203.0.113.10")], &[], vec![]), &kb, &options());
    let i = &of_type(&objects, "indicator")[0].0;
    assert_eq!(i["indicator_types"], json!(["anomalous-activity"]));
    assert!(i.get("labels").is_none() && i.get("kill_chain_phases").is_none());
    assert!(of_type(&objects, "relationship").is_empty());
}

#[test]
fn invalid_indicators_are_skipped_and_markings_follow_the_options() {
    let kb = kb();
    let opts = StixOptions {
        tlp: Tlp::Green,
        tlp_version: TlpVersion::V1,
        sightings: false,
        ..options()
    };
    let objects = stix_objects_for(
        &event(vec![ip("not-an-ip"), ip("192.0.2.1")], &["T1046"], vec![]),
        &kb,
        &opts,
    );
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind.len(), 1);
    assert_eq!(
        ind[0].0["object_marking_refs"],
        json!(["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"])
    );
    assert!(of_type(&objects, "sighting").is_empty());
    let base = opts.base_objects();
    assert_eq!(base[0].object_type(), "identity");
    assert_eq!(base[1].id(), "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da");
}

#[test]
fn attackmesh_ids_are_recognised_from_content() {
    let options = options();
    let producer = options.producer.id();
    let objects = stix_objects_for(&event(vec![ip("203.0.113.1")], &["T1046"], Vec::new()), &kb(), &options);
    assert_eq!(of_type(&objects, "relationship").len(), 1);
    for object in &objects {
        assert!(has_attackmesh_id(object, &producer), "{object:?}");
        let mut other = object.clone();
        other.set("pattern", "[ipv4-addr:value = '198.51.100.1']");
        other.set("source_ref", "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f");
        other.set("sighting_of_ref", "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f");
        assert!(!has_attackmesh_id(&other, &producer), "{other:?}");
    }
    assert!(
        !has_attackmesh_id(&options.producer.object(), &producer),
        "only built objects"
    );
}
