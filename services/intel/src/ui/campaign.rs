//! What the page shows of a campaign: a line of the campaign list, and the campaign panel (its
//! kill-chain line, timeline, members, risk, candidate groups and Attack Flow as a graph).

use attackmesh::proto::{ActorEvidence, Campaign};
use attackmesh_attack::Kb;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// RFC 3339 (UTC, milliseconds) of a protobuf timestamp; `null` when unset.
fn time(ts: Option<&pbjson_types::Timestamp>) -> Value {
    ts.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
        .map_or(Value::Null, |t| t.to_rfc3339_opts(SecondsFormat::Millis, true).into())
}

/// A proto enum's name without its prefix, lower case: `CAMPAIGN_STATUS_OPEN` → `open`.
fn word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase()
}

/// The entity that started the campaign.
fn entity(c: &Campaign) -> &str {
    c.entities.first().map_or("", |e| e.value.as_str())
}

/// One line of the campaign list.
pub(super) fn summary(c: &Campaign) -> Value {
    json!({
        "id": c.campaign_id,
        "revision": c.revision,
        "status": word(c.status().as_str_name(), "CAMPAIGN_STATUS_"),
        "entity": entity(c),
        "first_seen": time(c.first_seen.as_ref()),
        "last_seen": time(c.last_seen.as_ref()),
        "risk": c.risk.as_ref().map_or(0.0, |r| r.score),
        "tactics": c.tactics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "techniques": c.techniques.len(),
        "merged_into": c.merged_into,
    })
}

/// The campaign panel.
pub(super) fn detail(kb: &Kb, c: &Campaign) -> Value {
    let evidence = c.actor_evidence();
    let wording = match evidence {
        ActorEvidence::Strong => "strong: the best group's score passes the evidence threshold",
        ActorEvidence::Weak => "weak: leads only, the techniques seen do not single out a group",
        ActorEvidence::None | ActorEvidence::Unspecified => "none: no group uses these techniques",
    };
    let risk = c.risk.clone().unwrap_or_default();
    json!({
        "campaign": summary(c),
        "summary": c.summary,
        "attack_version": c.attack_version,
        "merged_ids": c.merged_ids,
        "entities": c.entities.iter().map(|e| json!({
            "type": word(e.r#type().as_str_name(), "ENTITY_TYPE_"),
            "value": e.value,
            "risk": e.risk_score,
            "events": e.event_count,
            "first_seen": time(e.first_seen.as_ref()),
        })).collect::<Vec<_>>(),
        "kill_chain": c.tactics.iter().map(|t| json!({ "id": t.id, "name": t.name })).collect::<Vec<_>>(),
        "timeline": c.techniques.iter().map(|t| json!({
            "id": t.id,
            "name": t.name,
            "tactics": t.tactic_ids,
            "first_seen": time(t.first_seen.as_ref()),
            "events": t.event_count,
            "first_event": t.first_event_id,
            "asset": t.first_asset,
        })).collect::<Vec<_>>(),
        "members": c.detectors.iter().map(|d| json!({
            "detector": d.source_service,
            "kind": word(d.detector_kind().as_str_name(), "DETECTOR_KIND_"),
            "events": d.event_count,
            "event_ids": d.event_ids,
        })).collect::<Vec<_>>(),
        "risk": {
            "score": risk.score,
            "formula": risk.formula,
            "objects": risk.objects.iter().map(|e| json!({
                "type": word(e.r#type().as_str_name(), "ENTITY_TYPE_"),
                "value": e.value,
                "risk": e.risk_score,
                "events": e.event_count,
            })).collect::<Vec<_>>(),
            "rules": risk.rules.iter().map(|r| json!({
                "rule": r.rule,
                "object": r.object,
                "detail": r.detail,
                "fired_at": time(r.fired_at.as_ref()),
            })).collect::<Vec<_>>(),
        },
        "groups": {
            "evidence": word(evidence.as_str_name(), "ACTOR_EVIDENCE_"),
            "wording": wording,
            "candidates": c.candidate_groups.iter().map(|g| json!({
                "id": g.group_id,
                "name": g.name,
                "score": g.score,
                "matched": g.matched_techniques,
            })).collect::<Vec<_>>(),
        },
        "flow": flow(kb, c),
    })
}

/// The campaign's Attack Flow (as intel shares it over TAXII) reduced to a graph: its actions
/// in time order and the `effect_refs` arrows between them.
fn flow(kb: &Kb, c: &Campaign) -> Value {
    let bundle = attackmesh_campaign::attack_flow(kb, c);
    let objects = bundle["objects"].as_array().cloned().unwrap_or_default();
    let of_type = |kind: &'static str| objects.iter().filter(move |o| o["type"] == kind);
    let asset_name = |id: &Value| {
        of_type("attack-asset")
            .find(|a| a["id"] == *id)
            .map_or(Value::Null, |a| a["name"].clone())
    };
    let actions: Vec<Value> = of_type("attack-action")
        .map(|a| {
            let assets: Vec<Value> = a["asset_refs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(asset_name)
                .collect();
            json!({
                "id": a["id"],
                "name": a["name"],
                "technique_id": a["technique_id"],
                "tactic_id": a["tactic_id"],
                "start": a["execution_start"],
                "description": a["description"],
                "assets": assets,
            })
        })
        .collect();
    let edges: Vec<Value> = of_type("attack-action")
        .flat_map(|a| {
            let from = a["id"].clone();
            a["effect_refs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |to| json!({ "from": from, "to": to }))
        })
        .collect();
    let name = of_type("attack-flow").next().map_or(Value::Null, |f| f["name"].clone());
    json!({ "name": name, "actions": actions, "edges": edges })
}
