use std::{sync::Arc, time::Duration};

use attackmesh::proto::{
    ActorEvidence, Campaign, CampaignStatus, Endpoint, EnrichedEvent, EnrichmentMetadata, Severity, Tactic,
    TechniqueDetail,
};
use attackmesh_attack::Kb;

use crate::{CampaignBuilder, CampaignConfig, IncidentRule, Snapshot, attack_flow, campaign_alert};

const HOUR: i64 = 3600;
const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn kb() -> Arc<Kb> {
    Kb::embedded().unwrap()
}

fn builder(config: CampaignConfig) -> CampaignBuilder {
    CampaignBuilder::new(kb(), config).unwrap()
}

/// An enriched event at `T0 + secs` from `src` to `dst` showing `techniques`.
fn ev(id: &str, secs: i64, service: &str, src: &str, dst: &str, techniques: &[&str]) -> EnrichedEvent {
    let kb = kb();
    let ep = |ip: &str| {
        (!ip.is_empty()).then(|| Endpoint {
            ip: ip.into(),
            ..Default::default()
        })
    };
    let details = techniques
        .iter()
        .map(|t| {
            let k = kb.technique(t).unwrap();
            TechniqueDetail {
                id: k.id.clone(),
                name: k.name.clone(),
                stix_id: k.stix_id.clone(),
                tactics: kb
                    .tactics_of(k)
                    .map(|x| Tactic {
                        id: x.id.clone(),
                        name: x.name.clone(),
                        shortname: x.shortname.clone(),
                    })
                    .collect(),
                confidence: 0.8,
                ..Default::default()
            }
        })
        .collect();
    EnrichedEvent {
        event_id: id.into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: T0 + secs,
            nanos: 0,
        }),
        source_service: service.into(),
        event_type: format!("{service}.alert"),
        source: ep(src),
        destination: ep(dst),
        severity: Severity::High as i32,
        technique_ids: techniques.iter().map(|t| (*t).to_owned()).collect(),
        confidence_score: if techniques.is_empty() { 0.0 } else { 0.8 },
        metadata: Some(EnrichmentMetadata {
            techniques: details,
            ..Default::default()
        }),
        revision: 1,
        ..Default::default()
    }
}

fn only(updates: &[Campaign]) -> &Campaign {
    assert_eq!(updates.len(), 1, "{updates:#?}");
    &updates[0]
}

#[test]
fn events_sharing_an_address_tell_one_story_and_strangers_another() {
    let mut b = builder(CampaignConfig::default());
    let a = b
        .observe(&ev("e1", 0, "netmon", "203.0.113.45", "", &["T1046"]))
        .unwrap();
    let a2 = b
        .observe(&ev("e2", 60, "decoy", "203.0.113.45", "10.0.5.10", &["T1110.001"]))
        .unwrap();
    let other = b
        .observe(&ev("e3", 90, "netmon", "192.0.2.99", "10.0.9.9", &["T1046"]))
        .unwrap();
    assert_eq!(a, a2);
    assert_ne!(a, other);
    assert!(a.starts_with("campaign--"));
    let updates = b.updates();
    assert_eq!(updates.len(), 2);
    let c = updates.iter().find(|c| c.campaign_id == a).unwrap();
    assert_eq!(c.entities[0].value, "203.0.113.45");
    let detectors: Vec<&str> = c.detectors.iter().map(|d| d.source_service.as_str()).collect();
    assert_eq!(detectors, ["netmon", "decoy"]);
    assert_eq!(c.status, CampaignStatus::Open as i32);
    assert_eq!(c.revision, 1);
}

#[test]
fn tactics_come_out_in_kill_chain_order_whatever_the_arrival_order() {
    let mut b = builder(CampaignConfig::default());
    b.observe(&ev("x1", 0, "edr", "10.0.1.15", "198.51.100.7", &["T1041"]));
    b.observe(&ev("x2", 10, "edr", "10.0.1.15", "", &["T1003.001"]));
    b.observe(&ev("x3", 20, "ids", "198.51.100.7", "10.0.1.15", &["T1595"]));
    let c = b.updates().remove(0);
    let ids: Vec<&str> = c.tactics.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["TA0043", "TA0006", "TA0010"], "{}", c.summary);
    assert!(
        c.summary.contains("Reconnaissance → Credential Access → Exfiltration"),
        "{}",
        c.summary
    );
    let techniques: Vec<&str> = c.techniques.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(techniques, ["T1041", "T1003.001", "T1595"], "first-seen order");
}

