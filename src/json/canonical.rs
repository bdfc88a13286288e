//! Canonical JSON of an [`EnrichedEvent`] written field by field into the caller's buffer: the
//! bytes the pbjson-generated serde implementations write through `serde_json` (every field in
//! schema order with the schema's names, defaults included, absent messages left out, enums by
//! name, maps in key order, RFC 3339 timestamps as chrono writes them), without going through
//! serde, without a `String` per timestamp and without copying the event to leave its
//! `original` out.
//!
//! A compact event (its ATT&CK details left for a knowledge base to fill in, see
//! `ExportRequest.compact_for_attack_version`) is written by [`write_compact_event`] with the
//! details looked up through [`AttackDetails`] as it goes: the bytes of the filled-in event,
//! without filling it in.
//!
//! Where the generated path has no answer it fails halfway through a document; this writer
//! stays total instead, so a line is always one JSON document: an enum value the schema does not
//! know is written as its number (proto3 JSON's rule for unknown values), and a timestamp chrono
//! cannot represent as `null` (read back as absent).

use pbjson_types::Timestamp;

use super::{
    time::{Rfc3339, write_rfc3339},
    writer::{escaped, number},
};
use crate::held::EventView;
use crate::proto::{
    ActorEvidence, AttributionStatus, Campaign, CampaignEntity, CampaignRisk, CampaignStatus, CampaignTechnique,
    DetectorEvents, DetectorKind, Endpoint, EnrichedEvent, EnrichmentMetadata, EntityType, Evidence, EvidenceSource,
    Indicator, IndicatorType, Process, RiskRuleHit, Severity, Tactic, TechniqueDetail, ThreatActor,
};

/// What a knowledge base tells of techniques and groups, borrowed: the details a compact event
/// leaves out. Implemented by the ATT&CK knowledge base, which decides what a filled-in detail
/// holds; [`write_compact_event`] only lays it out.
pub trait AttackDetails {
    /// The technique whose id is exactly `id`, with its tactics in matrix order; `None` leaves
    /// the event's own fields of it as they are.
    fn technique(&self, id: &str) -> Option<(TechniqueText<'_>, impl Iterator<Item = TacticText<'_>>)>;
    /// The group whose id is exactly `id`; `None` leaves the event's own fields of it as they
    /// are.
    fn group(&self, id: &str) -> Option<GroupText<'_>>;
}

/// A technique's details, borrowed (see [`AttackDetails`]).
#[derive(Debug, Clone, Copy)]
pub struct TechniqueText<'a> {
    /// Name.
    pub name: &'a str,
    /// ATT&CK page.
    pub url: &'a str,
    /// STIX id.
    pub stix_id: &'a str,
}

/// A tactic, borrowed (see [`AttackDetails`]).
#[derive(Debug, Clone, Copy)]
pub struct TacticText<'a> {
    /// ATT&CK id.
    pub id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Shortname.
    pub shortname: &'a str,
}

/// A group's details, borrowed (see [`AttackDetails`]).
#[derive(Debug, Clone, Copy)]
pub struct GroupText<'a> {
    /// Name.
    pub name: &'a str,
    /// Aliases.
    pub aliases: &'a [String],
    /// STIX id.
    pub stix_id: &'a str,
}

/// Appends the canonical JSON of `event` to `out` (no newline): what
/// [`to_json`](super::to_json) writes for it, with `original` written as `""` unless
/// `with_original`. Its attributes are read wherever they are held.
pub fn write_enriched_event(event: &impl EventView<EnrichedEvent>, with_original: bool, out: &mut Vec<u8>) {
    write_event(event, with_original, out, |out, metadata| metadata.write(out));
}

/// [`write_enriched_event`] for a compact event, its details filled in from `details` as they
/// are written: the bytes written for the event once filled in. A technique or threat actor
/// left without a name is one to fill in (every ATT&CK technique and group has a name): its
/// name, tactics, url and STIX id, or name, aliases and STIX id, come from `details`; one with a
/// name, or one `details` does not know, is written as it is.
pub fn write_compact_event<D: AttackDetails>(
    event: &impl EventView<EnrichedEvent>,
    with_original: bool,
    details: &D,
    out: &mut Vec<u8>,
) {
    write_event(event, with_original, out, |out, metadata| {
        key(out, "{\"techniques\":");
        out.push(b'[');
        for (i, t) in metadata.techniques.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_technique(t, details, out);
        }
        out.push(b']');
        key(out, ",\"threat_actors\":");
        out.push(b'[');
        for (i, actor) in metadata.threat_actors.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match actor.name.is_empty().then(|| details.group(&actor.group_id)).flatten() {
                Some(g) => write_actor(actor, g.name, g.aliases, g.stix_id, out),
                None => actor.write(out),
            }
        }
        out.push(b']');
        str_field(out, ",\"rule_pack_version\":", &metadata.rule_pack_version);
        out.push(b'}');
    });
}

