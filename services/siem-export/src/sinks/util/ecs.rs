//! EnrichedEvent → ECS 9.x document for Elastic Security: what the Elasticsearch sink indexes
//! and what the file sink writes in its `ecs` shape.
//!
//! Every field name and type exists in ECS (tested against the ECS field definitions), except
//! the custom `attackmesh.*` object. ATT&CK attribution goes to the flat `threat.*` arrays
//! (`threat.tactic.id`, `threat.technique.id`, `threat.technique.subtechnique.id`, …), which
//! lose the tactic ↔ technique pairing; the pairing is kept beside them in `attackmesh.threat`,
//! shaped like an Elastic Security rule's `threat` array (one entry per tactic, with its
//! techniques and sub-techniques) and mapped `nested`, by id only: the names and ATT&CK pages
//! of those ids are in `threat.*` already. Candidate actors appear in `threat.group.*` only
//! with a score of at least [`GROUP_CLAIM_SCORE`](super::attack::GROUP_CLAIM_SCORE) (ranked
//! candidates with scores stay in `attackmesh.threat_actors`). A campaign alert adds its
//! entities to `related.*` and the campaign itself as `attackmesh.campaign`.
//!
//! Beside `threat.*`, `attackmesh.techniques` keeps only what it lacks (confidence, evidence),
//! the rule packs are in `rule.version` alone (those that gave evidence), and the detector's
//! record is either `event.original` or `attackmesh.attributes` ([`Original`]): no field is
//! written twice.
//!
//! The document is written straight into the caller's buffer (one per batch) by the
//! crate's small JSON writer: no `serde_json::Value` tree per event. Keys come in a fixed
//! order and empty values (`""`, `[]`, `{}`, a missing time) are left out. This module does no
//! I/O.

use std::{borrow::Cow, cell::RefCell, net::IpAddr};

use attackmesh::proto::{
    AttributionStatus, DetectorKind, Endpoint, EnrichedEvent, EnrichmentMetadata, EvidenceSource, IndicatorType,
};

use attackmesh::{
    held::EventView,
    json::{Json, Rfc3339},
};
use attackmesh_attack::Kb;

use super::{
    Original,
    attack::{AttackView, FRAMEWORK},
    attributes_repeat_original, rule_id, rule_name,
};

/// The ECS version the documents follow (`ecs.version` of every document).
pub const ECS_VERSION: &str = "9.4.0";
/// `event.dataset` of every document.
pub const DATASET: &str = "attackmesh.alerts";

/// Appends the document for `event` to `out` (no newline); `ingested` is when attackmesh hands
/// it over (`event.ingested`). `original` says whether `event.original` is written. `kb` fills in
/// a compact event's details, as for [`AttackView::of`].
pub fn write_document(
    held: &impl EventView<EnrichedEvent>,
    ingested: chrono::DateTime<chrono::Utc>,
    original: Original,
    kb: Option<&Kb>,
    out: &mut Vec<u8>,
) {
    let event = held.event();
    let view = AttackView::of(event, kb);
    let mut j = Json::object(out);
    if let Some(ts) = &event.timestamp {
        j.rfc3339("@timestamp", ts, Rfc3339::ZULU);
    }
    j.obj("ecs");
    j.str("version", ECS_VERSION);
    j.end();
    j.str("message", &event.description);
    event_fields(&mut j, event, &view, ingested, original);
    endpoint(&mut j, "source", event.source.as_ref());
    endpoint(&mut j, "destination", event.destination.as_ref());
    process(&mut j, event);
    rule_and_observer(&mut j, held);
    related(&mut j, event);
    j.obj("threat");
    threat(&mut j, &view);
    super::ecs_indicators::typed(&mut j, &event.related_indicators);
    j.end();
    j.obj("attackmesh");
    pairing(&mut j, &view);
    super::ecs_indicators::untyped(&mut j, &event.related_indicators);
    custom(&mut j, held, &view, original);
    j.end();
    j.finish();
}

/// The document for `event` as a JSON value, for tests that look into it.
#[cfg(test)]
pub(crate) fn document(
    event: &EnrichedEvent,
    ingested: chrono::DateTime<chrono::Utc>,
    original: Original,
) -> serde_json::Value {
    let mut out = Vec::new();
    write_document(event, ingested, original, None, &mut out);
    serde_json::from_slice(&out).unwrap()
}

