//! EnrichedEvent → OCSF 1.8.0 Detection Finding (`class_uid` 2004): what the file sink writes in
//! its `ocsf` shape, for security data lakes (Amazon Security Lake, …) and tools that read OCSF.
//!
//! The finding declares the `security_control` profile, which carries the top-level `attacks`,
//! `confidence_score`, `is_alert`, `action_id` and `disposition_id`. ATT&CK attribution goes to
//! `attacks[]` (one entry per technique and tactic, the sub-technique beside its parent, `version`
//! the ATT&CK release) and again to `finding_info.attacks`, as OCSF asks of security controls;
//! the detector's rule is `finding_info.analytic`, and the attackmesh mapping rules that supported
//! a technique are `finding_info.related_analytics`. Endpoints, process and user are one entry of
//! `evidences`, each of their values also an `observables` entry. What OCSF has no attribute for
//! (ranked actors, detector hints, attributes, delivery details) sits in `unmapped.attackmesh`.
//! The detector's record is held once, as in the ECS document: `raw_data` under `original: keep`,
//! and the attributes a format parser derived from it only when the record is left out.
//! A re-attributed event (revision above 1) is an `Update` of the same finding (`finding_info.uid`
//! is the event id). Campaigns would be Incident Findings (2005); none are produced yet, as no
//! campaigns exist. This module only builds documents: no I/O.

use std::net::IpAddr;

use attackmesh::{
    held::EventView,
    json::TacticText,
    proto::{AttributionStatus, DetectorKind, Endpoint, EnrichedEvent, IndicatorType, Severity},
};
use attackmesh_attack::Kb;
use serde_json::{Value, json};

use super::{
    Original,
    attack::{AttackView, Technique, stix_type, technique_name},
    attributes_repeat_original,
    doc::{Doc, push_unique},
    rule_id, rule_name,
};

/// The OCSF schema release the findings follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.8.0";
/// `class_uid` of a Detection Finding.
pub const DETECTION_FINDING: i64 = 2004;
/// `category_uid` of the Findings category.
pub const FINDINGS_CATEGORY: i64 = 2;
/// `metadata.product.name` and `vendor_name`.
pub const PRODUCT: &str = "attackmesh";

/// The Detection Finding for `event`; `original` says whether `raw_data` holds the detector's
/// record (the attributes parsed from it are then left out). `kb` fills in a compact event's
/// details, as for [`AttackView::of`].
pub fn finding(held: &impl EventView<EnrichedEvent>, original: Original, kb: Option<&Kb>) -> Value {
    let event = held.event();
    let view = AttackView::of(event, kb);
    let mut d = Doc::default();
    let (activity_id, activity) = if event.revision > 1 {
        (2, "Update")
    } else {
        (1, "Create")
    };
    d.set("activity_id", activity_id);
    d.set("activity_name", activity);
    d.set("category_uid", FINDINGS_CATEGORY);
    d.set("category_name", "Findings");
    d.set("class_uid", DETECTION_FINDING);
    d.set("class_name", "Detection Finding");
    d.set("type_uid", DETECTION_FINDING * 100 + activity_id);
    d.set("type_name", format!("Detection Finding: {activity}"));
    let time = millis(event.timestamp.as_ref())
        .or(millis(event.enriched_at.as_ref()))
        .unwrap_or_default();
    d.set("time", time);
    d.set("message", event.description.as_str());
    let (severity_id, severity) = severity(view.severity);
    d.set("severity_id", severity_id);
    d.set("severity", severity);
    d.set("status_id", 1);
    d.set("status", "New");
    d.set("is_alert", true);
    d.set("action_id", 3);
    d.set("action", "Observed");
    d.set("disposition_id", 15);
    d.set("disposition", "Detected");
    let score = (event.confidence_score.clamp(0.0, 1.0) * 100.0).round() as i64;
    let (confidence_id, confidence) = confidence(score, view.techniques.is_empty());
    d.set("confidence_score", score);
    d.set("confidence_id", confidence_id);
    d.set("confidence", confidence);
    if original == Original::Keep {
        d.set("raw_data", event.original.as_str());
    }
    metadata(&mut d, event);
    let attacks = attacks(&view, &event.attack_version);
    finding_info(&mut d, held, &view, time, attacks.clone());
    d.set("attacks", Value::Array(attacks));
    let evidence = evidence(event);
    let mut observables = evidence_observables(&evidence);
    indicator_observables(event, &mut observables);
    d.set("evidences", json!([evidence.into_value()]));
    d.set("observables", Value::Array(observables));
    d.set("unmapped.attackmesh", unmapped(held, &view, original));
    d.into_value()
}

