//! EnrichedEvent → HEC event envelope (`time`, `host`, `source`, `sourcetype`, `index`, `event`,
//! `fields`). The event carries `mitre_attack.*` (technique ids, technique details with tactics,
//! ranked threat actors) and Splunk CIM-friendly fields (`src`, `dest`, `src_port`, `dest_port`,
//! `user`, `signature`, `severity`, `annotations.mitre_attack.*`). Index-time `fields` hold only
//! strings or lists of strings, as HEC requires. No I/O here.

use attackmesh::proto::{AttributionStatus, DetectorKind, Endpoint, EnrichedEvent};
use serde_json::{Map, Value, json};

use super::SplunkHecConfig;
use crate::sinks::elasticsearch::encode::{
    GROUP_CLAIM_SCORE, rfc3339, severity_name, severity_number, stix_type, tactic_url, technique_url,
};

/// Epoch seconds with microseconds, as HEC's `time`.
fn epoch(ts: Option<&pbjson_types::Timestamp>) -> Value {
    match ts {
        Some(ts) => {
            let micros = i64::from(ts.nanos) / 1000;
            let v = ts.seconds as f64 + micros as f64 / 1e6;
            serde_json::Number::from_f64((v * 1e6).round() / 1e6).map_or(Value::Null, Value::Number)
        }
        None => Value::Null,
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    let value = value.into();
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.to_owned(), value);
    }
}

fn side(map: &mut Map<String, Value>, prefix: &str, e: Option<&Endpoint>) {
    let Some(e) = e else { return };
    let addr = if e.ip.is_empty() {
        e.hostname.as_str()
    } else {
        e.ip.as_str()
    };
    put(map, prefix, addr);
    put(map, &format!("{prefix}_ip"), e.ip.as_str());
    put(map, &format!("{prefix}_host"), e.hostname.as_str());
    if e.port > 0 {
        put(map, &format!("{prefix}_port"), e.port);
    }
    put(map, &format!("{prefix}_user"), e.user.as_str());
}