fn event_fields(
    j: &mut Json<'_>,
    event: &EnrichedEvent,
    view: &AttackView<'_>,
    ingested: chrono::DateTime<chrono::Utc>,
    original: Original,
) {
    j.obj("event");
    j.str("kind", "alert");
    let has_ip = [&event.source, &event.destination]
        .iter()
        .any(|e| e.as_ref().is_some_and(|e| !e.ip.is_empty()));
    let threat = !event.technique_ids.is_empty() || !event.related_indicators.is_empty();
    j.arr("category");
    j.item_str("intrusion_detection");
    if has_ip {
        j.item_str("network");
    }
    if threat {
        j.item_str("threat");
    }
    j.end();
    j.arr("type");
    j.item_str("info");
    if threat {
        j.item_str("indicator");
    }
    j.end();
    j.int("severity", view.severity_number());
    j.float("risk_score", (event.confidence_score * 100.0 * 100.0).round() / 100.0);
    j.str("dataset", DATASET);
    j.str("module", "attackmesh");
    j.str("provider", &event.source_service);
    j.str("action", &event.event_type);
    j.str("id", &event.event_id);
    if let Some(created) = &event.enriched_at {
        j.rfc3339("created", created, Rfc3339::ZULU);
    }
    let ingested = pbjson_types::Timestamp {
        seconds: ingested.timestamp(),
        nanos: ingested.timestamp_subsec_nanos() as i32,
    };
    j.rfc3339("ingested", &ingested, Rfc3339::ZULU_MILLIS);
    if original == Original::Keep {
        j.str("original", &event.original);
    }
    j.end();
}

fn endpoint(j: &mut Json<'_>, side: &str, e: Option<&Endpoint>) {
    let Some(e) = e else { return };
    let ip = e.ip.parse::<IpAddr>().ok();
    j.obj(side);
    if let Some(ip) = &ip {
        j.ip("ip", ip);
    }
    if e.port > 0 {
        j.int("port", i64::from(e.port));
    }
    j.str("domain", &e.hostname);
    match &ip {
        Some(ip) => j.ip("address", ip),
        None => j.str("address", &e.hostname),
    }
    j.obj("user");
    j.str("name", &e.user);
    j.end();
    j.end();
}

fn process(j: &mut Json<'_>, event: &EnrichedEvent) {
    let process = event
        .source
        .as_ref()
        .and_then(|e| e.process.as_ref())
        .or(event.destination.as_ref().and_then(|e| e.process.as_ref()));
    let Some(p) = process else { return };
    j.obj("process");
    if p.pid > 0 {
        j.int("pid", i64::from(p.pid));
    }
    j.str("name", &p.name);
    j.str("executable", &p.executable);
    j.str("command_line", &p.command_line);
    j.obj("parent");
    j.str("name", &p.parent_name);
    j.end();
    j.end();
}

fn rule_and_observer(j: &mut Json<'_>, held: &impl EventView<EnrichedEvent>) {
    let event = held.event();
    j.obj("rule");
    j.str("name", rule_name(event));
    j.str("category", &event.event_type);
    j.str("id", rule_id(held));
    j.str("ruleset", &event.original_format);
    if let Some(m) = &event.metadata {
        j.str("version", &packs_used(m));
    }
    j.end();
    j.obj("observer");
    j.str("name", &event.source_service);
    j.str("product", &event.original_format);
    let kind = match DetectorKind::try_from(event.detector_kind).unwrap_or(DetectorKind::Unspecified) {
        DetectorKind::TrafficMonitor => "ids",
        DetectorKind::BehaviouralAnalysis => "behavioural-analysis",
        DetectorKind::Decoy => "honeypot",
        DetectorKind::Other | DetectorKind::Unspecified => "sensor",
    };
    j.str("type", kind);
    j.end();
}

