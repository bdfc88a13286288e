//! ECS validity of every document the sink writes, checked against the ECS 9.4 field
//! definitions kept in `tests/data/` (Apache-2.0, see the notice there).

use std::{collections::HashMap, net::IpAddr, sync::LazyLock};

use serde::Deserialize;
use serde_json::Value;

use super::{encode, template};
use crate::sinks::util::{Original, ecs};
use attackmesh_testkit::fixtures;

#[derive(Debug, Deserialize)]
struct EcsField {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    allowed_values: Vec<String>,
}

static ECS: LazyLock<HashMap<String, EcsField>> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ecs_flat-v9.4.0.yml");
    let text = std::fs::read_to_string(path).expect("ECS fixture");
    serde_yaml::from_str(&text).expect("ECS fixture parses")
});

/// Every problem of `doc` against ECS; custom fields under `attackmesh.` are exempt.
fn ecs_violations(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(map) = doc else {
        return vec!["document is not an object".into()];
    };
    for (k, v) in map {
        walk(k, v, &mut out);
    }
    if !map.contains_key("@timestamp") {
        out.push("@timestamp is required".into());
    }
    out
}

fn walk(path: &str, value: &Value, out: &mut Vec<String>) {
    if path == "attackmesh" || path.starts_with("attackmesh.") {
        return;
    }
    let field = ECS.get(path);
    match value {
        Value::Array(items) => items.iter().for_each(|i| walk(path, i, out)),
        Value::Object(map) => match field.map(|f| f.ty.as_str()) {
            Some("flattened" | "object") if field.is_some_and(|f| f.ty == "flattened") => {}
            Some("nested" | "object") | None => {
                if field.is_none() && map.is_empty() {
                    out.push(format!("{path}: empty object is not an ECS field"));
                }
                for (k, v) in map {
                    walk(&format!("{path}.{k}"), v, out);
                }
            }
            Some(other) => out.push(format!("{path}: object given, ECS type is {other}")),
        },
        leaf => match field {
            None => out.push(format!("{path}: not an ECS field")),
            Some(f) => {
                if let Some(why) = type_mismatch(&f.ty, leaf) {
                    out.push(format!("{path}: {why}"));
                }
                if !f.allowed_values.is_empty()
                    && !leaf.as_str().is_some_and(|s| f.allowed_values.iter().any(|a| a == s))
                {
                    out.push(format!("{path}: {leaf} is not one of {:?}", f.allowed_values));
                }
            }
        },
    }
}

fn type_mismatch(ty: &str, v: &Value) -> Option<String> {
    let ok = match ty {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => v.is_string(),
        "long" | "integer" | "short" | "byte" | "unsigned_long" => v.is_i64() || v.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "date" => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        _ => true,
    };
    (!ok).then(|| format!("{v} is not a valid {ty}"))
}

fn documents() -> Vec<Value> {
    let now = chrono::Utc::now();
    let mut minimal = fixtures::event(3);
    minimal.metadata = None;
    minimal.technique_ids.clear();
    minimal.related_indicators.clear();
    minimal.source = None;
    minimal.destination = None;
    minimal.description.clear();
    let mut v6 = fixtures::event(4);
    if let Some(s) = v6.source.as_mut() {
        s.ip = "2001:db8::1".into();
    }
    [fixtures::event(1), fixtures::degraded_event(2), minimal, v6]
        .iter()
        .map(|e| ecs::document(e, now, Original::Keep))
        .collect()
}

#[test]
fn every_exported_document_is_ecs_valid() {
    for doc in documents() {
        let problems = ecs_violations(&doc);
        assert!(problems.is_empty(), "{problems:#?}\n{doc:#}");
    }
}

#[test]
fn the_checker_catches_what_ecs_does_not_allow() {
    let bad = serde_json::json!({
        "@timestamp": "not a date",
        "event": {"kind": "detection", "severity": "high"},
        "source": {"ip": "203.0.113.0/24", "made_up": 1},
        "threat": {"technique": "T1110"},
    });
    let problems = ecs_violations(&bad);
    for needle in [
        "@timestamp",
        "event.kind",
        "event.severity",
        "source.ip",
        "source.made_up",
        "threat.technique",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(needle)),
            "{needle} not caught: {problems:#?}"
        );
    }
}

#[test]
fn the_index_template_maps_ecs_fields_with_their_ecs_types() {
    for (field, ty) in template::ECS_FIELDS {
        let ecs = ECS.get(*field).unwrap_or_else(|| panic!("{field} is not in ECS"));
        assert_eq!(&ecs.ty, ty, "{field}");
    }
    let t = template::index_template("attackmesh-alerts", false, false);
    let props = &t["template"]["mappings"]["properties"];
    assert_eq!(
        props["threat"]["properties"]["technique"]["properties"]["id"]["type"],
        "keyword"
    );
    assert_eq!(props["source"]["properties"]["ip"]["type"], "ip");
    assert_eq!(props["attackmesh"]["properties"]["threat"]["type"], "nested");
    assert_eq!(t["index_patterns"][0], "attackmesh-alerts*");
    assert_eq!(props["attackmesh"]["properties"]["attributes"]["type"], "flattened");
    let os = template::index_template("attackmesh-alerts", false, true);
    assert_eq!(
        os["template"]["mappings"]["properties"]["attackmesh"]["properties"]["attributes"]["type"],
        "flat_object"
    );
    assert!(
        template::index_template("logs-attackmesh-default", true, false)
            .get("data_stream")
            .is_some()
    );
}