#[test]
fn a_linking_event_merges_campaigns_into_the_earliest_and_revisions_only_grow() {
    let mut b = builder(CampaignConfig::default());
    let first = b.observe(&ev("m1", 0, "ids", "203.0.113.45", "", &["T1046"])).unwrap();
    let second = b
        .observe(&ev("m2", 30, "edr", "10.0.1.15", "", &["T1003.001"]))
        .unwrap();
    let mut second_revision = 0;
    for i in 0..3 {
        b.observe(&ev(&format!("bump-{i}"), 40 + i, "edr", "10.0.1.15", "", &[]));
        for c in b.updates().into_iter().filter(|c| c.campaign_id == second) {
            second_revision = c.revision;
        }
    }
    assert_eq!(second_revision, 3);
    let merged = b
        .observe(&ev("m3", 60, "ueba", "203.0.113.45", "10.0.1.15", &["T1078"]))
        .unwrap();
    assert_eq!(merged, first, "the campaign that started first survives");
    let updates = b.updates();
    assert_eq!(updates.len(), 2);
    let survivor = updates.iter().find(|c| c.campaign_id == first).unwrap();
    let absorbed = updates.iter().find(|c| c.campaign_id == second).unwrap();
    assert_eq!(absorbed.merged_into, first);
    assert_eq!(absorbed.status, CampaignStatus::Closed as i32);
    assert_eq!(survivor.merged_ids, std::slice::from_ref(&second));
    assert!(
        survivor.revision > second_revision,
        "higher than anything either campaign emitted"
    );
    assert!(absorbed.revision > second_revision);
    assert_eq!(survivor.detectors.len(), 3);
    // The absorbed campaign is forgotten; its entity now joins the survivor.
    assert_eq!(b.observe(&ev("m4", 90, "edr", "10.0.1.15", "", &[])).unwrap(), first);
    let next = b.updates();
    assert!(only(&next).revision > survivor.revision);
}

#[test]
fn risk_is_severity_times_confidence_per_object_and_the_default_rules_fire() {
    let mut b = builder(CampaignConfig::default());
    // HIGH (80) × 0.8 = 64 per event.
    b.observe(&ev("r1", 0, "ids", "203.0.113.45", "10.0.5.10", &["T1046"]));
    let c = b.updates().remove(0);
    let risk = c.risk.unwrap();
    assert_eq!(risk.score, 64.0);
    assert!(risk.rules.is_empty());
    assert_eq!(risk.objects.len(), 2);
    b.observe(&ev("r2", HOUR, "decoy", "203.0.113.45", "10.0.5.10", &["T1110.001"]));
    let c = b.updates().remove(0);
    let risk = c.risk.unwrap();
    assert_eq!(risk.score, 128.0);
    let fired: Vec<&str> = risk.rules.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(
        fired,
        ["risk_threshold_24h", "risk_threshold_24h"],
        "both objects passed 100"
    );
    // Three tactics from three sources is not enough; a fourth source is.
    b.observe(&ev("r3", 2 * HOUR, "edr", "203.0.113.45", "", &["T1059.004"]));
    let c = b.updates().remove(0);
    assert!(!c.risk.unwrap().rules.iter().any(|r| r.rule == "attack_tactics_7d"));
    b.observe(&ev("r4", 3 * HOUR, "ueba", "203.0.113.45", "", &["T1046"]));
    let c = b.updates().remove(0);
    let hit = c
        .risk
        .unwrap()
        .rules
        .into_iter()
        .find(|r| r.rule == "attack_tactics_7d")
        .unwrap();
    assert_eq!(hit.object, "203.0.113.45");
    assert!(hit.detail.starts_with("3 tactics from 4 sources"), "{}", hit.detail);
}

#[test]
fn risk_outside_the_rule_window_does_not_count() {
    let config = CampaignConfig {
        inactivity: Duration::from_secs(30 * 24 * 3600),
        ..Default::default()
    };
    let mut b = builder(config);
    b.observe(&ev("w1", 0, "ids", "203.0.113.45", "", &["T1046"]));
    b.observe(&ev("w2", 25 * HOUR, "ids", "203.0.113.45", "", &["T1046"]));
    let c = b.updates().remove(0);
    assert_eq!(c.risk.as_ref().unwrap().score, 128.0, "totals keep everything");
    assert!(c.risk.unwrap().rules.is_empty(), "but no 24 h window held more than 64");
}