/// Milliseconds since the Unix epoch (OCSF `timestamp_t`).
fn millis(ts: Option<&pbjson_types::Timestamp>) -> Option<i64> {
    ts.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

fn severity(s: Severity) -> (i64, &'static str) {
    match s {
        Severity::Unspecified | Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// OCSF's three confidence bands over the 0–100 score; `Unknown` when nothing was attributed.
fn confidence(score: i64, unattributed: bool) -> (i64, &'static str) {
    match score {
        _ if unattributed => (0, "Unknown"),
        0..34 => (1, "Low"),
        34..67 => (2, "Medium"),
        _ => (3, "High"),
    }
}

fn metadata(d: &mut Doc, event: &EnrichedEvent) {
    d.set("metadata.version", OCSF_VERSION);
    d.set("metadata.profiles", json!(["security_control"]));
    d.set("metadata.uid", event.event_id.as_str());
    d.set("metadata.product.name", PRODUCT);
    d.set("metadata.product.vendor_name", PRODUCT);
    d.set("metadata.product.version", env!("CARGO_PKG_VERSION"));
    d.set("metadata.log_name", event.original_format.as_str());
    d.set("metadata.log_provider", event.source_service.as_str());
    d.set("metadata.event_code", event.event_type.as_str());
    d.set("metadata.processed_time", millis(event.enriched_at.as_ref()));
}

/// One `attack` per technique and tactic it serves (one without a tactic for an id carried
/// without details); a parent-only entry is left out when a sub-technique already names it.
fn attacks(view: &AttackView<'_>, version: &str) -> Vec<Value> {
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    let mut ordered: Vec<&Technique<'_>> = view.techniques.iter().filter(|t| t.is_sub()).collect();
    ordered.extend(view.techniques.iter().filter(|t| !t.is_sub()));
    let mut out = Vec::new();
    for t in ordered {
        let tactics: Vec<Option<&TacticText<'_>>> = match t.tactics() {
            [] => vec![None],
            list => list.iter().map(Some).collect(),
        };
        for tactic in tactics {
            let tactic_id = tactic.map_or("", |x| x.id);
            if !t.is_sub() && seen.iter().any(|(p, tac, _)| *p == t.parent && *tac == tactic_id) {
                continue;
            }
            seen.push((t.parent, tactic_id, t.id));
            let mut a = Doc::default();
            a.set("version", version);
            if let Some(tac) = tactic {
                a.set("tactic.uid", tac.id);
                a.set("tactic.name", tac.name);
                a.set("tactic.src_url", view.tactic_reference(tac.id));
            }
            a.set("technique.uid", t.parent);
            a.set("technique.name", t.parent_name);
            a.set("technique.src_url", t.parent_reference.as_str());
            if t.is_sub() {
                let name = if t.name.is_empty() {
                    technique_name(t.id)
                } else {
                    t.name
                };
                a.set("sub_technique.uid", t.id);
                a.set("sub_technique.name", name);
                a.set("sub_technique.src_url", t.page());
            }
            out.push(a.into_value());
        }
    }
    out
}

fn finding_info(
    d: &mut Doc,
    held: &impl EventView<EnrichedEvent>,
    view: &AttackView<'_>,
    time: i64,
    attacks: Vec<Value>,
) {
    let event = held.event();
    d.set("finding_info.uid", event.event_id.as_str());
    d.set("finding_info.title", rule_name(event));
    d.set("finding_info.desc", event.description.as_str());
    d.set("finding_info.types", json!([event.event_type]));
    d.set("finding_info.first_seen_time", time);
    d.set("finding_info.last_seen_time", time);
    d.set("finding_info.created_time", millis(event.enriched_at.as_ref()));
    if !event.original_format.is_empty() {
        d.set("finding_info.data_sources", json!([event.original_format]));
    }
    let mut analytic = Doc::default();
    analytic.set("uid", rule_id(held));
    analytic.set("name", rule_name(event));
    analytic.set("category", event.original_format.as_str());
    analytic.set("type_id", 1);
    analytic.set("type", "Rule");
    let mut related: Vec<String> = Vec::new();
    let mut related_analytics = Vec::new();
    for (_, detail) in view.details() {
        for e in &detail.evidence {
            if e.rule_id.is_empty() || related.contains(&e.rule_id) {
                continue;
            }
            push_unique(&mut related, &e.rule_id);
            let mut a = Doc::default();
            a.set("uid", e.rule_id.as_str());
            a.set("name", e.rule_id.as_str());
            a.set("desc", e.detail.as_str());
            a.set("version", pack_version(event, &e.rule_id));
            a.set("type_id", 1);
            a.set("type", "Rule");
            related_analytics.push(a.into_value());
        }
    }
    d.set("finding_info.analytic", analytic.into_value());
    d.set("finding_info.related_analytics", Value::Array(related_analytics));
    d.set("finding_info.attacks", Value::Array(attacks));
}

/// Version of the pack a rule (`pack/rule`) belongs to, from the event's `name@version` list.
fn pack_version<'a>(event: &'a EnrichedEvent, rule_id: &str) -> &'a str {
    let Some((pack, _)) = rule_id.split_once('/') else {
        return "";
    };
    let versions = event.metadata.as_ref().map_or("", |m| m.rule_pack_version.as_str());
    versions
        .split(',')
        .find_map(|v| v.strip_prefix(pack).and_then(|rest| rest.strip_prefix('@')))
        .unwrap_or("")
}

