//! The ECS document as it was built before the direct writer: a `serde_json::Value` tree laid
//! out by dotted paths, then serialised. Kept only as the oracle the writer is checked against
//! (every event of the real samples must come out the same); compiled into tests only.

use std::{collections::BTreeMap, net::IpAddr};

use crate::sinks::util::{
    Original,
    attack::{AttackView, FRAMEWORK, Technique, stix_type},
    attributes_repeat_original,
    ecs::{DATASET, ECS_VERSION},
    rfc3339, rule_id, rule_name,
};
use attackmesh::json::TacticText;
use attackmesh::proto::{
    AttributionStatus, DetectorKind, Endpoint, EnrichedEvent, EnrichmentMetadata, Indicator, IndicatorType,
};
use serde_json::{Value, json};

use super::doc::{Doc, push_unique};

/// The document for `event`; `ingested` is when attackmesh hands it over (`event.ingested`).
/// `original` says whether `event.original` is written.
pub(super) fn document(event: &EnrichedEvent, ingested: chrono::DateTime<chrono::Utc>, original: Original) -> Value {
    let view = AttackView::of(event, None);
    let mut d = Doc::default();
    d.set("@timestamp", rfc3339(event.timestamp.as_ref()));
    d.set("ecs.version", ECS_VERSION);
    d.set("message", event.description.as_str());
    event_fields(&mut d, event, &view, ingested);
    if original == Original::Keep {
        d.set("event.original", event.original.as_str());
    }
    endpoint(&mut d, "source", event.source.as_ref());
    endpoint(&mut d, "destination", event.destination.as_ref());
    let process = event
        .source
        .as_ref()
        .and_then(|e| e.process.as_ref())
        .or(event.destination.as_ref().and_then(|e| e.process.as_ref()));
    if let Some(p) = process {
        if p.pid > 0 {
            d.set("process.pid", p.pid);
        }
        d.set("process.name", p.name.as_str());
        d.set("process.executable", p.executable.as_str());
        d.set("process.command_line", p.command_line.as_str());
        d.set("process.parent.name", p.parent_name.as_str());
    }
    rule_and_observer(&mut d, event);
    related(&mut d, event);
    threat(&mut d, &view);
    indicators(&mut d, &event.related_indicators);
    custom(&mut d, event, &view, original);
    d.into_value()
}

