//! Builds STIX 2.1 objects from enriched events and from manually shared indicators.
//!
//! For every observable: an `indicator` (deterministic id over its pattern) carrying ATT&CK
//! labels (`mitre_attack:<ID>`), kill-chain phases (`mitre-attack` + tactic shortname) and
//! external references; `indicates` relationships to the real ATT&CK `attack-pattern` ids and,
//! when an actor is attributed with a score of at least [`StixOptions::min_actor_score`], to its
//! `intrusion-set`; and, for observations from events, a `sighting` (count, first/last seen).
//!
//! The ATT&CK objects themselves are referenced, not copied: their ids are MITRE's, and a copy
//! with attackmesh's own `created`/`modified` would be a conflicting version of MITRE's object in
//! any consumer that loaded ATT&CK (OpenCTI, MISP). Each indicator carries the technique's ATT&CK
//! id and URL in `external_references`, so it stays resolvable without the ATT&CK dataset.
//! Every technique and group is checked against the knowledge base; unknown ids are dropped.

use std::collections::BTreeMap;

use attackmesh::proto::{EnrichedEvent, Indicator, ThreatActor};
use attackmesh_attack::{Kb, Resolved};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Producer, SPEC_VERSION, StixObject, Tlp, TlpVersion, deterministic_id, pattern, timestamp};

/// Lowest actor score for which an `indicates` relationship to the group's intrusion-set is
/// emitted (the contract says below 0.5 is weak evidence, never a claim).
pub const DEFAULT_MIN_ACTOR_SCORE: f64 = 0.5;

/// How objects are built.
#[derive(Debug, Clone)]
pub struct StixOptions {
    /// The identity named as `created_by_ref`.
    pub producer: Producer,
    /// TLP level of every object.
    pub tlp: Tlp,
    /// TLP edition whose marking definitions are referenced.
    pub tlp_version: TlpVersion,
    /// Lowest actor score that links an intrusion-set.
    pub min_actor_score: f64,
    /// Emit a `sighting` per observed indicator (events only).
    pub sightings: bool,
    /// Creation time of new objects; `None` means now.
    pub now: Option<DateTime<Utc>>,
}

impl Default for StixOptions {
    fn default() -> Self {
        Self {
            producer: Producer::default(),
            tlp: Tlp::Amber,
            tlp_version: TlpVersion::V2,
            min_actor_score: DEFAULT_MIN_ACTOR_SCORE,
            sightings: true,
            now: None,
        }
    }
}

impl StixOptions {
    /// The marking-definition object referenced by every object.
    pub fn marking(&self) -> StixObject {
        self.tlp
            .marking(self.tlp_version)
            .or_else(|| Tlp::Red.marking(self.tlp_version))
            .unwrap_or_else(|| StixObject(Map::new()))
    }

    /// The objects every collection holds once: the producer identity and the TLP marking.
    pub fn base_objects(&self) -> Vec<StixObject> {
        vec![self.producer.object(), self.marking()]
    }
}

/// The id attackmesh gives the indicator of `pattern`.
pub fn indicator_id(pattern: &str) -> String {
    deterministic_id("indicator", pattern)
}

/// The id attackmesh gives a relationship of `relationship_type` from `source` to `target`.
pub fn relationship_id(relationship_type: &str, source: &str, target: &str) -> String {
    deterministic_id("relationship", &format!("{relationship_type}|{source}|{target}"))
}

/// The id attackmesh gives `producer`'s sighting of `indicator`.
pub fn sighting_id(indicator: &str, producer: &str) -> String {
    deterministic_id("sighting", &format!("{indicator}|{producer}"))
}

/// Whether `object`'s id is the one attackmesh (as `producer`) gives an object with its content:
/// an indicator of its pattern, a relationship between its ends, `producer`'s sighting of what
/// it sighted.
pub fn has_attackmesh_id(object: &StixObject, producer: &str) -> bool {
    let derived = match object.object_type() {
        "indicator" => indicator_id(object.str("pattern")),
        "relationship" => relationship_id(
            object.str("relationship_type"),
            object.str("source_ref"),
            object.str("target_ref"),
        ),
        "sighting" => sighting_id(object.str("sighting_of_ref"), producer),
        _ => return false,
    };
    derived == object.id()
}

