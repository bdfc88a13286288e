//! A campaign as a MITRE Attack Flow 2.0 STIX 2.1 bundle: one `attack-flow` (scope
//! `incident`), one `attack-action` per technique in the order it was first observed (each
//! naming its technique, the real ATT&CK attack-pattern, its first tactic in kill-chain order and
//! when it started), chained by `effect_refs`, and one `attack-asset` per host or address the
//! actions happened on. Ids derive from the campaign id, so a later revision of the same
//! campaign updates the same objects.

use attackmesh::proto::Campaign;
use attackmesh_attack::Kb;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Id of the Attack Flow 2.0.0 STIX extension definition.
pub const ATTACK_FLOW_EXTENSION: &str = "extension-definition--fb9c968a-745b-4ade-9b25-c324172197f4";
/// The Attack Flow extension's author (MITRE CTID), as its definition names it.
const CTID_IDENTITY: &str = "identity--d673f8cb-c168-42da-8ed4-0cb26725f86c";
/// When the extension definition was published.
const EXTENSION_CREATED: &str = "2022-08-02T19:34:35.143Z";

/// The Attack Flow bundle of a campaign.
pub fn attack_flow(kb: &Kb, campaign: &Campaign) -> Value {
    let id = |kind: &str, name: &str| {
        let urn = format!("urn:attackmesh:attack-flow:{}:{kind}:{name}", campaign.campaign_id);
        format!(
            "{kind}--{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, urn.as_bytes())
        )
    };
    let created = stix_time(campaign.first_seen.as_ref());
    let modified = stix_time(campaign.last_seen.as_ref()).max(created.clone());
    let extension = json!({ ATTACK_FLOW_EXTENSION: { "extension_type": "new-sdo" } });
    let sdo = |kind: &str, object_id: &str| {
        json!({
            "type": kind,
            "spec_version": "2.1",
            "id": object_id,
            "created": created,
            "modified": modified,
            "extensions": extension,
        })
    };
    let mut assets: Vec<(String, String)> = Vec::new();
    let mut actions: Vec<Value> = Vec::new();
    let action_ids: Vec<String> = campaign.techniques.iter().map(|t| id("attack-action", &t.id)).collect();
    for (i, t) in campaign.techniques.iter().enumerate() {
        let mut action = sdo("attack-action", &action_ids[i]);
        let known = kb.technique(&t.id);
        action["name"] = json!(if t.name.is_empty() {
            known.map_or(t.id.as_str(), |k| k.name.as_str())
        } else {
            t.name.as_str()
        });
        action["technique_id"] = json!(t.id);
        let pattern = if t.stix_id.is_empty() {
            known.map(|k| k.stix_id.clone())
        } else {
            Some(t.stix_id.clone())
        };
        if let Some(p) = pattern.filter(|p| p.starts_with("attack-pattern--")) {
            action["technique_ref"] = json!(p);
        }
        if let Some(tactic) = t.tactic_ids.first().and_then(|x| kb.tactic(x)) {
            action["tactic_id"] = json!(tactic.id);
            action["tactic_ref"] = json!(tactic.stix_id);
        }
        action["execution_start"] = json!(stix_time(t.first_seen.as_ref()));
        action["description"] = json!(format!(
            "{} event(s), first {} on {}",
            t.event_count,
            t.first_event_id,
            if t.first_asset.is_empty() {
                "an unknown asset"
            } else {
                &t.first_asset
            }
        ));
        if !t.first_asset.is_empty() {
            let asset_id = id("attack-asset", &t.first_asset);
            if !assets.iter().any(|(a, _)| *a == asset_id) {
                assets.push((asset_id.clone(), t.first_asset.clone()));
            }
            action["asset_refs"] = json!([asset_id]);
        }
        if let Some(next) = action_ids.get(i + 1) {
            action["effect_refs"] = json!([next]);
        }
        actions.push(action);
    }
    let entity = campaign.entities.first().map_or("unknown", |e| e.value.as_str());
    let mut flow = sdo("attack-flow", &id("attack-flow", "flow"));
    flow["name"] = json!(format!("Campaign of {entity}"));
    flow["description"] = json!(campaign.summary);
    flow["scope"] = json!("incident");
    flow["start_refs"] = json!(action_ids.first().map(|a| vec![a.clone()]).unwrap_or_default());
    flow["external_references"] = json!([{ "source_name": "attackmesh", "external_id": campaign.campaign_id }]);
    let mut objects = vec![extension_definition(), flow];
    objects.extend(actions);
    for (asset_id, name) in assets {
        let mut asset = sdo("attack-asset", &asset_id);
        asset["name"] = json!(name);
        objects.push(asset);
    }
    json!({
        "type": "bundle",
        "id": id("bundle", &campaign.revision.to_string()),
        "objects": objects,
    })
}

/// The Attack Flow extension definition, as MITRE publishes it.
fn extension_definition() -> Value {
    json!({
        "type": "extension-definition",
        "id": ATTACK_FLOW_EXTENSION,
        "spec_version": "2.1",
        "name": "Attack Flow",
        "description": "Extends STIX 2.1 with features to create Attack Flows.",
        "created": EXTENSION_CREATED,
        "modified": EXTENSION_CREATED,
        "created_by_ref": CTID_IDENTITY,
        "schema": "https://center-for-threat-informed-defense.github.io/attack-flow/stix/attack-flow-schema-2.0.0.json",
        "version": "2.0.0",
        "extension_types": ["new-sdo"],
    })
}

/// STIX timestamp (UTC, milliseconds, `Z`) of a protobuf timestamp; the epoch when unset.
fn stix_time(ts: Option<&pbjson_types::Timestamp>) -> String {
    let t = ts
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_default();
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
