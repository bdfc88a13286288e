//! STIX objects of a campaign alert (an enriched event carrying a `Campaign`): the STIX 2.1
//! `campaign` (its id is the campaign id, so every revision is a new version of one object),
//! `uses` relationships to the real ATT&CK attack-patterns, `attributed-to` the candidate group's
//! intrusion-set only when the campaign's actor evidence is STRONG and its score reaches
//! [`StixOptions::min_actor_score`], and the campaign's Attack Flow (an `attack-flow` with its
//! actions and assets, MITRE's Attack Flow 2.0 extension), so TAXII clients get the flow too.

use attackmesh::proto::{ActorEvidence, Campaign};
use attackmesh_attack::Kb;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{
    SPEC_VERSION, StixObject,
    builder::{StixOptions, actor_links, relationship_id, technique_links},
    timestamp,
};

/// The campaign's STIX objects (sightings and indicators are not built for campaign alerts).
pub fn campaign_objects(campaign: &Campaign, kb: &Kb, options: &StixOptions) -> Vec<StixObject> {
    let now = timestamp(options.now.unwrap_or_else(Utc::now));
    let at = |ts: Option<&pbjson_types::Timestamp>| {
        ts.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
            .map(timestamp)
    };
    let first_seen = at(campaign.first_seen.as_ref()).unwrap_or_else(|| now.clone());
    let last_seen = at(campaign.last_seen.as_ref()).unwrap_or_else(|| first_seen.clone());
    let producer = options.producer.id();
    let marking = options.marking().id().to_owned();
    let common = |object_type: &str, id: &str| {
        let mut m = Map::new();
        m.insert("type".into(), object_type.into());
        m.insert("spec_version".into(), SPEC_VERSION.into());
        m.insert("id".into(), id.into());
        m.insert("created".into(), now.clone().into());
        m.insert("modified".into(), now.clone().into());
        m.insert("created_by_ref".into(), producer.clone().into());
        m.insert("object_marking_refs".into(), json!([marking]));
        m
    };
    let id = campaign.campaign_id.as_str();
    let entity = campaign.entities.first().map_or("unknown", |e| e.value.as_str());
    let mut c = common("campaign", id);
    c.insert("name".into(), format!("Campaign of {entity}").into());
    c.insert("description".into(), campaign.summary.clone().into());
    c.insert("first_seen".into(), first_seen.into());
    c.insert("last_seen".into(), last_seen.into());
    c.insert("objective".into(), kill_chain(campaign).into());
    let technique_ids: Vec<&str> = campaign.techniques.iter().map(|t| t.id.as_str()).collect();
    let links = technique_links(kb, &technique_ids);
    if !links.is_empty() {
        c.insert(
            "labels".into(),
            json!(
                links
                    .iter()
                    .map(|l| format!("mitre_attack:{}", l.id))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let mut out = vec![StixObject(c)];
    let strong = campaign.actor_evidence == ActorEvidence::Strong as i32;
    let groups = if strong {
        actor_links(
            kb,
            &campaign.candidate_groups[..campaign.candidate_groups.len().min(1)],
            options.min_actor_score,
        )
    } else {
        Vec::new()
    };
    for (kind, target) in links
        .iter()
        .map(|l| ("uses", &l.stix_id))
        .chain(groups.iter().map(|g| ("attributed-to", g)))
    {
        let mut r = common("relationship", &relationship_id(kind, id, target));
        r.insert("relationship_type".into(), kind.into());
        r.insert("source_ref".into(), id.into());
        r.insert("target_ref".into(), target.clone().into());
        out.push(StixObject(r));
    }
    let flow = attackmesh_campaign::attack_flow(kb, campaign);
    for object in flow["objects"].as_array().into_iter().flatten() {
        let Value::Object(mut m) = object.clone() else { continue };
        if m.get("type").and_then(Value::as_str) == Some("extension-definition") {
            out.push(StixObject(m));
            continue;
        }
        m.insert("created_by_ref".into(), producer.clone().into());
        m.insert("object_marking_refs".into(), json!([marking]));
        m.insert("created".into(), now.clone().into());
        m.insert("modified".into(), now.clone().into());
        out.push(StixObject(m));
    }
    out
}

fn kill_chain(c: &Campaign) -> String {
    let names: Vec<&str> = c.tactics.iter().map(|t| t.name.as_str()).collect();
    names.join(" → ")
}