#[test]
fn inactivity_closes_a_campaign_and_a_later_event_starts_a_new_one() {
    let mut b = builder(CampaignConfig::default());
    let old = b.observe(&ev("i1", 0, "ids", "203.0.113.45", "", &["T1046"])).unwrap();
    b.updates();
    let new = b
        .observe(&ev("i2", 25 * HOUR, "ids", "203.0.113.45", "", &["T1046"]))
        .unwrap();
    assert_ne!(old, new);
    let updates = b.updates();
    let closed = updates.iter().find(|c| c.campaign_id == old).unwrap();
    assert_eq!(closed.status, CampaignStatus::Closed as i32);
    assert_eq!(closed.revision, 2);
    assert_eq!(b.len(), 1, "the closed campaign is forgotten once emitted");
}

#[test]
fn memory_is_bounded_by_open_campaigns_and_event_ids() {
    let config = CampaignConfig {
        max_open_campaigns: 2,
        max_event_ids_per_detector: 3,
        ..Default::default()
    };
    let mut b = builder(config);
    let first = b.observe(&ev("b1", 0, "ids", "192.0.2.1", "", &[])).unwrap();
    b.observe(&ev("b2", 1, "ids", "192.0.2.2", "", &[]));
    b.observe(&ev("b3", 2, "ids", "192.0.2.3", "", &[]));
    let updates = b.updates();
    let evicted = updates.iter().find(|c| c.campaign_id == first).unwrap();
    assert_eq!(evicted.status, CampaignStatus::Closed as i32);
    for i in 0..10 {
        b.observe(&ev(&format!("n{i}"), 10 + i, "ids", "192.0.2.3", "", &[]));
    }
    let c = b
        .updates()
        .into_iter()
        .find(|c| c.entities[0].value == "192.0.2.3")
        .unwrap();
    assert_eq!(c.detectors[0].event_ids, ["b3", "n0", "n1"]);
    assert_eq!(c.detectors[0].event_count, 11);
}

#[test]
fn a_restored_builder_continues_the_same_campaigns_and_revisions() {
    let mut b = builder(CampaignConfig::default());
    let id = b
        .observe(&ev("s1", 0, "ids", "203.0.113.45", "10.0.5.10", &["T1046"]))
        .unwrap();
    b.observe(&ev("s2", 60, "decoy", "203.0.113.45", "10.0.5.10", &["T1110.001"]));
    let before = b.updates().remove(0);
    let stored = serde_json::to_string(&b.snapshot()).unwrap();
    drop(b);

    let snapshot: Snapshot = serde_json::from_str(&stored).unwrap();
    let mut b = CampaignBuilder::restore(kb(), CampaignConfig::default(), snapshot).unwrap();
    // A redelivered event is recognised: no double risk.
    assert_eq!(
        b.observe(&ev("s2", 60, "decoy", "203.0.113.45", "10.0.5.10", &["T1110.001"])),
        Some(id.clone())
    );
    assert_eq!(
        b.observe(&ev("s3", 120, "edr", "10.0.5.10", "", &["T1059.004"])),
        Some(id.clone())
    );
    let after = only(&b.updates()).clone();
    assert_eq!(after.campaign_id, id);
    assert_eq!(after.revision, before.revision + 1);
    assert_eq!(
        after.risk.unwrap().objects[0].risk_score,
        192.0,
        "64 × 3 events on 10.0.5.10"
    );
    assert_eq!(b.len(), 1, "no duplicate campaign");
}

#[test]
fn restore_refuses_a_snapshot_of_another_format() {
    let b = builder(CampaignConfig::default());
    let mut value = serde_json::to_value(b.snapshot()).unwrap();
    value["format"] = 99.into();
    let snapshot: Snapshot = serde_json::from_value(value).unwrap();
    let err = CampaignBuilder::restore(kb(), CampaignConfig::default(), snapshot).unwrap_err();
    assert!(err.to_string().contains("format 99"), "{err}");
}