/// An ATT&CK technique as linked from indicators.
#[derive(Debug, Clone, PartialEq)]
pub struct TechniqueLink {
    /// ATT&CK id, e.g. `T1110.001`.
    pub id: String,
    /// STIX id of the attack-pattern.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
    /// Kill-chain phase names (tactic shortnames).
    pub phases: Vec<String>,
}

/// Resolves technique ids against the knowledge base (revoked ids become their replacement;
/// unknown and deprecated ids are dropped), keeping the first occurrence's order.
pub fn technique_links<S: AsRef<str>>(kb: &Kb, ids: &[S]) -> Vec<TechniqueLink> {
    let mut out: Vec<TechniqueLink> = Vec::new();
    for id in ids {
        let technique = match kb.resolve(id.as_ref().trim()) {
            Resolved::Active(t) => t,
            Resolved::Revoked { replacement, .. } => replacement,
            Resolved::Deprecated(_) | Resolved::Unknown => {
                tracing::debug!(
                    technique = id.as_ref(),
                    "technique not in the knowledge base; not linked"
                );
                continue;
            }
        };
        if out.iter().any(|l| l.id == technique.id) {
            continue;
        }
        out.push(TechniqueLink {
            id: technique.id.clone(),
            stix_id: technique.stix_id.clone(),
            url: technique.url.clone(),
            phases: kb.tactics_of(technique).map(|t| t.shortname.clone()).collect(),
        });
    }
    out
}

/// Intrusion-set STIX ids of the actors scored at least `min_score` that the KB knows.
pub fn actor_links(kb: &Kb, actors: &[ThreatActor], min_score: f64) -> Vec<String> {
    let mut out = Vec::new();
    for actor in actors.iter().filter(|a| a.score >= min_score) {
        if let Some(group) = kb.group(&actor.group_id).filter(|g| g.is_active())
            && !out.contains(&group.stix_id)
        {
            out.push(group.stix_id.clone());
        }
    }
    out
}

/// What one batch of indicators shares.
struct Inputs<'a> {
    indicators: &'a [Indicator],
    techniques: Vec<TechniqueLink>,
    actors: Vec<String>,
    confidence: f64,
    description: String,
    valid_from: DateTime<Utc>,
    sighted: bool,
}

/// STIX objects for an enriched event's related indicators: indicators, `indicates`
/// relationships and sightings; for a campaign alert, the campaign's objects instead
/// ([`super::campaign::campaign_objects`]). The identity and marking they reference come from
/// [`StixOptions::base_objects`]. Indicators without a valid pattern are skipped.
pub fn stix_objects_for(event: &EnrichedEvent, kb: &Kb, options: &StixOptions) -> Vec<StixObject> {
    if let Some(campaign) = &event.campaign {
        return super::campaign::campaign_objects(campaign, kb, options);
    }
    let mut ids: Vec<&str> = event.technique_ids.iter().map(String::as_str).collect();
    if let Some(meta) = &event.metadata {
        ids.extend(meta.techniques.iter().map(|t| t.id.as_str()));
    }
    let actors = event
        .metadata
        .as_ref()
        .map(|m| m.threat_actors.as_slice())
        .unwrap_or_default();
    let valid_from = event
        .timestamp
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
        .unwrap_or_else(Utc::now);
    let description = format!(
        "Observed by attackmesh in `{}` detections from {}",
        event.event_type, event.source_service
    );
    build(
        Inputs {
            indicators: &event.related_indicators,
            techniques: technique_links(kb, &ids),
            actors: actor_links(kb, actors, options.min_actor_score),
            confidence: event.confidence_score,
            description,
            valid_from,
            sighted: true,
        },
        options,
    )
}

/// STIX objects for manually shared indicators linked to `technique_ids` (already attributed).
pub fn share_objects(
    indicators: &[Indicator],
    techniques: Vec<TechniqueLink>,
    actors: Vec<String>,
    confidence: f64,
    description: &str,
    options: &StixOptions,
) -> Vec<StixObject> {
    let now = options.now.unwrap_or_else(Utc::now);
    build(
        Inputs {
            indicators,
            techniques,
            actors,
            confidence,
            description: description.trim().to_owned(),
            valid_from: now,
            sighted: false,
        },
        options,
    )
}

