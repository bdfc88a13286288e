//! A finding as a detection: the `DetectionEvent` sent to enrichment's `Ingest` for detector
//! `attackmesh-correlation`, with the rule's techniques as hints, its confidence, and the
//! contributing event ids as evidence (`original`, JSON). The event id is derived from the
//! rule, the group and the contributing ids, so the same input always yields the same id: a
//! finding raised again after a restart is recognised downstream, never reported twice.

use attackmesh::proto::{DetectionEvent, DetectorKind, Endpoint, Indicator, IndicatorType};
use sha2::{Digest, Sha256};

use super::{rules::Rule, window::Entry};

/// `source_service` and `original_format` of every finding.
pub const DETECTOR: &str = attackmesh::CORRELATION_DETECTOR;
/// Evidence ids listed in the `correlation.event_ids` attribute (all are in `original`).
const LISTED_IDS: usize = 20;

/// Builds the detection for `rule` firing on `group` (`values`) over `entries`.
pub fn detection(rule: &Rule, values: &[Box<str>], entries: &[&Entry], count: u64) -> DetectionEvent {
    let mut ids: Vec<&str> = Vec::with_capacity(entries.len());
    for e in entries {
        if !ids.contains(&&*e.id) {
            ids.push(&e.id);
        }
    }
    let mut hash = Sha256::new();
    for part in [rule.id.as_str()]
        .into_iter()
        .chain(values.iter().map(|v| &**v))
        .chain(ids.iter().copied())
    {
        hash.update(part.as_bytes());
        hash.update([0x1f]);
    }
    let event_id = format!("corr-{}", &hex::encode(hash.finalize())[..32]);
    let first = entries.first().map_or(0, |e| e.ts);
    let last = entries.last().map_or(0, |e| e.ts);
    let value = |name: &str| {
        rule.group_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| values.get(i))
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let group: Vec<String> = rule
        .group_names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let mut event = DetectionEvent {
        event_id,
        timestamp: Some(timestamp(last)),
        source_service: DETECTOR.into(),
        detector_kind: DetectorKind::BehaviouralAnalysis as i32,
        event_type: format!("correlation.{}", rule.name),
        source: Some(Endpoint {
            ip: value("source.ip"),
            hostname: value("source.hostname"),
            user: value("source.user"),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: value("destination.ip"),
            port: value("destination.port").parse().unwrap_or(0),
            hostname: value("destination.hostname"),
            user: value("destination.user"),
            ..Default::default()
        }),
        severity: rule.severity as i32,
        description: attackmesh::text::clip(
            &format!(
                "{} ({}): {count} in {} events — {}",
                rule.title,
                group.join(", "),
                ids.len(),
                rule.description
            ),
            attackmesh::limits::MAX_DESCRIPTION_BYTES,
        )
        .to_owned(),
        technique_hints: rule.techniques.clone(),
        detector_confidence: Some(rule.confidence),
        original_format: DETECTOR.into(),
        ..Default::default()
    };
    let parent = value("dns.parent");
    if !parent.is_empty() && attackmesh::text::is_domain(&parent) {
        event.indicators.push(Indicator {
            r#type: IndicatorType::Domain as i32,
            value: parent,
        });
    }
    let attrs = &mut event.attributes;
    attrs.insert("correlation.rule_id".into(), rule.id.clone());
    attrs.insert("correlation.rule".into(), rule.name.clone());
    attrs.insert("correlation.count".into(), count.to_string());
    attrs.insert("correlation.events".into(), ids.len().to_string());
    attrs.insert("correlation.window_start".into(), rfc3339(first));
    attrs.insert("correlation.window_end".into(), rfc3339(last));
    attrs.insert(
        "correlation.event_ids".into(),
        ids.iter().take(LISTED_IDS).copied().collect::<Vec<_>>().join(","),
    );
    for (name, v) in rule.group_names.iter().zip(values) {
        attrs.insert(
            format!("correlation.group.{name}"),
            attackmesh::text::clip(v, 512).to_owned(),
        );
    }
    let evidence = serde_json::json!({
        "rule_id": rule.id,
        "rule": rule.name,
        "group": rule.group_names.iter().zip(values).map(|(n, v)| (n.clone(), serde_json::Value::from(&**v))).collect::<serde_json::Map<_, _>>(),
        "count": count,
        "window_start": rfc3339(first),
        "window_end": rfc3339(last),
        "event_ids": ids,
    });
    event.original = attackmesh::text::clip(&evidence.to_string(), attackmesh::limits::MAX_ORIGINAL_BYTES).to_owned();
    event
}

fn timestamp(micros: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}