fn event_fields(d: &mut Doc, event: &EnrichedEvent, view: &AttackView<'_>, ingested: chrono::DateTime<chrono::Utc>) {
    d.set("event.kind", "alert");
    let mut category = vec!["intrusion_detection"];
    let mut types = vec!["info"];
    let has_ip = [&event.source, &event.destination]
        .iter()
        .any(|e| e.as_ref().is_some_and(|e| !e.ip.is_empty()));
    if has_ip {
        category.push("network");
    }
    if !event.technique_ids.is_empty() || !event.related_indicators.is_empty() {
        category.push("threat");
        types.push("indicator");
    }
    d.set("event.category", json!(category));
    d.set("event.type", json!(types));
    d.set("event.severity", view.severity_number());
    d.set(
        "event.risk_score",
        (event.confidence_score * 100.0 * 100.0).round() / 100.0,
    );
    d.set("event.dataset", DATASET);
    d.set("event.module", "attackmesh");
    d.set("event.provider", event.source_service.as_str());
    d.set("event.action", event.event_type.as_str());
    d.set("event.id", event.event_id.as_str());
    d.set("event.created", rfc3339(event.enriched_at.as_ref()));
    d.set(
        "event.ingested",
        ingested.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
}

fn endpoint(d: &mut Doc, side: &str, e: Option<&Endpoint>) {
    let Some(e) = e else { return };
    let ip = e.ip.parse::<IpAddr>().ok().map(|ip| ip.to_string());
    d.set(&format!("{side}.ip"), ip.clone());
    if e.port > 0 {
        d.set(&format!("{side}.port"), e.port);
    }
    d.set(&format!("{side}.domain"), e.hostname.as_str());
    d.set(&format!("{side}.address"), ip.unwrap_or_else(|| e.hostname.clone()));
    d.set(&format!("{side}.user.name"), e.user.as_str());
}

fn rule_and_observer(d: &mut Doc, event: &EnrichedEvent) {
    d.set("rule.name", rule_name(event));
    d.set("rule.category", event.event_type.as_str());
    d.set("rule.id", rule_id(event));
    d.set("rule.ruleset", event.original_format.as_str());
    if let Some(m) = &event.metadata {
        d.set("rule.version", packs_used(m));
    }
    d.set("observer.name", event.source_service.as_str());
    d.set("observer.product", event.original_format.as_str());
    let kind = match DetectorKind::try_from(event.detector_kind).unwrap_or(DetectorKind::Unspecified) {
        DetectorKind::TrafficMonitor => "ids",
        DetectorKind::BehaviouralAnalysis => "behavioural-analysis",
        DetectorKind::Decoy => "honeypot",
        DetectorKind::Other | DetectorKind::Unspecified => "sensor",
    };
    d.set("observer.type", kind);
}

/// The rule packs (`name@version`, comma-separated) whose rules gave evidence: a pack's rule ids
/// start with `<name>/`. Every loaded pack when no evidence names one; none without evidence.
fn packs_used(m: &EnrichmentMetadata) -> String {
    let evidence: Vec<&str> = m
        .techniques
        .iter()
        .flat_map(|t| &t.evidence)
        .filter_map(|e| e.rule_id.split_once('/').map(|(pack, _)| pack))
        .collect();
    if evidence.is_empty() {
        return String::new();
    }
    let used: Vec<&str> = m
        .rule_pack_version
        .split(',')
        .filter(|p| evidence.contains(&p.split('@').next().unwrap_or(p)))
        .collect();
    if used.is_empty() {
        m.rule_pack_version.clone()
    } else {
        used.join(",")
    }
}

fn related(d: &mut Doc, event: &EnrichedEvent) {
    let (mut ips, mut users, mut hashes, mut hosts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in [&event.source, &event.destination].into_iter().flatten() {
        if let Ok(ip) = e.ip.parse::<IpAddr>() {
            push_unique(&mut ips, &ip.to_string());
        }
        push_unique(&mut users, &e.user);
        push_unique(&mut hosts, &e.hostname);
    }
    if let Some(c) = &event.campaign {
        let (c_ips, c_hosts, c_users) = entities(c);
        c_ips.iter().for_each(|v| push_unique(&mut ips, v));
        c_hosts.iter().for_each(|v| push_unique(&mut hosts, v));
        c_users.iter().for_each(|v| push_unique(&mut users, v));
    }
    for i in &event.related_indicators {
        match IndicatorType::try_from(i.r#type).unwrap_or(IndicatorType::Unspecified) {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                if let Ok(ip) = i.value.parse::<IpAddr>() {
                    push_unique(&mut ips, &ip.to_string());
                }
            }
            IndicatorType::UserAccount => push_unique(&mut users, &i.value),
            IndicatorType::FileMd5 | IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::X509Sha1 => {
                push_unique(&mut hashes, &i.value.to_ascii_lowercase());
            }
            IndicatorType::Domain => push_unique(&mut hosts, &i.value),
            _ => {}
        }
    }
    d.set("related.ip", json!(ips));
    d.set("related.user", json!(users));
    d.set("related.hash", json!(hashes));
    d.set("related.hosts", json!(hosts));
}

