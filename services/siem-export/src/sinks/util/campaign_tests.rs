//! A campaign alert in the ECS and HEC shapes.

use attackmesh::proto::{Endpoint, EnrichedEvent};
use attackmesh_campaign::{CampaignBuilder, CampaignConfig, campaign_alert};
use attackmesh_testkit::fixtures;
use serde_json::Value;

use super::{Original, ecs, hec};

/// The alert of a campaign of two fixture events from 203.0.113.45 against 10.0.5.10 / decoy-01.
fn alert() -> EnrichedEvent {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let mut b = CampaignBuilder::new(kb.clone(), CampaignConfig::default()).unwrap();
    for i in 1..=2 {
        let mut ev = fixtures::event(i);
        ev.source = Some(Endpoint {
            ip: "203.0.113.45".into(),
            ..Default::default()
        });
        ev.destination = Some(Endpoint {
            ip: "10.0.5.10".into(),
            hostname: "decoy-01".into(),
            user: "root".into(),
            ..Default::default()
        });
        b.observe(&ev);
    }
    campaign_alert(&kb, &b.updates().remove(0))
}

#[test]
fn the_ecs_document_is_an_alert_with_the_campaign_its_entities_and_its_techniques() {
    let alert = alert();
    let doc = ecs::document(&alert, chrono::Utc::now(), Original::Keep);
    assert_eq!(doc["event"]["kind"], "alert");
    let campaign = &doc["attackmesh"]["campaign"];
    assert_eq!(campaign["id"], alert.event_id.as_str());
    assert_eq!(campaign["revision"], 1);
    assert_eq!(campaign["status"], "open");
    assert_eq!(campaign["entities"][0]["value"], "203.0.113.45");
    let related_ip: Vec<&str> = doc["related"]["ip"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        related_ip.contains(&"203.0.113.45") && related_ip.contains(&"10.0.5.10"),
        "{related_ip:?}"
    );
    assert_eq!(doc["related"]["hosts"][0], "decoy-01");
    assert_eq!(doc["related"]["user"][0], "root");
    assert!(
        doc["threat"]["technique"]["id"]
            .as_array()
            .unwrap()
            .contains(&Value::from("T1110")),
        "{}",
        doc["threat"]
    );
}

#[test]
fn the_hec_event_carries_splunk_rba_fields() {
    let alert = alert();
    let envelope: Value = serde_json::from_slice(&hec::envelope_bytes(&alert, &hec::Metadata::default())).unwrap();
    let event = &envelope["event"];
    assert_eq!(event["event_id"], alert.event_id.as_str());
    let objects: Vec<&str> = event["risk_object"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        objects.contains(&"10.0.5.10") && objects.contains(&"root"),
        "{objects:?}"
    );
    let at = |v: &str| objects.iter().position(|o| *o == v).unwrap();
    assert_eq!(event["risk_object_type"][at("root")], "user");
    assert_eq!(event["risk_object_type"][at("10.0.5.10")], "system");
    assert_eq!(event["threat_object"], serde_json::json!(["203.0.113.45"]));
    assert_eq!(event["threat_object_type"], serde_json::json!(["ip_address"]));
    assert!(event["risk_score"].as_f64().unwrap() > 0.0);
    assert!(event["annotations"]["mitre_attack"]["mitre_technique_id"].is_array());
    assert_eq!(event["campaign"]["id"], alert.event_id.as_str());
}

#[test]
fn an_ordinary_event_has_no_campaign_fields() {
    let ev = fixtures::event(1);
    let envelope: Value = serde_json::from_slice(&hec::envelope_bytes(&ev, &hec::Metadata::default())).unwrap();
    assert!(envelope["event"].get("risk_object").is_none());
    assert!(
        ecs::document(&ev, chrono::Utc::now(), Original::Keep)["attackmesh"]
            .get("campaign")
            .is_none()
    );
}