/// The event's fields in order, its metadata written by `metadata`.
fn write_event(
    view: &impl EventView<EnrichedEvent>,
    with_original: bool,
    out: &mut Vec<u8>,
    metadata: impl Fn(&mut Vec<u8>, &EnrichmentMetadata),
) {
    let e = view.event();
    out.reserve(1024 + if with_original { e.original.len() } else { 0 });
    str_field(out, "{\"event_id\":", &e.event_id);
    timestamp_field(out, ",\"timestamp\":", e.timestamp.as_ref());
    str_field(out, ",\"source_service\":", &e.source_service);
    key(out, ",\"detector_kind\":");
    enum_value::<DetectorKind>(out, e.detector_kind, DetectorKind::as_str_name);
    str_field(out, ",\"event_type\":", &e.event_type);
    message_field(out, ",\"source\":", e.source.as_ref());
    message_field(out, ",\"destination\":", e.destination.as_ref());
    key(out, ",\"severity\":");
    enum_value::<Severity>(out, e.severity, Severity::as_str_name);
    str_field(out, ",\"description\":", &e.description);
    strs_field(out, ",\"technique_ids\":", &e.technique_ids);
    float_field(out, ",\"confidence_score\":", e.confidence_score);
    list_field(out, ",\"related_indicators\":", &e.related_indicators);
    if let Some(m) = &e.metadata {
        key(out, ",\"metadata\":");
        metadata(out, m);
    }
    str_field(out, ",\"attack_version\":", &e.attack_version);
    key(out, ",\"attribution_status\":");
    enum_value::<AttributionStatus>(out, e.attribution_status, AttributionStatus::as_str_name);
    key(out, ",\"attributes\":");
    map(out, view.attributes());
    str_field(out, ",\"original\":", if with_original { &e.original } else { "" });
    str_field(out, ",\"original_format\":", &e.original_format);
    timestamp_field(out, ",\"enriched_at\":", e.enriched_at.as_ref());
    uint_field(out, ",\"revision\":", e.revision);
    str_field(out, ",\"submitted_by\":", &e.submitted_by);
    str_field(out, ",\"campaign_id\":", &e.campaign_id);
    message_field(out, ",\"campaign\":", e.campaign.as_deref());
    out.push(b'}');
}

/// A technique of a compact event, its details from `details` when it knows the id.
fn write_technique<D: AttackDetails>(t: &TechniqueDetail, details: &D, out: &mut Vec<u8>) {
    let Some((text, tactics)) = t.name.is_empty().then(|| details.technique(&t.id)).flatten() else {
        t.write(out);
        return;
    };
    str_field(out, "{\"id\":", &t.id);
    str_field(out, ",\"name\":", text.name);
    key(out, ",\"tactics\":");
    out.push(b'[');
    for (i, tactic) in tactics.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str_field(out, "{\"id\":", tactic.id);
        str_field(out, ",\"name\":", tactic.name);
        str_field(out, ",\"shortname\":", tactic.shortname);
        out.push(b'}');
    }
    out.push(b']');
    str_field(out, ",\"url\":", text.url);
    float_field(out, ",\"confidence\":", t.confidence);
    list_field(out, ",\"evidence\":", &t.evidence);
    str_field(out, ",\"stix_id\":", text.stix_id);
    str_field(out, ",\"replaces_revoked_id\":", &t.replaces_revoked_id);
    out.push(b'}');
}

/// A threat actor with its name, aliases and STIX id as given.
fn write_actor(actor: &ThreatActor, name: &str, aliases: &[String], stix_id: &str, out: &mut Vec<u8>) {
    str_field(out, "{\"group_id\":", &actor.group_id);
    str_field(out, ",\"name\":", name);
    strs_field(out, ",\"aliases\":", aliases);
    float_field(out, ",\"score\":", actor.score);
    strs_field(out, ",\"matched_techniques\":", &actor.matched_techniques);
    str_field(out, ",\"stix_id\":", stix_id);
    out.push(b'}');
}