fn threat(d: &mut Doc, view: &AttackView<'_>) {
    if view.is_empty() {
        return;
    }
    d.set("threat.framework", FRAMEWORK);
    let (mut tac_id, mut tac_name, mut tac_ref) = (Vec::new(), Vec::new(), Vec::new());
    for tac in &view.tactics {
        push_unique(&mut tac_id, tac.id);
        push_unique(&mut tac_name, tac.name);
        push_unique(&mut tac_ref, &tac.reference);
    }
    let (mut tech_id, mut tech_name, mut tech_ref) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sub_id, mut sub_name, mut sub_ref) = (Vec::new(), Vec::new(), Vec::new());
    for t in &view.techniques {
        push_unique(&mut tech_id, t.parent);
        push_unique(&mut tech_ref, &t.parent_reference);
        push_unique(&mut tech_name, t.parent_name);
        if t.is_sub() {
            push_unique(&mut sub_id, t.id);
            push_unique(&mut sub_name, t.name);
            push_unique(&mut sub_ref, &t.reference);
        }
    }
    d.set("threat.tactic.id", json!(tac_id));
    d.set("threat.tactic.name", json!(tac_name));
    d.set("threat.tactic.reference", json!(tac_ref));
    d.set("threat.technique.id", json!(tech_id));
    d.set("threat.technique.name", json!(tech_name));
    d.set("threat.technique.reference", json!(tech_ref));
    d.set("threat.technique.subtechnique.id", json!(sub_id));
    d.set("threat.technique.subtechnique.name", json!(sub_name));
    d.set("threat.technique.subtechnique.reference", json!(sub_ref));
    let mut alias = Vec::new();
    for g in &view.groups {
        for x in g.actor.aliases {
            push_unique(&mut alias, x);
        }
    }
    d.set(
        "threat.group.id",
        json!(view.groups.iter().map(|g| &g.actor.group_id).collect::<Vec<_>>()),
    );
    d.set(
        "threat.group.name",
        json!(view.groups.iter().map(|g| &g.actor.name).collect::<Vec<_>>()),
    );
    d.set("threat.group.alias", json!(alias));
    d.set(
        "threat.group.reference",
        json!(view.groups.iter().map(|g| &g.reference).collect::<Vec<_>>()),
    );
    d.set("attackmesh.threat", Value::Array(rule_threat(view)));
}

/// The pairing in Elastic Security's rule `threat` shape, by id: one entry per tactic, each with
/// its parent techniques and their sub-techniques (names and pages are in `threat.*`).
fn rule_threat(view: &AttackView<'_>) -> Vec<Value> {
    type Parents<'v, 'a> = BTreeMap<&'a str, (&'v Technique<'a>, Vec<&'v Technique<'a>>)>;
    let mut by_tactic: BTreeMap<&str, (&TacticText<'_>, Parents<'_, '_>)> = BTreeMap::new();
    for t in &view.techniques {
        for tac in t.tactics() {
            let (_, parents) = by_tactic.entry(tac.id).or_insert_with(|| (tac, BTreeMap::new()));
            let (_, subs) = parents.entry(t.parent).or_insert_with(|| (t, Vec::new()));
            if t.is_sub() {
                subs.push(t);
            }
        }
    }
    by_tactic
        .into_iter()
        .map(|(id, (_, parents))| {
            let technique: Vec<Value> = parents
                .into_values()
                .map(|(t, subs)| {
                    let mut entry = json!({"id": t.parent});
                    if !subs.is_empty() {
                        entry["subtechnique"] = subs.into_iter().map(|s| json!({"id": s.id})).collect();
                    }
                    entry
                })
                .collect();
            json!({"tactic": {"id": id}, "technique": technique})
        })
        .collect()
}

/// The campaign's entities as strings.
fn entities(c: &attackmesh::proto::Campaign) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (ips, hosts, users) = crate::sinks::util::campaign::entity_refs(c);
    let own = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
    (ips.iter().map(ToString::to_string).collect(), own(hosts), own(users))
}