/// The rule packs (`name@version`, comma-separated) whose rules gave evidence: a pack's rule ids
/// start with `<name>/`. Every loaded pack when no evidence names one; none without evidence.
fn packs_used(m: &EnrichmentMetadata) -> Cow<'_, str> {
    // The packs that gave evidence, each once, found in one pass: an event's evidence names a
    // few packs, and looking each loaded pack up in its evidence again costs more. A byte
    // search: `split_once` sets up a substring search for each short rule id.
    let mut gave: Vec<&str> = Vec::new();
    for e in m.techniques.iter().flat_map(|t| &t.evidence) {
        if let Some(slash) = e.rule_id.bytes().position(|b| b == b'/')
            && !gave.contains(&&e.rule_id[..slash])
        {
            gave.push(&e.rule_id[..slash]);
        }
    }
    if gave.is_empty() {
        return Cow::Borrowed("");
    }
    let subset = PACKS_SEEN.with(|seen| {
        let Ok(mut seen) = seen.try_borrow_mut() else {
            return subset_of(&m.rule_pack_version, &gave);
        };
        let same = |p: &&PacksUsed| {
            p.loaded == m.rule_pack_version && p.gave.iter().map(String::as_str).eq(gave.iter().copied())
        };
        if let Some(p) = seen.iter().find(same) {
            return p.subset.clone();
        }
        let subset = subset_of(&m.rule_pack_version, &gave);
        if seen.len() == PACKS_SEEN_MAX {
            seen.remove(0);
        }
        seen.push(PacksUsed {
            loaded: m.rule_pack_version.clone(),
            gave: gave.iter().map(|&p| p.to_owned()).collect(),
            subset: subset.clone(),
        });
        subset
    });
    subset.map_or(Cow::Borrowed(&m.rule_pack_version), Cow::Owned)
}

/// How many (loaded packs, packs that gave evidence) pairs [`PACKS_SEEN`] remembers.
const PACKS_SEEN_MAX: usize = 8;

thread_local! {
    /// What [`packs_used`] made of the pairs it saw last on this thread. Every event of one
    /// attribution engine carries the same list of loaded packs, and a detector's events name a
    /// few subsets of it, so the list is split and matched once per subset instead of once per
    /// event: it was an eighth of writing the ECS document of a real Suricata event.
    static PACKS_SEEN: RefCell<Vec<PacksUsed>> = const { RefCell::new(Vec::new()) };
}

/// One pair [`packs_used`] saw, and its answer.
struct PacksUsed {
    loaded: String,
    gave: Vec<String>,
    /// See [`subset_of`].
    subset: Option<String>,
}

/// The packs of `loaded` (comma-separated `name@version`) named in `gave`, in `loaded`'s order;
/// `None` when that is every pack of it, or none.
fn subset_of(loaded: &str, gave: &[&str]) -> Option<String> {
    // One pass over the loaded packs (a deployment loads a dozen or so), building the subset
    // as it goes.
    let mut subset = String::new();
    let (mut every, mut some) = (true, false);
    for pack in loaded.split(',') {
        let name = pack.split_once('@').map_or(pack, |(name, _)| name);
        if gave.contains(&name) {
            some = true;
            if !subset.is_empty() {
                subset.push(',');
            }
            subset.push_str(pack);
        } else {
            every = false;
        }
    }
    (some && !every).then_some(subset)
}

/// Adds `value` to `list` once (empty values never).
fn push_unique<T: PartialEq>(list: &mut Vec<T>, value: T, empty: bool) {
    if !empty && !list.contains(&value) {
        list.push(value);
    }
}

fn related(j: &mut Json<'_>, event: &EnrichedEvent) {
    let (mut ips, mut users, mut hosts) = (Vec::new(), Vec::new(), Vec::new());
    let mut hashes: Vec<String> = Vec::new();
    for e in [&event.source, &event.destination].into_iter().flatten() {
        if let Ok(ip) = e.ip.parse::<IpAddr>() {
            push_unique(&mut ips, ip, false);
        }
        push_unique(&mut users, e.user.as_str(), e.user.is_empty());
        push_unique(&mut hosts, e.hostname.as_str(), e.hostname.is_empty());
    }
    if let Some(c) = &event.campaign {
        let (c_ips, c_hosts, c_users) = super::campaign::entity_refs(c);
        c_ips.into_iter().for_each(|v| push_unique(&mut ips, v, false));
        c_hosts
            .into_iter()
            .for_each(|v| push_unique(&mut hosts, v, v.is_empty()));
        c_users
            .into_iter()
            .for_each(|v| push_unique(&mut users, v, v.is_empty()));
    }
    for i in &event.related_indicators {
        match IndicatorType::try_from(i.r#type).unwrap_or(IndicatorType::Unspecified) {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                if let Ok(ip) = i.value.parse::<IpAddr>() {
                    push_unique(&mut ips, ip, false);
                }
            }
            IndicatorType::UserAccount => push_unique(&mut users, i.value.as_str(), i.value.is_empty()),
            IndicatorType::FileMd5 | IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::X509Sha1 => {
                push_unique(&mut hashes, i.value.to_ascii_lowercase(), i.value.is_empty());
            }
            IndicatorType::Domain => push_unique(&mut hosts, i.value.as_str(), i.value.is_empty()),
            _ => {}
        }
    }
    j.obj("related");
    j.arr("ip");
    ips.iter().for_each(|ip| j.item_ip(ip));
    j.end();
    j.strs("user", users);
    j.strs("hash", hashes.iter().map(String::as_str));
    j.strs("hosts", hosts);
    j.end();
}