/// A nested message, written as its object.
trait Canonical {
    fn write(&self, out: &mut Vec<u8>);
}

impl Canonical for Endpoint {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"ip\":", &self.ip);
        uint_field(out, ",\"port\":", self.port);
        str_field(out, ",\"hostname\":", &self.hostname);
        str_field(out, ",\"user\":", &self.user);
        message_field(out, ",\"process\":", self.process.as_ref());
        out.push(b'}');
    }
}

impl Canonical for Process {
    fn write(&self, out: &mut Vec<u8>) {
        uint_field(out, "{\"pid\":", self.pid);
        str_field(out, ",\"name\":", &self.name);
        str_field(out, ",\"executable\":", &self.executable);
        str_field(out, ",\"command_line\":", &self.command_line);
        str_field(out, ",\"parent_name\":", &self.parent_name);
        out.push(b'}');
    }
}

impl Canonical for Indicator {
    fn write(&self, out: &mut Vec<u8>) {
        key(out, "{\"type\":");
        enum_value::<IndicatorType>(out, self.r#type, IndicatorType::as_str_name);
        str_field(out, ",\"value\":", &self.value);
        out.push(b'}');
    }
}

impl Canonical for EnrichmentMetadata {
    fn write(&self, out: &mut Vec<u8>) {
        list_field(out, "{\"techniques\":", &self.techniques);
        list_field(out, ",\"threat_actors\":", &self.threat_actors);
        str_field(out, ",\"rule_pack_version\":", &self.rule_pack_version);
        out.push(b'}');
    }
}

impl Canonical for TechniqueDetail {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"id\":", &self.id);
        str_field(out, ",\"name\":", &self.name);
        list_field(out, ",\"tactics\":", &self.tactics);
        str_field(out, ",\"url\":", &self.url);
        float_field(out, ",\"confidence\":", self.confidence);
        list_field(out, ",\"evidence\":", &self.evidence);
        str_field(out, ",\"stix_id\":", &self.stix_id);
        str_field(out, ",\"replaces_revoked_id\":", &self.replaces_revoked_id);
        out.push(b'}');
    }
}

impl Canonical for Tactic {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"id\":", &self.id);
        str_field(out, ",\"name\":", &self.name);
        str_field(out, ",\"shortname\":", &self.shortname);
        out.push(b'}');
    }
}

impl Canonical for Evidence {
    fn write(&self, out: &mut Vec<u8>) {
        key(out, "{\"source\":");
        enum_value::<EvidenceSource>(out, self.source, EvidenceSource::as_str_name);
        str_field(out, ",\"rule_id\":", &self.rule_id);
        str_field(out, ",\"detail\":", &self.detail);
        float_field(out, ",\"confidence\":", self.confidence);
        out.push(b'}');
    }
}

impl Canonical for ThreatActor {
    fn write(&self, out: &mut Vec<u8>) {
        write_actor(self, &self.name, &self.aliases, &self.stix_id, out);
    }
}

impl Canonical for Campaign {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"campaign_id\":", &self.campaign_id);
        uint_field(out, ",\"revision\":", self.revision);
        key(out, ",\"status\":");
        enum_value::<CampaignStatus>(out, self.status, CampaignStatus::as_str_name);
        list_field(out, ",\"entities\":", &self.entities);
        timestamp_field(out, ",\"first_seen\":", self.first_seen.as_ref());
        timestamp_field(out, ",\"last_seen\":", self.last_seen.as_ref());
        list_field(out, ",\"detectors\":", &self.detectors);
        list_field(out, ",\"techniques\":", &self.techniques);
        list_field(out, ",\"tactics\":", &self.tactics);
        message_field(out, ",\"risk\":", self.risk.as_ref());
        list_field(out, ",\"candidate_groups\":", &self.candidate_groups);
        key(out, ",\"actor_evidence\":");
        enum_value::<ActorEvidence>(out, self.actor_evidence, ActorEvidence::as_str_name);
        strs_field(out, ",\"merged_ids\":", &self.merged_ids);
        str_field(out, ",\"summary\":", &self.summary);
        str_field(out, ",\"attack_version\":", &self.attack_version);
        str_field(out, ",\"merged_into\":", &self.merged_into);
        out.push(b'}');
    }
}

