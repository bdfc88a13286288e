//! The demo's campaigns: the demo runs its correlation service with campaigns off and folds
//! the enriched events it collected into campaigns with the campaign library (in event-time
//! order, as the service does, but over the whole delivered set at once, so revisions do not
//! depend on how the stream was cut into batches), writes `campaigns.ndjson` and the intrusion's
//! `attack-flow.json`, and hands the campaign alerts to siem-export so that every sink — the ECS,
//! HEC and canonical files and the intel collection — carries them like any other alert.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use attackmesh::proto::{ActorEvidence, Campaign, EnrichedEvent};
use attackmesh_attack::Kb;
use attackmesh_campaign::{CampaignBuilder, CampaignConfig, attack_flow, kill_chain};

/// Campaigns, one canonical JSON `Campaign` per line.
pub(crate) const CAMPAIGNS: &str = "campaigns.ndjson";
/// The Attack Flow bundle of the intrusion's campaign.
pub(crate) const ATTACK_FLOW: &str = "attack-flow.json";

/// The campaigns of `events` (any order; folded in event-time order), biggest first.
pub(crate) fn build(kb: &std::sync::Arc<Kb>, events: &[&EnrichedEvent]) -> anyhow::Result<Vec<Campaign>> {
    let mut builder = CampaignBuilder::new(kb.clone(), CampaignConfig::default())?;
    let mut ordered: Vec<&EnrichedEvent> = events.to_vec();
    ordered.sort_by_key(|e| {
        (
            e.timestamp.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos)),
            e.event_id.clone(),
        )
    });
    for event in ordered {
        builder.observe(event);
    }
    let mut campaigns: Vec<Campaign> = builder
        .updates()
        .into_iter()
        .filter(|c| c.merged_into.is_empty())
        .collect();
    let size = |c: &Campaign| c.detectors.iter().map(|d| d.event_count).sum::<u32>();
    campaigns.sort_by(|a, b| size(b).cmp(&size(a)).then(a.campaign_id.cmp(&b.campaign_id)));
    Ok(campaigns)
}

/// Writes `campaigns.ndjson` and, for the first (biggest) campaign, `attack-flow.json`.
pub(crate) fn write(out: &Path, kb: &Kb, campaigns: &[Campaign]) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for c in campaigns {
        attackmesh::json::write_json_line(c, &mut lines);
    }
    let path = out.join(CAMPAIGNS);
    std::fs::write(&path, lines).with_context(|| format!("cannot write {}", path.display()))?;
    let path = out.join(ATTACK_FLOW);
    match campaigns.first() {
        Some(c) => std::fs::write(&path, serde_json::to_vec_pretty(&attack_flow(kb, c))?)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => super::pipeline::remove_if_present(&path)?,
    }
    Ok(())
}

/// The summary's first section: the campaign that tells the story.
pub(crate) fn render(s: &mut String, campaigns: &[Campaign]) {
    let Some(c) = campaigns.first() else {
        let _ = writeln!(s, "No campaign: no two detections shared an address, host or user\n");
        return;
    };
    let entity = c.entities.first().map_or("?", |e| e.value.as_str());
    let _ = writeln!(
        s,
        "Campaign {} (revision {}, {} more campaign{})",
        c.campaign_id,
        c.revision,
        campaigns.len() - 1,
        if campaigns.len() == 2 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "  entity      {entity} (+{} linked entities)",
        c.entities.len().saturating_sub(1)
    );
    let _ = writeln!(s, "  kill chain  {}", kill_chain(c));
    let risk = c.risk.clone().unwrap_or_default();
    let top = risk
        .objects
        .first()
        .map_or(String::new(), |o| format!(" (highest: {})", o.value));
    let _ = writeln!(s, "  risk        {:.0}{top}", risk.score);
    const SHOWN_RULES: usize = 4;
    for r in risk.rules.iter().take(SHOWN_RULES) {
        let _ = writeln!(s, "              {} fired for {}: {}", r.rule, r.object, r.detail);
    }
    if risk.rules.len() > SHOWN_RULES {
        let _ = writeln!(s, "              (+{} more rule hits)", risk.rules.len() - SHOWN_RULES);
    }
    let detectors: Vec<String> = c
        .detectors
        .iter()
        .map(|d| format!("{} ×{}", d.source_service, d.event_count))
        .collect();
    let _ = writeln!(s, "  detectors   {}", detectors.join(", "));
    let evidence = if c.actor_evidence == ActorEvidence::Strong as i32 {
        "strong"
    } else {
        "weak"
    };
    if c.candidate_groups.is_empty() {
        let _ = writeln!(s, "  candidates  none: the evidence does not point to a known group");
    } else {
        let groups: Vec<String> = c
            .candidate_groups
            .iter()
            .take(3)
            .map(|g| format!("{} {} {:.2}", g.group_id, g.name, g.score))
            .collect();
        let _ = writeln!(s, "  candidates  {} — {evidence} evidence", groups.join(", "));
    }
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    use attackmesh::proto::CampaignStatus;
    use attackmesh_attack::Engine;

    use super::*;

    #[test]
    fn the_demo_intrusion_is_one_campaign_of_the_intruder_across_all_three_detectors() {
        let engine = Engine::embedded().unwrap();
        let start = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let events: Vec<EnrichedEvent> = super::super::scenario::intrusion(start)
            .into_iter()
            .flat_map(|d| d.events)
            .map(|mut d| {
                attackmesh::validate::prepare_detection(&mut d);
                let a = engine.attribute(&d);
                attackmesh::enriched::enriched_event(d, a, 1)
            })
            .collect();
        let refs: Vec<&EnrichedEvent> = events.iter().collect();
        let campaigns = build(engine.kb(), &refs).unwrap();
        assert_eq!(campaigns.len(), 1, "{campaigns:#?}");
        let c = &campaigns[0];
        assert_eq!(c.entities[0].value, "203.0.113.45");
        assert_eq!(c.status, CampaignStatus::Open as i32);
        let detectors: Vec<&str> = c.detectors.iter().map(|d| d.source_service.as_str()).collect();
        assert_eq!(detectors, ["netmon-edge", "decoy-ssh-01", "ueba-core"]);
        let total: u32 = c.detectors.iter().map(|d| d.event_count).sum();
        assert_eq!(total as usize, events.len());
        let order: Vec<usize> = c
            .tactics
            .iter()
            .map(|t| engine.kb().tactics().position(|k| k.id == t.id).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", kill_chain(c));
        assert!(c.tactics.len() >= 6, "{}", kill_chain(c));
        let fired: Vec<&str> = c.risk.as_ref().unwrap().rules.iter().map(|r| r.rule.as_str()).collect();
        assert!(
            fired.contains(&"risk_threshold_24h") && fired.contains(&"attack_tactics_7d"),
            "{fired:?}"
        );
    }
}