fn evidence(event: &EnrichedEvent) -> Doc {
    let mut e = Doc::default();
    endpoint(&mut e, "src_endpoint", event.source.as_ref());
    endpoint(&mut e, "dst_endpoint", event.destination.as_ref());
    let sides = [&event.source, &event.destination];
    if let Some(user) = sides
        .iter()
        .flat_map(|s| s.as_ref())
        .map(|s| s.user.as_str())
        .find(|u| !u.is_empty())
    {
        e.set("user.name", user);
    }
    if let Some(p) = sides.iter().flat_map(|s| s.as_ref()).find_map(|s| s.process.as_ref()) {
        if p.pid > 0 {
            e.set("process.pid", p.pid);
        }
        e.set("process.name", p.name.as_str());
        e.set("process.cmd_line", p.command_line.as_str());
        e.set("process.path", p.executable.as_str());
        e.set("process.parent_process.name", p.parent_name.as_str());
    }
    e
}

fn endpoint(e: &mut Doc, side: &str, ep: Option<&Endpoint>) {
    let Some(ep) = ep else { return };
    if let Ok(ip) = ep.ip.parse::<IpAddr>() {
        e.set(&format!("{side}.ip"), ip.to_string());
    }
    if ep.port > 0 {
        e.set(&format!("{side}.port"), ep.port);
    }
    e.set(&format!("{side}.hostname"), ep.hostname.as_str());
}