fn build(inputs: Inputs<'_>, options: &StixOptions) -> Vec<StixObject> {
    let now = timestamp(options.now.unwrap_or_else(Utc::now));
    let producer = options.producer.id();
    let marking = options.marking().id().to_owned();
    let valid_from = timestamp(inputs.valid_from);
    let confidence = (inputs.confidence.clamp(0.0, 1.0) * 100.0).round() as i64;
    // One indicator per pattern, even when an event lists an observable twice.
    let mut by_pattern: BTreeMap<String, (&Indicator, u64)> = BTreeMap::new();
    for ind in inputs.indicators {
        match pattern::pattern_for(ind) {
            Ok(p) => by_pattern.entry(p).or_insert((ind, 0)).1 += 1,
            Err(why) => tracing::debug!(reason = %why, "indicator skipped"),
        }
    }
    let common = |object_type: &str, id: &str| {
        let mut m = Map::new();
        m.insert("type".into(), object_type.into());
        m.insert("spec_version".into(), SPEC_VERSION.into());
        m.insert("id".into(), id.into());
        m.insert("created".into(), now.clone().into());
        m.insert("modified".into(), now.clone().into());
        m.insert("created_by_ref".into(), producer.clone().into());
        m.insert("object_marking_refs".into(), json!([marking]));
        m
    };
    let mut out = Vec::new();
    for (pattern, (ind, count)) in by_pattern {
        let id = indicator_id(&pattern);
        let mut m = common("indicator", &id);
        m.insert("name".into(), pattern::display_name(ind).into());
        if !inputs.description.is_empty() {
            m.insert("description".into(), inputs.description.clone().into());
        }
        let kind = if inputs.techniques.is_empty() {
            "anomalous-activity"
        } else {
            "malicious-activity"
        };
        m.insert("indicator_types".into(), json!([kind]));
        m.insert("pattern".into(), pattern.into());
        m.insert("pattern_type".into(), "stix".into());
        m.insert("pattern_version".into(), SPEC_VERSION.into());
        m.insert("valid_from".into(), valid_from.clone().into());
        m.insert("confidence".into(), confidence.into());
        if !inputs.techniques.is_empty() {
            m.insert("labels".into(), labels(&inputs.techniques));
            m.insert("kill_chain_phases".into(), kill_chain(&inputs.techniques));
            m.insert("external_references".into(), external_refs(&inputs.techniques));
        }
        out.push(StixObject(m));
        for target in inputs.techniques.iter().map(|t| &t.stix_id).chain(&inputs.actors) {
            let rel_id = relationship_id("indicates", &id, target);
            let mut r = common("relationship", &rel_id);
            r.insert("relationship_type".into(), "indicates".into());
            r.insert("source_ref".into(), id.clone().into());
            r.insert("target_ref".into(), target.clone().into());
            out.push(StixObject(r));
        }
        if inputs.sighted && options.sightings {
            let mut s = common("sighting", &sighting_id(&id, &producer));
            s.insert("sighting_of_ref".into(), id.clone().into());
            s.insert("count".into(), count.into());
            s.insert("first_seen".into(), valid_from.clone().into());
            s.insert("last_seen".into(), valid_from.clone().into());
            s.insert("where_sighted_refs".into(), json!([producer]));
            out.push(StixObject(s));
        }
    }
    out
}

fn labels(techniques: &[TechniqueLink]) -> Value {
    let mut labels: Vec<String> = techniques.iter().map(|t| format!("mitre_attack:{}", t.id)).collect();
    labels.sort();
    labels.dedup();
    json!(labels)
}

fn kill_chain(techniques: &[TechniqueLink]) -> Value {
    let mut phases: Vec<&str> = techniques
        .iter()
        .flat_map(|t| t.phases.iter().map(String::as_str))
        .collect();
    phases.sort_unstable();
    phases.dedup();
    Value::Array(
        phases
            .into_iter()
            .map(|p| json!({"kill_chain_name": "mitre-attack", "phase_name": p}))
            .collect(),
    )
}

fn external_refs(techniques: &[TechniqueLink]) -> Value {
    let mut refs: Vec<&TechniqueLink> = techniques.iter().collect();
    refs.sort_by(|a, b| a.id.cmp(&b.id));
    Value::Array(
        refs.into_iter()
            .map(|t| {
                let mut r = json!({"source_name": "mitre-attack", "external_id": t.id});
                if !t.url.is_empty() {
                    r["url"] = t.url.clone().into();
                }
                r
            })
            .collect(),
    )
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
