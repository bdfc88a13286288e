use attackmesh::proto::{ActorEvidence, Endpoint, EnrichedEvent};
use attackmesh_campaign::{CampaignBuilder, CampaignConfig, campaign_alert};
use attackmesh_testkit::fixtures;
use chrono::Utc;
use serde_json::Value;

use crate::stix::{StixObject, StixOptions, stix_objects_for, validate::check};

fn alert(strong: bool) -> EnrichedEvent {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let mut b = CampaignBuilder::new(kb.clone(), CampaignConfig::default()).unwrap();
    for i in 1..=2 {
        let mut ev = fixtures::event(i);
        ev.source = Some(Endpoint {
            ip: "203.0.113.45".into(),
            ..Default::default()
        });
        b.observe(&ev);
    }
    let mut campaign = b.updates().remove(0);
    if strong {
        campaign.actor_evidence = ActorEvidence::Strong as i32;
        campaign.candidate_groups[0].score = 0.9;
    }
    campaign_alert(&kb, &campaign)
}

fn of_type<'a>(objects: &'a [StixObject], ty: &str) -> Vec<&'a StixObject> {
    objects.iter().filter(|o| o.object_type() == ty).collect()
}

#[test]
fn a_campaign_alert_becomes_a_stix_campaign_using_the_real_attack_patterns() {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let alert = alert(false);
    let objects = stix_objects_for(&alert, &kb, &StixOptions::default());
    let campaigns = of_type(&objects, "campaign");
    assert_eq!(campaigns.len(), 1);
    assert_eq!(campaigns[0].id(), alert.event_id);
    let uses: Vec<&str> = of_type(&objects, "relationship")
        .iter()
        .filter(|r| r.str("relationship_type") == "uses")
        .map(|r| r.str("target_ref"))
        .collect();
    assert!(
        uses.contains(&kb.technique("T1110.001").unwrap().stix_id.as_str()),
        "{uses:?}"
    );
    assert!(
        !of_type(&objects, "relationship")
            .iter()
            .any(|r| r.str("relationship_type") == "attributed-to"),
        "weak evidence attributes nothing"
    );
    assert_eq!(of_type(&objects, "attack-flow").len(), 1);
    assert!(!of_type(&objects, "attack-action").is_empty());
    assert!(of_type(&objects, "indicator").is_empty() && of_type(&objects, "sighting").is_empty());
    for object in &objects {
        let value = Value::Object(object.0.clone());
        assert!(check(&value, Utc::now()).is_ok(), "{value}");
    }
}

#[test]
fn only_strong_evidence_attributes_the_campaign_to_a_group() {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let alert = alert(true);
    let group = &alert.campaign.as_ref().unwrap().candidate_groups[0];
    let objects = stix_objects_for(&alert, &kb, &StixOptions::default());
    let attributed: Vec<&str> = of_type(&objects, "relationship")
        .iter()
        .filter(|r| r.str("relationship_type") == "attributed-to")
        .map(|r| r.str("target_ref"))
        .collect();
    assert_eq!(attributed, [group.stix_id.as_str()]);
}