/// Every endpoint, user and process value of the evidence, named by where it sits.
fn evidence_observables(evidence: &Doc) -> Vec<Value> {
    const FIELDS: [(&str, i64, &str); 7] = [
        ("src_endpoint.ip", 2, "IP Address"),
        ("src_endpoint.hostname", 1, "Hostname"),
        ("dst_endpoint.ip", 2, "IP Address"),
        ("dst_endpoint.hostname", 1, "Hostname"),
        ("user.name", 4, "User Name"),
        ("process.name", 9, "Process Name"),
        ("process.cmd_line", 13, "Command Line"),
    ];
    let mut out = Vec::new();
    for (path, type_id, type_name) in FIELDS {
        if let Some(value) = evidence.get(path).and_then(Value::as_str) {
            out.push(
                json!({"name": format!("evidences[0].{path}"), "type_id": type_id, "type": type_name, "value": value}),
            );
        }
    }
    out
}

/// The related indicators (kept in `unmapped.attackmesh.indicators`) as observables.
fn indicator_observables(event: &EnrichedEvent, out: &mut Vec<Value>) {
    for (n, i) in event.related_indicators.iter().enumerate() {
        let (type_id, type_name) = match IndicatorType::try_from(i.r#type).unwrap_or(IndicatorType::Unspecified) {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 if i.value.parse::<IpAddr>().is_ok() => (2, "IP Address"),
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => (12, "Subnet"),
            IndicatorType::Domain => (1, "Hostname"),
            IndicatorType::Url => (6, "URL String"),
            IndicatorType::FileMd5 | IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::X509Sha1 => {
                (8, "Hash")
            }
            IndicatorType::FileName => (7, "File Name"),
            IndicatorType::Email => (5, "Email Address"),
            IndicatorType::UserAccount => (4, "User Name"),
            IndicatorType::ProcessCommandLine => (13, "Command Line"),
            IndicatorType::Mac => (3, "MAC Address"),
            IndicatorType::Unspecified => (99, "Other"),
        };
        out.push(json!({
            "name": format!("unmapped.attackmesh.indicators[{n}].value"),
            "type_id": type_id,
            "type": type_name,
            "value": i.value,
        }));
    }
}

fn unmapped(held: &impl EventView<EnrichedEvent>, view: &AttackView<'_>, original: Original) -> Value {
    let event = held.event();
    let mut u = Doc::default();
    u.set("event_type", event.event_type.as_str());
    u.set("source_service", event.source_service.as_str());
    u.set("submitted_by", event.submitted_by.as_str());
    let kind = DetectorKind::try_from(event.detector_kind).unwrap_or(DetectorKind::Unspecified);
    u.set("detector_kind", kind.as_str_name());
    let status = AttributionStatus::try_from(event.attribution_status).unwrap_or(AttributionStatus::Unspecified);
    u.set("attribution_status", status.as_str_name());
    u.set("revision", event.revision);
    u.set("technique_ids", json!(event.technique_ids));
    u.set("attack_version", event.attack_version.as_str());
    if let Some(m) = &event.metadata {
        u.set("rule_pack_version", m.rule_pack_version.as_str());
        let confidences: Vec<Value> = view
            .details()
            .map(|(t, d)| json!({"id": t.id, "confidence": d.confidence}))
            .collect();
        u.set("technique_confidence", Value::Array(confidences));
    }
    let actors: Vec<Value> = view
        .actors
        .iter()
        .map(|a| json!({"group_id": a.group_id, "name": a.name, "aliases": a.aliases, "score": a.score, "matched_techniques": a.matched_techniques}))
        .collect();
    u.set("threat_actors", Value::Array(actors));
    let indicators: Vec<Value> = event
        .related_indicators
        .iter()
        .map(|i| json!({"type": stix_type(i.r#type), "value": i.value}))
        .collect();
    u.set("indicators", Value::Array(indicators));
    let in_raw_data = original == Original::Keep && attributes_repeat_original(held);
    if held.attribute_count() > 0 && !in_raw_data {
        let attributes: serde_json::Map<String, Value> =
            held.attributes().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
        u.set("attributes", Value::Object(attributes));
    }
    u.into_value()
}
