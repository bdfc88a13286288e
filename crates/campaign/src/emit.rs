//! Turns a campaign's state into the contract's [`Campaign`] message: entities and risk
//! objects, tactics in kill-chain order, candidate groups ranked from the whole campaign, and
//! the one-line summary.

use attackmesh::proto::{
    ActorEvidence, Campaign, CampaignEntity, CampaignRisk, CampaignStatus, CampaignTechnique, DetectorEvents,
    RiskRuleHit, Tactic,
};
use attackmesh_attack::campaigns::{self, CampaignEvidence};

use crate::{
    CampaignBuilder,
    entity::kind_name,
    state::{CampaignState, EntityState},
};

/// How one event's risk is computed, reported with every campaign.
pub const RISK_FORMULA: &str = "severity_weight × confidence_score, summed per risk object";

pub(crate) fn to_proto(b: &CampaignBuilder, c: &CampaignState) -> Campaign {
    let mut tactic_ids: Vec<&str> = c
        .techniques
        .iter()
        .flat_map(|t| t.tactic_ids.iter().map(String::as_str))
        .collect();
    tactic_ids.sort_by_key(|t| b.tactic_pos.get(*t).copied().unwrap_or(usize::MAX));
    tactic_ids.dedup();
    let tactics: Vec<Tactic> = tactic_ids
        .iter()
        .map(|id| match b.kb.tactic(id) {
            Some(t) => Tactic {
                id: t.id.clone(),
                name: t.name.clone(),
                shortname: t.shortname.clone(),
            },
            None => Tactic {
                id: (*id).to_owned(),
                ..Default::default()
            },
        })
        .collect();
    let technique_ids: Vec<&str> = c.techniques.iter().map(|t| t.id.as_str()).collect();
    let software: Vec<&str> = c.software.iter().map(String::as_str).collect();
    let ranking = campaigns::rank_campaign(
        &b.kb,
        &CampaignEvidence {
            techniques: &technique_ids,
            software: &software,
        },
    );
    let threshold = b.config.actor_evidence_threshold;
    let evidence = match ranking.first() {
        None => ActorEvidence::None,
        Some(a) if a.score >= threshold => ActorEvidence::Strong,
        Some(_) => ActorEvidence::Weak,
    };
    let mut objects: Vec<CampaignEntity> = c.entities.iter().map(entity).collect();
    objects.sort_by(|a, b| b.risk_score.total_cmp(&a.risk_score).then(a.value.cmp(&b.value)));
    let score = objects.first().map_or(0.0, |o| o.risk_score);
    let mut campaign = Campaign {
        campaign_id: c.id.clone(),
        revision: c.revision,
        status: if c.closed {
            CampaignStatus::Closed
        } else {
            CampaignStatus::Open
        } as i32,
        entities: c.entities.iter().map(entity).collect(),
        first_seen: Some(ts(c.first_ms)),
        last_seen: Some(ts(c.last_ms)),
        detectors: c
            .detectors
            .iter()
            .map(|d| DetectorEvents {
                source_service: d.service.clone(),
                detector_kind: d.kind,
                event_ids: d.ids.iter().map(|(_, id)| id.clone()).collect(),
                event_count: d.count,
            })
            .collect(),
        techniques: c
            .techniques
            .iter()
            .map(|t| CampaignTechnique {
                id: t.id.clone(),
                name: t.name.clone(),
                tactic_ids: t.tactic_ids.clone(),
                first_seen: Some(ts(t.first_ms)),
                stix_id: t.stix_id.clone(),
                event_count: t.count,
                first_event_id: t.first_event.clone(),
                first_asset: t.first_asset.clone(),
            })
            .collect(),
        tactics,
        risk: Some(CampaignRisk {
            score: round2(score),
            objects,
            rules: c
                .hits
                .iter()
                .map(|h| RiskRuleHit {
                    rule: h.rule.clone(),
                    object_type: h.object.kind,
                    object: h.object.value.clone(),
                    detail: h.detail.clone(),
                    fired_at: Some(ts(h.ms)),
                })
                .collect(),
            formula: RISK_FORMULA.into(),
        }),
        candidate_groups: ranking,
        actor_evidence: evidence as i32,
        merged_ids: c.merged_ids.clone(),
        summary: String::new(),
        attack_version: b.kb.attack_version().to_owned(),
        merged_into: c.merged_into.clone().unwrap_or_default(),
    };
    campaign.summary = summary(&campaign);
    campaign
}

fn entity(e: &EntityState) -> CampaignEntity {
    CampaignEntity {
        r#type: e.key.kind,
        value: e.key.value.clone(),
        risk_score: round2(e.risk),
        event_count: e.events,
        first_seen: Some(ts(e.first_ms)),
    }
}

/// The one-line story: `203.0.113.45: Reconnaissance → Credential Access → … · risk 420 ·
/// candidates APT29 (0.41, weak)`.
pub fn summary(c: &Campaign) -> String {
    let who = c
        .entities
        .first()
        .map_or_else(|| "unknown".to_owned(), |e| e.value.clone());
    let chain = kill_chain(c);
    let risk = c.risk.as_ref().map_or(0.0, |r| r.score);
    let groups: Vec<String> = c
        .candidate_groups
        .iter()
        .take(3)
        .map(|g| format!("{} {} {:.2}", g.group_id, g.name, g.score))
        .collect();
    let evidence = match ActorEvidence::try_from(c.actor_evidence) {
        Ok(ActorEvidence::Strong) => "strong",
        Ok(ActorEvidence::Weak) => "weak",
        _ => "none",
    };
    let mut line = format!("{who}: {chain} · risk {risk:.0}");
    if groups.is_empty() {
        line.push_str(" · no candidate group");
    } else {
        line.push_str(&format!(" · candidates ({evidence}): {}", groups.join(", ")));
    }
    if c.entities.len() > 1 {
        line.push_str(&format!(" · {} entities", c.entities.len()));
    }
    line
}

/// Tactic names in kill-chain order joined by arrows.
pub fn kill_chain(c: &Campaign) -> String {
    let names: Vec<&str> = c
        .tactics
        .iter()
        .map(|t| {
            if t.name.is_empty() {
                t.id.as_str()
            } else {
                t.name.as_str()
            }
        })
        .collect();
    if names.is_empty() {
        "no ATT&CK tactic".into()
    } else {
        names.join(" → ")
    }
}

/// `risk_object_type` name of a campaign entity (`ip`, `host`, `user`).
pub fn entity_kind(e: &CampaignEntity) -> &'static str {
    kind_name(e.r#type)
}

fn ts(ms: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
