//! The index template installed at start-up: ECS types for every ECS field the sink writes
//! (checked against the ECS definitions by a test) and the `attackmesh.*` custom object.

use serde_json::{Map, Value, json};

use crate::sinks::util::ecs::ECS_VERSION;

/// Every ECS field the sink writes, with its ECS type.
pub const ECS_FIELDS: &[(&str, &str)] = &[
    ("@timestamp", "date"),
    ("ecs.version", "keyword"),
    ("message", "match_only_text"),
    ("event.kind", "keyword"),
    ("event.category", "keyword"),
    ("event.type", "keyword"),
    ("event.severity", "long"),
    ("event.risk_score", "float"),
    ("event.dataset", "keyword"),
    ("event.module", "keyword"),
    ("event.provider", "keyword"),
    ("event.action", "keyword"),
    ("event.id", "keyword"),
    ("event.created", "date"),
    ("event.ingested", "date"),
    ("event.original", "keyword"),
    ("source.ip", "ip"),
    ("source.port", "long"),
    ("source.domain", "keyword"),
    ("source.address", "keyword"),
    ("source.user.name", "keyword"),
    ("destination.ip", "ip"),
    ("destination.port", "long"),
    ("destination.domain", "keyword"),
    ("destination.address", "keyword"),
    ("destination.user.name", "keyword"),
    ("process.pid", "long"),
    ("process.name", "keyword"),
    ("process.executable", "keyword"),
    ("process.command_line", "wildcard"),
    ("process.parent.name", "keyword"),
    ("rule.name", "keyword"),
    ("rule.category", "keyword"),
    ("rule.id", "keyword"),
    ("rule.ruleset", "keyword"),
    ("rule.version", "keyword"),
    ("observer.name", "keyword"),
    ("observer.product", "keyword"),
    ("observer.type", "keyword"),
    ("related.ip", "ip"),
    ("related.user", "keyword"),
    ("related.hash", "keyword"),
    ("related.hosts", "keyword"),
    ("threat.framework", "keyword"),
    ("threat.tactic.id", "keyword"),
    ("threat.tactic.name", "keyword"),
    ("threat.tactic.reference", "keyword"),
    ("threat.technique.id", "keyword"),
    ("threat.technique.name", "keyword"),
    ("threat.technique.reference", "keyword"),
    ("threat.technique.subtechnique.id", "keyword"),
    ("threat.technique.subtechnique.name", "keyword"),
    ("threat.technique.subtechnique.reference", "keyword"),
    ("threat.group.id", "keyword"),
    ("threat.group.name", "keyword"),
    ("threat.group.alias", "keyword"),
    ("threat.group.reference", "keyword"),
    ("threat.indicator.type", "keyword"),
    ("threat.indicator.name", "keyword"),
    ("threat.indicator.provider", "keyword"),
    ("threat.indicator.ip", "ip"),
    ("threat.indicator.url.domain", "keyword"),
    ("threat.indicator.url.original", "wildcard"),
    ("threat.indicator.file.hash.md5", "keyword"),
    ("threat.indicator.file.hash.sha1", "keyword"),
    ("threat.indicator.file.hash.sha256", "keyword"),
    ("threat.indicator.file.name", "keyword"),
    ("threat.indicator.email.address", "keyword"),
];

/// Mappings of the custom `attackmesh.*` fields (`attributes` is a free-form map: `flattened`
/// on Elasticsearch, `flat_object` on OpenSearch).
fn custom_mappings(opensearch: bool) -> Value {
    let kw = json!({"type": "keyword", "ignore_above": 1024});
    // The tactic ↔ technique pairing, by id (names and pages are in `threat.*`).
    let tactic = json!({"properties": {"id": kw}});
    let technique = json!({"type": "nested", "properties": {
        "id": kw,
        "subtechnique": {"type": "nested", "properties": {"id": kw}},
    }});
    json!({"properties": {
        "event_type": kw, "submitted_by": kw, "detector_kind": kw, "technique_ids": kw, "attack_version": kw,
        "attribution_status": kw, "severity": kw, "original_format": kw, "rule_pack_version": kw,
        "confidence_score": {"type": "float"},
        "revision": {"type": "long"},
        "threat": {"type": "nested", "properties": {"tactic": tactic, "technique": technique}},
        "techniques": {"type": "object", "dynamic": true},
        "threat_actors": {"type": "object", "dynamic": true},
        "indicators": {"properties": {"type": kw, "value": kw}},
        "attributes": {"type": if opensearch { "flat_object" } else { "flattened" }},
        "campaign": {"properties": {
            "id": kw, "status": kw, "summary": {"type": "text"}, "kill_chain": kw, "tactic_ids": kw,
            "technique_ids": kw, "actor_evidence": kw, "merged_ids": kw, "merged_into": kw,
            "revision": {"type": "long"}, "risk_score": {"type": "float"},
            "first_seen": {"type": "date"}, "last_seen": {"type": "date"},
            "entities": {"type": "object", "dynamic": true},
            "risk_rules": {"type": "object", "dynamic": true},
            "detectors": {"type": "object", "dynamic": true},
            "candidate_groups": {"type": "object", "dynamic": true},
        }},
    }})
}

/// The mapping of one ECS type (keyword-likes get ECS's `ignore_above`; `event.original` is
/// stored, not indexed, as ECS recommends).
fn mapping(field: &str, ty: &str) -> Value {
    match (field, ty) {
        ("event.original", _) => json!({"type": "keyword", "index": false, "doc_values": false}),
        (_, "keyword") => json!({"type": "keyword", "ignore_above": 1024}),
        (_, other) => json!({"type": other}),
    }
}

/// The composable index template for `name` (an index prefix, or a data stream), for
/// Elasticsearch or (with `opensearch`) an OpenSearch cluster.
pub fn index_template(name: &str, data_stream: bool, opensearch: bool) -> Value {
    let mut root = Map::new();
    for (field, ty) in ECS_FIELDS {
        insert(&mut root, field, mapping(field, ty));
    }
    root.insert("attackmesh".into(), custom_mappings(opensearch));
    let mut body = json!({
        "index_patterns": [format!("{name}*")],
        "priority": 200,
        "template": {
            "settings": {"index.mapping.total_fields.limit": 2000},
            "mappings": {"properties": Value::Object(root)},
        },
        "_meta": {"managed_by": "attackmesh", "ecs_version": ECS_VERSION},
    });
    if data_stream {
        body["data_stream"] = json!({});
    }
    body
}

fn insert(root: &mut Map<String, Value>, field: &str, leaf: Value) {
    let parts: Vec<&str> = if field == "@timestamp" {
        vec![field]
    } else {
        field.split('.').collect()
    };
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            node.insert((*part).to_owned(), leaf);
            return;
        }
        let entry = node
            .entry((*part).to_owned())
            .or_insert_with(|| json!({"properties": {}}));
        let Some(Value::Object(props)) = entry.get_mut("properties") else {
            return;
        };
        node = props;
    }
}