fn threat(j: &mut Json<'_>, view: &AttackView<'_>) {
    if view.is_empty() {
        return;
    }
    j.str("framework", FRAMEWORK);
    j.obj("tactic");
    j.unique_strs("id", view.tactics.iter().map(|t| t.id));
    j.unique_strs("name", view.tactics.iter().map(|t| t.name));
    j.unique_strs("reference", view.tactics.iter().map(|t| t.reference.as_str()));
    j.end();
    j.obj("technique");
    j.unique_strs("id", view.techniques.iter().map(|t| t.parent));
    j.unique_strs("name", view.techniques.iter().map(|t| t.parent_name));
    j.unique_strs("reference", view.techniques.iter().map(|t| t.parent_reference.as_str()));
    let subs = || view.techniques.iter().filter(|t| t.is_sub());
    j.obj("subtechnique");
    j.unique_strs("id", subs().map(|t| t.id));
    j.unique_strs("name", subs().map(|t| t.name));
    j.unique_strs("reference", subs().map(|t| t.reference.as_str()));
    j.end();
    j.end();
    j.obj("group");
    j.strs("id", view.groups.iter().map(|g| g.actor.group_id));
    j.strs("name", view.groups.iter().map(|g| g.actor.name));
    j.unique_strs(
        "alias",
        view.groups
            .iter()
            .flat_map(|g| g.actor.aliases.iter().map(String::as_str)),
    );
    j.strs("reference", view.groups.iter().map(|g| g.reference.as_str()));
    j.end();
}

/// `attackmesh.threat`: the pairing in Elastic Security's rule `threat` shape, by id: one entry
/// per tactic (in id order), each with its parent techniques (in id order) and their
/// sub-techniques (in the order attributed).
fn pairing(j: &mut Json<'_>, view: &AttackView<'_>) {
    // (tactic, parent technique, order attributed, sub-technique)
    let mut rows: Vec<(&str, &str, usize, Option<&str>)> = Vec::new();
    for (order, t) in view.techniques.iter().enumerate() {
        for tac in t.tactics() {
            rows.push((tac.id, t.parent, order, t.is_sub().then_some(t.id)));
        }
    }
    rows.sort_unstable();
    j.arr("threat");
    let mut rest = rows.as_slice();
    while let Some(&(tactic, ..)) = rest.first() {
        let n = rest.iter().take_while(|r| r.0 == tactic).count();
        let (of_tactic, tail) = rest.split_at(n);
        rest = tail;
        j.item_obj();
        j.obj("tactic");
        j.str_kept("id", tactic);
        j.end();
        j.arr_kept("technique");
        let mut techniques = of_tactic;
        while let Some(&(_, parent, ..)) = techniques.first() {
            let n = techniques.iter().take_while(|r| r.1 == parent).count();
            let (of_parent, tail) = techniques.split_at(n);
            techniques = tail;
            j.item_obj();
            j.str_kept("id", parent);
            j.arr("subtechnique");
            for sub in of_parent.iter().filter_map(|r| r.3) {
                j.item_obj();
                j.str_kept("id", sub);
                j.end();
            }
            j.end();
            j.end();
        }
        j.end();
        j.end();
    }
    j.end();
}

