//! A replica builds campaigns from what it observes, and a campaign survives a crash: after a
//! restart from the snapshot and the write-ahead log it continues under the same id at a higher
//! revision, never as a second campaign; a campaign alert fed back is not a member.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, path::Path, sync::Arc};

use attackmesh::proto::{Endpoint, EnrichedEvent, EnrichmentMetadata, Severity, Tactic, TechniqueDetail};
use attackmesh_attack::Kb;
use attackmesh_campaign::CampaignConfig;
use attackmesh_correlation::{CorrelationConfig, Shard, campaigns::Campaigns, service::Replica, store::Store};

const T0: i64 = 1_767_225_600;
const INTRUDER: &str = "203.0.113.45";

fn kb() -> Arc<Kb> {
    Kb::embedded().unwrap()
}

/// What `service` reported about the intruder at `T0 + secs`, showing `techniques`.
fn detection(id: &str, secs: i64, service: &str, dst: &str, techniques: &[&str]) -> EnrichedEvent {
    let kb = kb();
    let techniques = techniques
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
        .collect::<Vec<_>>();
    EnrichedEvent {
        event_id: id.into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: T0 + secs,
            nanos: 0,
        }),
        source_service: service.into(),
        event_type: format!("{service}.alert"),
        source: Some(Endpoint {
            ip: INTRUDER.into(),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: dst.into(),
            ..Default::default()
        }),
        severity: Severity::High as i32,
        confidence_score: 0.8,
        technique_ids: techniques.iter().map(|t| t.id.clone()).collect(),
        metadata: Some(EnrichmentMetadata {
            techniques,
            ..Default::default()
        }),
        revision: 1,
        ..Default::default()
    }
}

fn open(dir: &Path) -> Replica {
    let campaigns = Campaigns::new(kb(), CampaignConfig::default()).unwrap();
    Replica::open_with(
        CorrelationConfig::default().engine().unwrap(),
        Some(campaigns),
        Store::new(dir),
    )
    .unwrap()
}

/// (campaign id, revision) of the alerts waiting for siem-export.
fn pending(replica: &Replica) -> Vec<(String, u32)> {
    replica
        .pending_alerts(100)
        .iter()
        .map(|a| {
            assert!(a.campaign.is_some(), "a campaign alert carries its campaign");
            assert_eq!(a.event_id, a.campaign_id);
            (a.campaign_id.clone(), a.revision)
        })
        .collect()
}

#[test]
fn a_killed_replica_continues_the_intruders_campaign_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::default();
    let replica = open(dir.path());
    replica
        .observe(&[detection("s1", 0, "suricata", "10.0.0.5", &["T1046"])], shard)
        .unwrap();
    let first = pending(&replica);
    assert_eq!(first.len(), 1, "{first:?}");
    let (id, _) = first[0].clone();
    replica
        .observe(&[detection("c1", 60, "cowrie", "10.0.0.7", &["T1110"])], shard)
        .unwrap();
    // siem-export took the first two alerts: the snapshot now holds the builder's state.
    let taken = pending(&replica);
    replica.alerts_delivered(taken.len()).unwrap();
    // Only in the log: a third detector's event.
    replica
        .observe(&[detection("z1", 120, "zeek", "10.0.0.9", &["T1021"])], shard)
        .unwrap();
    let lost = pending(&replica);
    drop(replica); // kill -9: nothing is saved on the way out

    let replica = open(dir.path());
    let replayed = pending(&replica);
    assert_eq!(replayed, lost, "the alert not yet delivered comes back as it was");
    // A resent batch and a campaign alert fed back change nothing.
    let alert = replica.pending_alerts(1).remove(0);
    replica.alerts_delivered(replayed.len()).unwrap();
    replica
        .observe(&[detection("z1", 120, "zeek", "10.0.0.9", &["T1021"]), alert], shard)
        .unwrap();
    assert!(pending(&replica).is_empty(), "{:?}", pending(&replica));
    replica
        .observe(&[detection("s2", 180, "suricata", "10.0.0.9", &["T1041"])], shard)
        .unwrap();
    let later = pending(&replica);

    // Everything siem-export received, in order.
    let all: Vec<(String, u32)> = taken.into_iter().chain(replayed).chain(later).collect();
    let ids: BTreeSet<&String> = all.iter().map(|(i, _)| i).collect();
    assert_eq!(ids, BTreeSet::from([&id]), "one campaign, never a second: {all:?}");
    let revisions: Vec<u32> = all.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        revisions,
        [1, 2, 3, 4],
        "each revision once, growing across the restart"
    );
    let last = replica.pending_alerts(1).remove(0).campaign.unwrap();
    let detectors: BTreeSet<&str> = last.detectors.iter().map(|c| c.source_service.as_str()).collect();
    assert_eq!(detectors, BTreeSet::from(["cowrie", "suricata", "zeek"]), "{last:#?}");
}
