//! Kibana detection rules that promote attackmesh's ECS alerts into Elastic Security alerts, one
//! query rule per ATT&CK technique the engine can attribute. Elastic shows ATT&CK from the *rule*
//! that raised an alert (its flyout, the MITRE ATT&CK coverage page), never from the document, so
//! each technique needs a rule whose `threat` names it.
//!
//! The rules follow Elastic's own promotion rule ("External Alerts"): `rule_name_override:
//! message`, `timestamp_override: event.ingested`, severity from `event.severity` on the 21/47/73/99
//! bands and risk from `event.risk_score` — fields every ECS document of the Elasticsearch sink
//! carries ([`ecs`](crate::sinks::util::ecs)). A sub-technique's rule matches
//! `threat.technique.subtechnique.id`; a parent technique's rule matches `threat.technique.id`
//! only when no sub-technique of it was observed, so one observation raises one alert per
//! technique. The file is Kibana's rule import NDJSON, ending with the export summary line
//! Kibana writes. Only JSON is built here: no I/O.

use std::collections::BTreeMap;

use attackmesh_attack::{
    Engine,
    kb::{Kb, Tactic, Technique},
    url::{tactic_url, technique_url},
};
use serde_json::{Value, json};

use crate::sinks::util::{
    attack::FRAMEWORK,
    ecs::{DATASET, ECS_VERSION},
};

/// Namespace of the rules' `rule_id`s (UUID v5 of `attackmesh:<technique id>`): a rule keeps its
/// id across releases, so importing a newer file with overwrite updates it in place.
const RULE_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5f0c_6a1e_2d7b_4c39_9a51_7e3f_b2c8_d401);

/// Options of the generated rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOptions {
    /// Index patterns the rules search (the Elasticsearch sink's index or data stream).
    pub index: Vec<String>,
    /// Whether the rules are enabled on import.
    pub enabled: bool,
}

/// The import file: one rule per emittable technique, then Kibana's export summary line.
pub fn rules_ndjson(engine: &Engine, options: &RuleOptions) -> Vec<u8> {
    let rules: Vec<Value> = engine
        .emittable_techniques()
        .into_iter()
        .map(|t| rule(engine.kb(), t, options))
        .collect();
    let mut out = Vec::new();
    for r in &rules {
        // Serialising a `Value` cannot fail.
        let _ = serde_json::to_writer(&mut out, r);
        out.push(b'\n');
    }
    let summary = json!({
        "exported_count": rules.len(),
        "exported_rules_count": rules.len(),
        "missing_rules": [],
        "missing_rules_count": 0,
        "exported_exception_list_count": 0,
        "exported_exception_list_item_count": 0,
        "missing_exception_list_item_count": 0,
        "missing_exception_list_items": [],
        "missing_exception_lists": [],
        "missing_exception_lists_count": 0,
        "exported_action_connector_count": 0,
        "missing_action_connection_count": 0,
        "missing_action_connections": [],
        "excluded_action_connection_count": 0,
        "excluded_action_connections": [],
    });
    let _ = serde_json::to_writer(&mut out, &summary);
    out.push(b'\n');
    out
}

/// The rule for `technique`.
pub fn rule(kb: &Kb, technique: &Technique, options: &RuleOptions) -> Value {
    let id = technique.id.as_str();
    let parent = match &technique.parent_id {
        Some(p) if technique.is_subtechnique => kb.technique(p),
        _ => None,
    };
    let tactics: Vec<&Tactic> = kb.tactics_of(technique).collect();
    let tactic_names: Vec<&str> = tactics.iter().map(|t| t.name.as_str()).collect();
    let title = match parent {
        Some(p) => format!("{}: {}", p.name, technique.name),
        None => technique.name.clone(),
    };
    let base = format!("event.kind:alert and event.dataset:{DATASET}");
    let query = match parent {
        Some(_) => format!("{base} and threat.technique.subtechnique.id:\"{id}\""),
        None => format!("{base} and threat.technique.id:\"{id}\" and not threat.technique.subtechnique.id:{id}.*"),
    };
    let mut tags = vec![
        "Data Source: attackmesh".to_owned(),
        "Use Case: Threat Detection".to_owned(),
    ];
    tags.extend(tactic_names.iter().map(|t| format!("Tactic: {t}")));
    let mut severity_mapping = Vec::new();
    for (severity, value) in [("low", "21"), ("medium", "47"), ("high", "73"), ("critical", "99")] {
        severity_mapping
            .push(json!({"field": "event.severity", "operator": "equals", "severity": severity, "value": value}));
    }
    json!({
        "rule_id": uuid::Uuid::new_v5(&RULE_NAMESPACE, format!("attackmesh:{id}").as_bytes()).to_string(),
        "name": format!("attackmesh: {title} ({id})"),
        "description": format!(
            "Raises an alert for every attackmesh alert attributed to MITRE ATT&CK {id} {title} ({}), \
             so that Elastic Security shows the technique in the alert and counts it on the MITRE ATT&CK \
             coverage page. The alert takes its name from the detection's message, its severity from \
             event.severity and its risk score from event.risk_score.",
            tactic_names.join(", ")
        ),
        "author": ["attackmesh"],
        "license": "Apache-2.0",
        "type": "query",
        "language": "kuery",
        "index": options.index,
        "query": query,
        "from": "now-2m",
        "interval": "1m",
        "max_signals": 1000,
        "enabled": options.enabled,
        "risk_score": 47,
        "risk_score_mapping": [{"field": "event.risk_score", "operator": "equals", "value": ""}],
        "severity": "medium",
        "severity_mapping": severity_mapping,
        "rule_name_override": "message",
        "timestamp_override": "event.ingested",
        "references": [technique_url(id)],
        "tags": tags,
        "threat": threat(technique, parent, &tactics),
        "setup": format!(
            "## Setup\n\nattackmesh's Elasticsearch sink (`siem_export.elasticsearch`) writes ECS {ECS_VERSION} \
             alerts (`event.kind: alert`, `event.dataset: {DATASET}`) to the indices this rule searches. \
             Import every rule of `attackmesh siem elastic-rules` together: each promotes the alerts of \
             one technique."
        ),
        "version": 1,
    })
}

/// The rule's `threat`: one entry per tactic of the technique (a sub-technique's under its parent).
fn threat(technique: &Technique, parent: Option<&Technique>, tactics: &[&Tactic]) -> Vec<Value> {
    let entry = match parent {
        Some(p) => json!({
            "id": p.id,
            "name": p.name,
            "reference": technique_url(&p.id),
            "subtechnique": [{"id": technique.id, "name": technique.name, "reference": technique_url(&technique.id)}],
        }),
        None => json!({"id": technique.id, "name": technique.name, "reference": technique_url(&technique.id)}),
    };
    let by_id: BTreeMap<&str, &Tactic> = tactics.iter().map(|t| (t.id.as_str(), *t)).collect();
    by_id
        .values()
        .map(|t| {
            json!({
                "framework": FRAMEWORK,
                "tactic": {"id": t.id, "name": t.name, "reference": tactic_url(&t.id)},
                "technique": [entry.clone()],
            })
        })
        .collect()
}