impl Canonical for CampaignEntity {
    fn write(&self, out: &mut Vec<u8>) {
        key(out, "{\"type\":");
        enum_value::<EntityType>(out, self.r#type, EntityType::as_str_name);
        str_field(out, ",\"value\":", &self.value);
        float_field(out, ",\"risk_score\":", self.risk_score);
        uint_field(out, ",\"event_count\":", self.event_count);
        timestamp_field(out, ",\"first_seen\":", self.first_seen.as_ref());
        out.push(b'}');
    }
}

impl Canonical for DetectorEvents {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"source_service\":", &self.source_service);
        key(out, ",\"detector_kind\":");
        enum_value::<DetectorKind>(out, self.detector_kind, DetectorKind::as_str_name);
        strs_field(out, ",\"event_ids\":", &self.event_ids);
        uint_field(out, ",\"event_count\":", self.event_count);
        out.push(b'}');
    }
}

impl Canonical for CampaignTechnique {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"id\":", &self.id);
        str_field(out, ",\"name\":", &self.name);
        strs_field(out, ",\"tactic_ids\":", &self.tactic_ids);
        timestamp_field(out, ",\"first_seen\":", self.first_seen.as_ref());
        str_field(out, ",\"stix_id\":", &self.stix_id);
        uint_field(out, ",\"event_count\":", self.event_count);
        str_field(out, ",\"first_event_id\":", &self.first_event_id);
        str_field(out, ",\"first_asset\":", &self.first_asset);
        out.push(b'}');
    }
}

impl Canonical for CampaignRisk {
    fn write(&self, out: &mut Vec<u8>) {
        float_field(out, "{\"score\":", self.score);
        list_field(out, ",\"objects\":", &self.objects);
        list_field(out, ",\"rules\":", &self.rules);
        str_field(out, ",\"formula\":", &self.formula);
        out.push(b'}');
    }
}

impl Canonical for RiskRuleHit {
    fn write(&self, out: &mut Vec<u8>) {
        str_field(out, "{\"rule\":", &self.rule);
        key(out, ",\"object_type\":");
        enum_value::<EntityType>(out, self.object_type, EntityType::as_str_name);
        str_field(out, ",\"object\":", &self.object);
        str_field(out, ",\"detail\":", &self.detail);
        timestamp_field(out, ",\"fired_at\":", self.fired_at.as_ref());
        out.push(b'}');
    }
}

/// Appends a key already punctuated (`,"name":`, or `{"name":` for an object's first field).
fn key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(key.as_bytes());
}

fn str_field(out: &mut Vec<u8>, k: &str, value: &str) {
    key(out, k);
    escaped(out, value);
}

fn strs_field(out: &mut Vec<u8>, k: &str, values: &[String]) {
    key(out, k);
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escaped(out, v);
    }
    out.push(b']');
}

fn list_field<T: Canonical>(out: &mut Vec<u8>, k: &str, items: &[T]) {
    key(out, k);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write(out);
    }
    out.push(b']');
}

/// A message field: left out when absent, as the generated code leaves it out.
fn message_field<T: Canonical>(out: &mut Vec<u8>, k: &str, message: Option<&T>) {
    if let Some(m) = message {
        key(out, k);
        m.write(out);
    }
}

fn map<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escaped(out, k);
        out.push(b':');
        escaped(out, v);
    }
    out.push(b'}');
}

fn float_field(out: &mut Vec<u8>, k: &str, x: f64) {
    key(out, k);
    number(out, &x);
}

fn uint_field(out: &mut Vec<u8>, k: &str, n: u32) {
    key(out, k);
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// An enum by its name in the schema, or by its number when the schema has no such value.
fn enum_value<E: TryFrom<i32>>(out: &mut Vec<u8>, value: i32, name: fn(&E) -> &'static str) {
    match E::try_from(value) {
        // Schema names are upper-case letters, digits and underscores: nothing to escape.
        Ok(e) => {
            out.push(b'"');
            out.extend_from_slice(name(&e).as_bytes());
            out.push(b'"');
        }
        Err(_) => number(out, &value),
    }
}

/// A timestamp field: left out when absent; RFC 3339 in UTC with `+00:00` and as many fraction
/// digits (none, 3, 6 or 9) as the nanoseconds need, exactly as chrono's `to_rfc3339` writes it;
/// `null` for an instant chrono has not.
fn timestamp_field(out: &mut Vec<u8>, k: &str, ts: Option<&Timestamp>) {
    let Some(ts) = ts else { return };
    key(out, k);
    let at = out.len();
    out.push(b'"');
    if write_rfc3339(out, ts, Rfc3339::CANONICAL) {
        out.push(b'"');
    } else {
        out.truncate(at);
        out.extend_from_slice(b"null");
    }
}
