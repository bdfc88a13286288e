//! What the live matrix keeps of an enriched event: its time, detector, severity, entities,
//! techniques (checked against the knowledge base, revoked ids counted for their replacement,
//! unknown ones left out, exactly as the Navigator layer counts them) with their confidence and
//! evidence, and a short summary for the page. Never the detector's original payload.

use std::collections::BTreeSet;

use attackmesh::{
    proto::{Endpoint, EnrichedEvent, EvidenceSource, TechniqueDetail},
    text::{clip, severity_name},
};
use attackmesh_attack::{Kb, kb::Resolved};
use serde_json::{Value, json};

use crate::store::matrix::{Observation, ObservedTechnique};

/// Longest entity, detector or campaign name kept.
const MAX_NAME: usize = 256;
/// Longest description kept in a summary.
const MAX_DESCRIPTION: usize = 1_000;
/// Longest evidence detail kept.
const MAX_DETAIL: usize = 500;
/// Threat actors and indicators a summary lists at most.
const MAX_LISTED: usize = 5;

/// The observation of `event` (a detection, not a campaign alert), timed by its detection
/// time (else its enrichment time, else `now_us`), in the campaign its `campaign_id` names.
pub fn observation(event: &EnrichedEvent, kb: &Kb, now_us: i64) -> Observation {
    let micros = |t: &pbjson_types::Timestamp| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos.clamp(0, 999_999_999) / 1_000))
    };
    let ts_us = event
        .timestamp
        .as_ref()
        .or(event.enriched_at.as_ref())
        .map_or(now_us, micros);
    let details: &[TechniqueDetail] = event
        .metadata
        .as_ref()
        .map(|m| m.techniques.as_slice())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut techniques = Vec::new();
    for id in &event.technique_ids {
        let technique = match kb.resolve(id) {
            Resolved::Active(t) => t,
            Resolved::Revoked { replacement, .. } => replacement,
            Resolved::Deprecated(_) | Resolved::Unknown => continue,
        };
        if !seen.insert(technique.id.clone()) {
            continue;
        }
        let detail = details
            .iter()
            .find(|d| d.id == *id || d.id == technique.id || d.replaces_revoked_id == *id);
        techniques.push(ObservedTechnique {
            id: technique.id.clone(),
            confidence: detail.map_or(event.confidence_score, |d| d.confidence).clamp(0.0, 1.0),
            evidence: detail.map_or_else(|| "[]".to_owned(), evidence),
        });
    }
    let detector = match clip(event.source_service.trim(), MAX_NAME) {
        "" => "unknown".to_owned(),
        name => name.to_owned(),
    };
    Observation {
        event_id: event.event_id.clone(),
        revision: event.revision,
        ts_us,
        detector,
        severity: event.severity,
        campaign: clip(event.campaign_id.trim(), MAX_NAME).to_owned(),
        entities: entities(event),
        techniques,
        summary: summary(event).to_string(),
    }
}

fn entities(event: &EnrichedEvent) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for endpoint in [&event.source, &event.destination].into_iter().flatten() {
        for value in [&endpoint.ip, &endpoint.hostname, &endpoint.user] {
            let value = clip(value.trim(), MAX_NAME);
            if !value.is_empty() && !out.iter().any(|e| e == value) {
                out.push(value.to_owned());
            }
        }
    }
    out
}

fn evidence(detail: &TechniqueDetail) -> String {
    let items: Vec<Value> = detail
        .evidence
        .iter()
        .map(|e| {
            let source = match EvidenceSource::try_from(e.source).unwrap_or(EvidenceSource::Unspecified) {
                EvidenceSource::Rule => "rule",
                EvidenceSource::DetectorHint => "detector hint",
                EvidenceSource::Unspecified => "unspecified",
            };
            json!({
                "source": source,
                "rule_id": clip(&e.rule_id, MAX_NAME),
                "detail": clip(&e.detail, MAX_DETAIL),
                "confidence": e.confidence,
            })
        })
        .collect();
    Value::Array(items).to_string()
}

fn endpoint(e: Option<&Endpoint>) -> Value {
    match e {
        None => Value::Null,
        Some(e) => json!({
            "ip": e.ip,
            "port": e.port,
            "hostname": clip(&e.hostname, MAX_NAME),
            "user": clip(&e.user, MAX_NAME),
        }),
    }
}

fn summary(event: &EnrichedEvent) -> Value {
    let actors: Vec<Value> = event
        .metadata
        .iter()
        .flat_map(|m| m.threat_actors.iter().take(MAX_LISTED))
        .map(|a| json!({ "group_id": a.group_id, "name": a.name, "score": a.score }))
        .collect();
    let indicators: Vec<Value> = event
        .related_indicators
        .iter()
        .take(MAX_LISTED)
        .map(|i| json!({ "type": i.r#type().as_str_name(), "value": clip(&i.value, MAX_NAME) }))
        .collect();
    json!({
        "event_id": event.event_id,
        "detector": event.source_service,
        "event_type": clip(&event.event_type, MAX_NAME),
        "severity": severity_name(event.severity),
        "description": clip(&event.description, MAX_DESCRIPTION),
        "source": endpoint(event.source.as_ref()),
        "destination": endpoint(event.destination.as_ref()),
        "confidence_score": event.confidence_score,
        "threat_actors": actors,
        "indicators": indicators,
    })
}

#[cfg(test)]
mod tests {
    use attackmesh::proto::{EnrichmentMetadata, Evidence};

    use super::*;

    #[test]
    fn techniques_are_checked_against_the_kb_and_carry_their_evidence() {
        let kb = Kb::embedded().unwrap();
        let event = EnrichedEvent {
            event_id: "e1".into(),
            revision: 2,
            source_service: "suricata".into(),
            campaign_id: "campaign--1".into(),
            severity: 3,
            technique_ids: vec!["T1110.001".into(), "T1073".into(), "T9999".into(), "T1110.001".into()],
            confidence_score: 0.5,
            source: Some(Endpoint {
                ip: "10.0.0.5".into(),
                user: "root".into(),
                ..Default::default()
            }),
            destination: Some(Endpoint {
                ip: "10.0.0.5".into(),
                hostname: "web-1".into(),
                ..Default::default()
            }),
            metadata: Some(EnrichmentMetadata {
                techniques: vec![TechniqueDetail {
                    id: "T1110.001".into(),
                    confidence: 0.9,
                    evidence: vec![Evidence {
                        source: EvidenceSource::Rule as i32,
                        rule_id: "ssh-brute".into(),
                        detail: "many failed logins".into(),
                        confidence: 0.9,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let o = observation(&event, &kb, 42);
        assert_eq!(o.ts_us, 42, "no timestamp: now");
        let ids: Vec<&str> = o.techniques.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            ["T1110.001", "T1574.001"],
            "revoked T1073 counts for its replacement"
        );
        assert_eq!(o.techniques[0].confidence, 0.9);
        assert_eq!(o.techniques[1].confidence, 0.5, "no detail: the event's confidence");
        let evidence: Value = serde_json::from_str(&o.techniques[0].evidence).unwrap();
        assert_eq!(evidence[0]["rule_id"], "ssh-brute");
        assert_eq!(o.entities, ["10.0.0.5", "root", "web-1"]);
        assert_eq!(o.detector, "suricata");
        assert_eq!(o.campaign, "campaign--1");
        let summary: Value = serde_json::from_str(&o.summary).unwrap();
        assert_eq!(summary["severity"], "high");
    }
}