#[test]
fn never_link_values_do_not_join_campaigns() {
    let config = CampaignConfig {
        never_link: vec!["10.0.0.2".into()],
        ..Default::default()
    };
    let mut b = builder(config);
    let a = b.observe(&ev("d1", 0, "dns", "10.0.1.20", "10.0.0.2", &[])).unwrap();
    let c = b.observe(&ev("d2", 5, "dns", "10.0.7.7", "10.0.0.2", &[])).unwrap();
    assert_ne!(a, c);
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let mut config = CampaignConfig::default();
    config.rules.push(IncidentRule::defaults().remove(0));
    let err = CampaignBuilder::new(kb(), config).unwrap_err();
    assert!(err.to_string().contains("risk_threshold_24h is used twice"), "{err}");
    let config: Result<CampaignConfig, _> = serde_json::from_str(r#"{"inactivity": "1h", "bogus": 1}"#);
    assert!(config.is_err());
    let config: CampaignConfig = serde_json::from_str(r#"{"inactivity": "0s"}"#).unwrap();
    assert!(config.validate().is_err());
}

#[test]
fn events_without_entities_and_campaign_alerts_are_not_folded_in() {
    let mut b = builder(CampaignConfig::default());
    assert_eq!(b.observe(&ev("z1", 0, "ids", "", "", &["T1046"])), None);
    b.observe(&ev("z2", 0, "ids", "203.0.113.45", "", &["T1046"]));
    let c = b.updates().remove(0);
    let alert = campaign_alert(&kb(), &c);
    assert_eq!(alert.event_id, c.campaign_id);
    assert_eq!(alert.revision, c.revision);
    assert_eq!(b.observe(&alert), None);
    assert!(b.updates().is_empty());
}

#[test]
fn a_few_generic_techniques_give_weak_candidates_at_most() {
    let mut b = builder(CampaignConfig::default());
    b.observe(&ev("g1", 0, "ids", "203.0.113.45", "", &["T1046", "T1110.001"]));
    let c = b.updates().remove(0);
    assert_ne!(c.actor_evidence, ActorEvidence::Strong as i32);
    if !c.candidate_groups.is_empty() {
        assert!(c.summary.contains("(weak)"), "{}", c.summary);
    }
}

#[test]
fn the_attack_flow_orders_actions_by_time_and_points_at_real_attack_patterns() {
    let mut b = builder(CampaignConfig::default());
    b.observe(&ev("f1", 0, "ids", "203.0.113.45", "10.0.5.10", &["T1046"]));
    b.observe(&ev("f2", 60, "decoy", "203.0.113.45", "10.0.5.10", &["T1110.001"]));
    let c = b.updates().remove(0);
    let kb = kb();
    let flow = attack_flow(&kb, &c);
    let objects = flow["objects"].as_array().unwrap();
    let flows: Vec<_> = objects.iter().filter(|o| o["type"] == "attack-flow").collect();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["scope"], "incident");
    let actions: Vec<_> = objects.iter().filter(|o| o["type"] == "attack-action").collect();
    assert_eq!(actions[0]["technique_id"], "T1046");
    assert_eq!(actions[1]["technique_id"], "T1110.001");
    assert_eq!(flows[0]["start_refs"][0], actions[0]["id"]);
    assert_eq!(actions[0]["effect_refs"][0], actions[1]["id"]);
    assert_eq!(
        actions[1]["technique_ref"],
        kb.technique("T1110.001").unwrap().stix_id.as_str()
    );
    assert_eq!(actions[1]["tactic_id"], "TA0006");
    assert_eq!(actions[0]["execution_start"], "2026-01-01T00:00:00.000Z");
    let asset = objects.iter().find(|o| o["type"] == "attack-asset").unwrap();
    assert_eq!(asset["name"], "10.0.5.10");
    assert_eq!(actions[0]["asset_refs"][0], asset["id"]);
    // The same campaign keeps its flow's object ids from revision to revision.
    b.observe(&ev("f3", 120, "edr", "10.0.5.10", "", &["T1059.004"]));
    let again = attack_flow(&kb, &b.updates().remove(0));
    assert_eq!(again["objects"][1]["id"], flow["objects"][1]["id"]);
}

#[test]
fn an_event_redelivered_after_a_merge_still_counts_once() {
    let mut b = builder(CampaignConfig::default());
    let first = b.observe(&ev("q1", 0, "ids", "203.0.113.45", "", &["T1046"])).unwrap();
    b.observe(&ev("q2", 10, "edr", "10.0.1.15", "", &["T1003.001"]));
    b.observe(&ev("q3", 20, "ueba", "203.0.113.45", "10.0.1.15", &[]));
    b.updates();
    assert_eq!(
        b.observe(&ev("q2", 10, "edr", "10.0.1.15", "", &["T1003.001"])),
        Some(first)
    );
    assert!(b.updates().is_empty(), "nothing changed");
    let c = b.campaigns().remove(0);
    assert_eq!(c.detectors.iter().map(|d| d.event_count).sum::<u32>(), 3);
}
