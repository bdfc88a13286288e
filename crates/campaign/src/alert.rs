//! A campaign as an alert of its own: the [`EnrichedEvent`] that carries it through
//! siem-export's durable queues to every sink. Its `event_id` is the campaign id and its
//! `revision` the campaign's, so every sink that updates in place (Elasticsearch `_id`, the
//! file sinks' latest-revision readers, intel's STIX versions) replaces the older alert.

use std::time::{SystemTime, UNIX_EPOCH};

use attackmesh::proto::{
    AttributionStatus, Campaign, DetectorKind, Endpoint, EnrichedEvent, EnrichmentMetadata, EntityType, Severity,
    TechniqueDetail,
};
use attackmesh_attack::Kb;

use crate::CAMPAIGN_EVENT_TYPE;

/// `source_service` of campaign alerts.
pub const CAMPAIGN_SOURCE: &str = "attackmesh-campaigns";

/// The alert that delivers `campaign` (severity from its risk and incident rules).
pub fn campaign_alert(kb: &Kb, campaign: &Campaign) -> EnrichedEvent {
    let risk = campaign.risk.as_ref();
    let score = risk.map_or(0.0, |r| r.score);
    let fired = risk.is_some_and(|r| !r.rules.is_empty());
    let severity = match (fired, score) {
        (true, s) if s >= 200.0 => Severity::Critical,
        (true, _) => Severity::High,
        (false, s) if s >= 50.0 => Severity::Medium,
        _ => Severity::Low,
    };
    let ip = |kind: EntityType| {
        campaign
            .entities
            .iter()
            .find(|e| e.r#type == kind as i32)
            .map(|e| e.value.clone())
            .unwrap_or_default()
    };
    let techniques = campaign
        .techniques
        .iter()
        .map(|t| {
            let tactics = kb
                .technique(&t.id)
                .map(|k| {
                    kb.tactics_of(k)
                        .map(|x| attackmesh::proto::Tactic {
                            id: x.id.clone(),
                            name: x.name.clone(),
                            shortname: x.shortname.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            TechniqueDetail {
                id: t.id.clone(),
                name: t.name.clone(),
                tactics,
                url: kb.technique(&t.id).map(|k| k.url.clone()).unwrap_or_default(),
                stix_id: t.stix_id.clone(),
                ..Default::default()
            }
        })
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    EnrichedEvent {
        event_id: campaign.campaign_id.clone(),
        timestamp: campaign.last_seen,
        source_service: CAMPAIGN_SOURCE.into(),
        detector_kind: DetectorKind::Other as i32,
        event_type: CAMPAIGN_EVENT_TYPE.into(),
        source: Some(Endpoint {
            ip: ip(EntityType::Ip),
            hostname: ip(EntityType::Host),
            user: ip(EntityType::User),
            ..Default::default()
        }),
        severity: severity as i32,
        description: campaign.summary.clone(),
        technique_ids: campaign.techniques.iter().map(|t| t.id.clone()).collect(),
        confidence_score: campaign.candidate_groups.first().map_or(0.0, |g| g.score),
        metadata: Some(EnrichmentMetadata {
            techniques,
            threat_actors: campaign.candidate_groups.clone(),
            rule_pack_version: String::new(),
        }),
        attack_version: campaign.attack_version.clone(),
        attribution_status: AttributionStatus::Ok as i32,
        enriched_at: Some(pbjson_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
        revision: campaign.revision,
        campaign_id: campaign.campaign_id.clone(),
        campaign: Some(Box::new(campaign.clone())),
        ..Default::default()
    }
}