#[test]
fn every_written_ecs_field_is_in_the_template() {
    let mapped: std::collections::HashSet<&str> = template::ECS_FIELDS.iter().map(|(f, _)| *f).collect();
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out)
            }),
            Value::Array(a) => a.iter().for_each(|v| leaves(prefix, v, out)),
            _ => out.push(prefix.to_owned()),
        }
    }
    for doc in documents() {
        let mut out = Vec::new();
        leaves("", &doc, &mut out);
        for f in out.iter().filter(|f| !f.starts_with("attackmesh.")) {
            assert!(
                mapped.contains(f.as_str()),
                "{f} is written but not in the index template"
            );
        }
    }
}

#[test]
fn attack_attribution_lands_in_threat_with_the_pairing_kept() {
    let doc = ecs::document(&fixtures::event(1), chrono::Utc::now(), Original::Keep);
    let t = &doc["threat"];
    assert_eq!(t["framework"], "MITRE ATT&CK");
    assert_eq!(t["technique"]["id"], serde_json::json!(["T1110", "T1046"]));
    assert_eq!(
        t["technique"]["name"],
        serde_json::json!(["Brute Force", "Network Service Discovery"])
    );
    assert_eq!(t["technique"]["subtechnique"]["id"], serde_json::json!(["T1110.001"]));
    assert_eq!(
        t["technique"]["subtechnique"]["reference"][0],
        "https://attack.mitre.org/techniques/T1110/001/"
    );
    assert_eq!(t["tactic"]["id"], serde_json::json!(["TA0006", "TA0007"]));
    assert_eq!(t["tactic"]["reference"][0], "https://attack.mitre.org/tactics/TA0006/");
    // Only the actor with a score of at least 0.5 is claimed.
    assert_eq!(t["group"]["id"], serde_json::json!(["G0016"]));
    assert_eq!(t["group"]["alias"], serde_json::json!(["Cozy Bear", "NOBELIUM"]));
    // The pairing: Credential Access → T1110 → T1110.001; Discovery → T1046.
    let pairs = doc["attackmesh"]["threat"].as_array().expect("attackmesh.threat");
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0]["tactic"]["id"], "TA0006");
    assert_eq!(pairs[0]["technique"][0]["id"], "T1110");
    assert_eq!(pairs[0]["technique"][0]["subtechnique"][0]["id"], "T1110.001");
    assert_eq!(pairs[1]["tactic"]["id"], "TA0007");
    assert_eq!(pairs[1]["technique"][0]["id"], "T1046");
    assert_eq!(doc["event"]["severity"], 73);
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["event"]["id"], "evt-00000001");
    assert_eq!(
        (&doc["event"]["provider"], &doc["attackmesh"]["submitted_by"]),
        (
            &serde_json::json!("suricata-edge-01"),
            &serde_json::json!("suricata-edge")
        ),
        "the claimed source and the token that sent it"
    );
    assert_eq!(
        doc["related"]["ip"],
        serde_json::json!(["203.0.113.7", "10.0.0.5", "2001:db8::7"])
    );
    assert_eq!(
        doc["threat"]["indicator"]["ip"],
        serde_json::json!(["203.0.113.7", "2001:db8::7"])
    );
}

#[test]
fn bulk_actions_use_external_versions_for_indices_and_create_for_data_streams() {
    let mut config = super::ElasticsearchConfig {
        url: Some("http://127.0.0.1:9200".into()),
        ..Default::default()
    };
    let mut ev = fixtures::event(5);
    ev.revision = 3;
    let a = encode::action(&config, &ev);
    assert_eq!(a["index"]["_id"], "evt-00000005");
    assert_eq!(a["index"]["version"], 3);
    assert_eq!(a["index"]["version_type"], "external");
    assert_eq!(a["index"]["_index"], "attackmesh-alerts");
    config.data_stream = Some("logs-attackmesh-default".into());
    let a = encode::action(&config, &ev);
    assert_eq!(
        a["create"]["_id"], "evt-00000005-r3",
        "a data stream keeps each revision as its own document"
    );
    ev.revision = 1;
    assert_eq!(encode::action(&config, &ev)["create"]["_id"], "evt-00000005");
}

/// The bulk body of a compact batch, written by reference to the knowledge base, is that of the
/// same events filled in from it: queued compact for the sink's release, or for another (filled
/// in first).
#[test]
fn a_compact_batch_makes_the_bulk_body_of_the_events_filled_in() {
    use crate::sinks::util::tests::queued_compact;

    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let config = super::ElasticsearchConfig {
        url: Some("http://127.0.0.1:9200".into()),
        ..Default::default()
    };
    let now = chrono::Utc::now();
    let events: Vec<_> = (0..4).map(attackmesh_testkit::fixtures::event).collect();
    let full = encode::bulk_body(&config, &queued_compact(&kb, &events, None), now, None);
    assert!(String::from_utf8_lossy(&full).contains("Brute Force"));
    for release in [kb.attack_version(), "17.0"] {
        let compact = encode::bulk_body(&config, &queued_compact(&kb, &events, Some(release)), now, Some(&kb));
        assert_eq!(
            String::from_utf8_lossy(&compact),
            String::from_utf8_lossy(&full),
            "{release}"
        );
    }
}