/// The `event` object.
pub fn event_body(ev: &EnrichedEvent) -> Value {
    let mut m = Map::new();
    put(&mut m, "event_id", ev.event_id.as_str());
    put(&mut m, "event_type", ev.event_type.as_str());
    put(&mut m, "timestamp", rfc3339(ev.timestamp.as_ref()));
    put(&mut m, "description", ev.description.as_str());
    let signature = if ev.description.is_empty() {
        &ev.event_type
    } else {
        &ev.description
    };
    put(&mut m, "signature", signature.as_str());
    put(&mut m, "severity", severity_name(ev.severity));
    put(&mut m, "severity_id", severity_number(ev.severity));
    side(&mut m, "src", ev.source.as_ref());
    side(&mut m, "dest", ev.destination.as_ref());
    let user = [&ev.source, &ev.destination]
        .into_iter()
        .flatten()
        .map(|e| e.user.as_str())
        .find(|u| !u.is_empty());
    put(&mut m, "user", user.unwrap_or_default());
    put(&mut m, "vendor_product", "attackmesh");
    put(&mut m, "source_service", ev.source_service.as_str());
    let kind = DetectorKind::try_from(ev.detector_kind).unwrap_or(DetectorKind::Unspecified);
    put(&mut m, "detector_kind", kind.as_str_name());
    put(&mut m, "confidence_score", ev.confidence_score);
    put(&mut m, "attack_version", ev.attack_version.as_str());
    let status = AttributionStatus::try_from(ev.attribution_status).unwrap_or(AttributionStatus::Unspecified);
    put(&mut m, "attribution_status", status.as_str_name());
    put(&mut m, "revision", ev.revision);
    put(&mut m, "enriched_at", rfc3339(ev.enriched_at.as_ref()));
    let techniques = ev
        .metadata
        .as_ref()
        .map(|md| md.techniques.as_slice())
        .unwrap_or_default();
    let actors = ev
        .metadata
        .as_ref()
        .map(|md| md.threat_actors.as_slice())
        .unwrap_or_default();
    let details: Vec<Value> = techniques
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "name": t.name, "url": if t.url.is_empty() { technique_url(&t.id) } else { t.url.clone() },
                "confidence": t.confidence,
                "tactics": t.tactics.iter().map(|x| json!({"id": x.id, "name": x.name, "reference": tactic_url(&x.id)})).collect::<Vec<_>>(),
                "evidence": t.evidence.iter().map(|e| json!({"rule_id": e.rule_id, "detail": e.detail, "confidence": e.confidence})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut tactic_ids: Vec<&str> = Vec::new();
    let mut tactic_names: Vec<&str> = Vec::new();
    for t in techniques {
        for x in &t.tactics {
            if !tactic_ids.contains(&x.id.as_str()) {
                tactic_ids.push(&x.id);
                tactic_names.push(&x.name);
            }
        }
    }
    let threat_actors: Vec<Value> = actors
        .iter()
        .map(|a| json!({"group_id": a.group_id, "name": a.name, "aliases": a.aliases, "score": a.score, "matched_techniques": a.matched_techniques}))
        .collect();
    let mut mitre = Map::new();
    mitre.insert("technique_ids".into(), json!(ev.technique_ids));
    put(&mut mitre, "techniques", Value::Array(details));
    put(&mut mitre, "tactic_ids", json!(tactic_ids));
    put(&mut mitre, "threat_actors", Value::Array(threat_actors));
    m.insert("mitre_attack".into(), Value::Object(mitre));
    let claimed: Vec<&str> = actors
        .iter()
        .filter(|a| a.score >= GROUP_CLAIM_SCORE)
        .map(|a| a.name.as_str())
        .collect();
    let mut ann = Map::new();
    put(&mut ann, "mitre_technique_id", json!(ev.technique_ids));
    put(
        &mut ann,
        "mitre_technique",
        json!(techniques.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()),
    );
    put(&mut ann, "mitre_tactic_id", json!(tactic_ids));
    put(&mut ann, "mitre_tactic", json!(tactic_names));
    put(&mut ann, "mitre_threat_group_name", json!(claimed));
    if !ann.is_empty() {
        m.insert("annotations".into(), json!({"mitre_attack": ann}));
    }
    let indicators: Vec<Value> = ev
        .related_indicators
        .iter()
        .map(|i| json!({"type": stix_type(i.r#type), "value": i.value}))
        .collect();
    put(&mut m, "indicators", Value::Array(indicators));
    if !ev.attributes.is_empty() {
        m.insert("attributes".into(), json!(ev.attributes));
    }
    put(&mut m, "original_format", ev.original_format.as_str());
    Value::Object(m)
}

/// The whole envelope for one event.
pub fn envelope(ev: &EnrichedEvent, config: &SplunkHecConfig) -> Value {
    let mut m = Map::new();
    put(&mut m, "time", epoch(ev.timestamp.as_ref()));
    let host = config.host.clone().unwrap_or_else(|| ev.source_service.clone());
    put(&mut m, "host", host);
    put(&mut m, "source", config.source.as_str());
    put(&mut m, "sourcetype", config.sourcetype.as_str());
    put(&mut m, "index", config.index.clone());
    m.insert("event".into(), event_body(ev));
    let mut fields = Map::new();
    put(&mut fields, "event_id", ev.event_id.as_str());
    put(&mut fields, "severity", severity_name(ev.severity));
    put(&mut fields, "mitre_technique_id", json!(ev.technique_ids));
    put(&mut m, "fields", Value::Object(fields));
    Value::Object(m)
}

/// The envelope serialised, as it goes into a batch body.
pub fn envelope_bytes(ev: &EnrichedEvent, config: &SplunkHecConfig) -> Vec<u8> {
    serde_json::to_vec(&envelope(ev, config)).unwrap_or_default()
}