/// The `threat.indicator.*` fields; an indicator no typed field takes (a CIDR block, an account,
/// a command line, …) also goes to `attackmesh.indicators` with its type, the pairing the flat
/// `threat.indicator.name` and `threat.indicator.type` arrays lose.
fn indicators(d: &mut Doc, list: &[Indicator]) {
    let mut fields: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut untyped = Vec::new();
    for i in list {
        let t = IndicatorType::try_from(i.r#type).unwrap_or(IndicatorType::Unspecified);
        push_unique(fields.entry("threat.indicator.type").or_default(), stix_type(i.r#type));
        push_unique(fields.entry("threat.indicator.name").or_default(), &i.value);
        let (field, value) = match t {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => match i.value.parse::<IpAddr>() {
                Ok(ip) => ("threat.indicator.ip", ip.to_string()),
                Err(_) => {
                    // A CIDR block.
                    untyped.push(json!({"type": stix_type(i.r#type), "value": i.value}));
                    continue;
                }
            },
            IndicatorType::Domain => ("threat.indicator.url.domain", i.value.clone()),
            IndicatorType::Url => ("threat.indicator.url.original", i.value.clone()),
            IndicatorType::FileMd5 => ("threat.indicator.file.hash.md5", i.value.to_ascii_lowercase()),
            IndicatorType::FileSha1 => ("threat.indicator.file.hash.sha1", i.value.to_ascii_lowercase()),
            IndicatorType::FileSha256 => ("threat.indicator.file.hash.sha256", i.value.to_ascii_lowercase()),
            IndicatorType::FileName => ("threat.indicator.file.name", i.value.clone()),
            IndicatorType::Email => ("threat.indicator.email.address", i.value.clone()),
            _ => {
                untyped.push(json!({"type": stix_type(i.r#type), "value": i.value}));
                continue;
            }
        };
        push_unique(fields.entry(field).or_default(), &value);
    }
    if !list.is_empty() {
        d.set("threat.indicator.provider", "attackmesh");
    }
    for (field, values) in fields {
        d.set(field, json!(values));
    }
    d.set("attackmesh.indicators", Value::Array(untyped));
}

fn custom(d: &mut Doc, event: &EnrichedEvent, view: &AttackView<'_>, original: Original) {
    d.set("attackmesh.submitted_by", event.submitted_by.as_str());
    let kind = DetectorKind::try_from(event.detector_kind).unwrap_or(DetectorKind::Unspecified);
    d.set("attackmesh.detector_kind", kind.as_str_name());
    d.set("attackmesh.technique_ids", json!(event.technique_ids));
    d.set("attackmesh.confidence_score", event.confidence_score);
    d.set("attackmesh.attack_version", event.attack_version.as_str());
    let status = AttributionStatus::try_from(event.attribution_status).unwrap_or(AttributionStatus::Unspecified);
    d.set("attackmesh.attribution_status", status.as_str_name());
    d.set("attackmesh.revision", event.revision);
    d.set("attackmesh.severity", view.severity_name());
    if let Some(m) = &event.metadata {
        // Names, tactics and pages are in `threat.*`: only what they lack.
        let techniques: Vec<Value> = m
            .techniques
            .iter()
            .map(|t| {
                let mut entry = json!({
                    "id": t.id,
                    "confidence": t.confidence,
                    "evidence": serde_json::to_value(&t.evidence).unwrap_or_default(),
                });
                if !t.replaces_revoked_id.is_empty() {
                    entry["replaces_revoked_id"] = json!(t.replaces_revoked_id);
                }
                entry
            })
            .collect();
        d.set("attackmesh.techniques", Value::Array(techniques));
        let actors: Vec<Value> = m
            .threat_actors
            .iter()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect();
        d.set("attackmesh.threat_actors", Value::Array(actors));
    }
    let in_original = original == Original::Keep && attributes_repeat_original(event);
    if !event.attributes.is_empty() && !in_original {
        d.set("attackmesh.attributes", json!(event.attributes));
    }
    if let Some(c) = &event.campaign {
        d.set("attackmesh.campaign", crate::sinks::util::campaign::summary_object(c));
    }
}