fn custom(j: &mut Json<'_>, held: &impl EventView<EnrichedEvent>, view: &AttackView<'_>, original: Original) {
    let event = held.event();
    j.str("submitted_by", &event.submitted_by);
    let kind = DetectorKind::try_from(event.detector_kind).unwrap_or(DetectorKind::Unspecified);
    j.str("detector_kind", kind.as_str_name());
    j.strs("technique_ids", event.technique_ids.iter().map(String::as_str));
    j.float("confidence_score", event.confidence_score);
    j.str("attack_version", &event.attack_version);
    let status = AttributionStatus::try_from(event.attribution_status).unwrap_or(AttributionStatus::Unspecified);
    j.str("attribution_status", status.as_str_name());
    j.int("revision", i64::from(event.revision));
    j.str("severity", view.severity_name());
    if let Some(m) = &event.metadata {
        // Names, tactics and pages are in `threat.*`: only what they lack.
        j.arr("techniques");
        for t in &m.techniques {
            j.item_obj();
            j.str_kept("id", &t.id);
            j.float_kept("confidence", t.confidence);
            evidence(j, &t.evidence);
            j.str("replaces_revoked_id", &t.replaces_revoked_id);
            j.end();
        }
        j.end();
        j.arr("threat_actors");
        for a in &view.actors {
            j.item_obj();
            j.str_kept("group_id", a.group_id);
            j.str_kept("name", a.name);
            j.arr_kept("aliases");
            a.aliases.iter().for_each(|x| j.item_str(x));
            j.end();
            j.float_kept("score", a.score);
            j.arr_kept("matched_techniques");
            a.matched_techniques.iter().for_each(|x| j.item_str(x));
            j.end();
            j.str_kept("stix_id", a.stix_id);
            j.end();
        }
        j.end();
    }
    let in_original = original == Original::Keep && attributes_repeat_original(held);
    if !in_original {
        j.obj("attributes");
        for (k, v) in held.attributes() {
            j.str_kept(k, v);
        }
        j.end();
    }
    if let Some(c) = &event.campaign {
        j.value("campaign", &super::campaign::summary_object(c));
    }
}

/// A technique's evidence in the contract's JSON (`source` by name); `null` when a source is
/// not one the contract knows, as its JSON mapping cannot name it.
fn evidence(j: &mut Json<'_>, list: &[attackmesh::proto::Evidence]) {
    if list.iter().any(|e| EvidenceSource::try_from(e.source).is_err()) {
        j.null("evidence");
        return;
    }
    j.arr_kept("evidence");
    for e in list {
        let source = EvidenceSource::try_from(e.source).unwrap_or(EvidenceSource::Unspecified);
        j.item_obj();
        j.str_kept("source", source.as_str_name());
        j.str_kept("rule_id", &e.rule_id);
        j.str_kept("detail", &e.detail);
        j.float_kept("confidence", e.confidence);
        j.end();
    }
    j.end();
}

#[cfg(test)]
mod tests {
    use attackmesh::proto::{Evidence, TechniqueDetail};

    use super::*;

    fn metadata(loaded: &str, rule_ids: &[&str]) -> EnrichmentMetadata {
        EnrichmentMetadata {
            rule_pack_version: loaded.into(),
            techniques: vec![TechniqueDetail {
                id: "T1046".into(),
                evidence: rule_ids
                    .iter()
                    .map(|r| Evidence {
                        rule_id: (*r).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The answers remembered are keyed on the loaded list and the packs that gave evidence
    /// both: more pairs than are remembered, each asked for twice in a row (the second time
    /// answered from memory) and again in later rounds (long forgotten by then), always get their
    /// own answer.
    #[test]
    fn every_pair_gets_its_own_rule_version_however_often_asked() {
        let lists: Vec<String> = (0..PACKS_SEEN_MAX + 3).map(|i| format!("a@{i},b@1,c@{i}")).collect();
        for _round in 0..3 {
            for (i, loaded) in lists.iter().enumerate() {
                for _twice in 0..2 {
                    let used = |ids: &[&str]| packs_used(&metadata(loaded, ids)).into_owned();
                    assert_eq!(used(&["b/r"]), "b@1");
                    assert_eq!(used(&["c/r", "a/r"]), format!("a@{i},c@{i}"));
                    assert_eq!(used(&["a/r", "b/r", "c/r"]), *loaded);
                    assert_eq!(used(&["z/r"]), *loaded);
                    assert_eq!(used(&["no-pack"]), "");
                }
            }
        }
    }
}
