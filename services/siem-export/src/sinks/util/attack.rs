//! The ATT&CK view of one event, worked out once and then only laid out by each SIEM shape (the
//! ECS document, the HEC envelope): the techniques with their parents, the tactics once each,
//! the actors strong enough to be claimed, the ATT&CK pages, and the severity a SIEM is told.
//! Every shape reads the same view, so an event never says one thing in Elastic and another in
//! Splunk. No JSON and no I/O here; the one lookup beyond the event is a parent technique's name
//! in the embedded knowledge base, decoded once per process.

use std::sync::{Arc, OnceLock};

use attackmesh::{
    proto::{EnrichedEvent, IndicatorType, Severity, Tactic, TechniqueDetail, ThreatActor},
    text::{reported_severity, severity_name},
};
use attackmesh_attack::{
    kb::Kb,
    url::{group_url, tactic_url, technique_url},
};

/// Name of the framework the techniques and tactics belong to.
pub const FRAMEWORK: &str = "MITRE ATT&CK";

/// Lowest actor score a SIEM shows as the attributed group (ECS `threat.group.*`, HEC
/// `mitre_threat_group_name`); every ranked candidate keeps its score beside it.
pub const GROUP_CLAIM_SCORE: f64 = 0.5;

/// ATT&CK attribution and severity of one event, as every SIEM shape shows them.
#[derive(Debug)]
pub struct AttackView<'a> {
    /// Every technique of the event: the attributed details in order, then the ids carried
    /// without details (a degraded event's validated detector hints).
    pub techniques: Vec<Technique<'a>>,
    /// The techniques' tactics, once each by id, in the order first met.
    pub tactics: Vec<TacticRef<'a>>,
    /// Every ranked candidate actor.
    pub actors: &'a [ThreatActor],
    /// The actors claimed (score of at least [`GROUP_CLAIM_SCORE`]), in rank order.
    pub groups: Vec<GroupRef<'a>>,
    /// The severity reported: `low` when the event carries none.
    pub severity: Severity,
}

/// One technique or sub-technique of an event.
#[derive(Debug)]
pub struct Technique<'a> {
    /// ATT&CK id (`T1110.001`).
    pub id: &'a str,
    /// Name; empty for an id carried without details.
    pub name: &'a str,
    /// Id of the parent technique: the id itself unless this is a sub-technique.
    pub parent: &'a str,
    /// Name of the parent technique: the event's name for it when the event carries the parent,
    /// else the knowledge base's (empty only for an id ATT&CK does not know); the technique's
    /// own name when it is no sub-technique.
    pub parent_name: &'a str,
    /// ATT&CK page of the technique.
    pub reference: String,
    /// ATT&CK page of the parent technique.
    pub parent_reference: String,
    /// The attribution's details; `None` for an id carried without them.
    pub detail: Option<&'a TechniqueDetail>,
}

impl Technique<'_> {
    /// Whether this is a sub-technique.
    pub fn is_sub(&self) -> bool {
        self.parent != self.id
    }

    /// Tactics the technique serves (none for an id carried without details).
    pub fn tactics(&self) -> &[Tactic] {
        self.detail.map(|d| d.tactics.as_slice()).unwrap_or_default()
    }

    /// The page the attribution names for the technique, else its ATT&CK page.
    pub fn page(&self) -> &str {
        match self.detail {
            Some(d) if !d.url.is_empty() => &d.url,
            _ => &self.reference,
        }
    }
}

/// A tactic with its ATT&CK page.
#[derive(Debug)]
pub struct TacticRef<'a> {
    /// ATT&CK id (`TA0006`).
    pub id: &'a str,
    /// Name.
    pub name: &'a str,
    /// ATT&CK page.
    pub reference: String,
}

/// A claimed actor with its ATT&CK page.
#[derive(Debug)]
pub struct GroupRef<'a> {
    /// The ranked candidate.
    pub actor: &'a ThreatActor,
    /// ATT&CK page of the group.
    pub reference: String,
}

impl<'a> AttackView<'a> {
    /// The view of `event`.
    pub fn of(event: &'a EnrichedEvent) -> Self {
        let (details, actors) = event
            .metadata
            .as_ref()
            .map(|m| (m.techniques.as_slice(), m.threat_actors.as_slice()))
            .unwrap_or_default();
        let mut techniques: Vec<Technique<'a>> = details.iter().map(|d| technique(&d.id, &d.name, Some(d))).collect();
        // Ids without details (e.g. a degraded event carrying only validated hints) still count.
        for id in &event.technique_ids {
            if !techniques.iter().any(|t| t.id == id) {
                techniques.push(technique(id, "", None));
            }
        }
        // A sub-technique's parent takes the name the event gives it, else ATT&CK's.
        for i in 0..techniques.len() {
            if techniques[i].is_sub() {
                let parent = techniques[i].parent;
                let name = techniques
                    .iter()
                    .rev()
                    .find(|t| t.id == parent && !t.name.is_empty())
                    .map_or_else(|| technique_name(parent), |t| t.name);
                techniques[i].parent_name = name;
            } else if techniques[i].name.is_empty() {
                techniques[i].parent_name = technique_name(techniques[i].id);
            }
        }
        let mut tactics: Vec<TacticRef<'a>> = Vec::new();
        for tactic in details.iter().flat_map(|d| &d.tactics) {
            if !tactics.iter().any(|t| t.id == tactic.id) {
                tactics.push(TacticRef {
                    id: &tactic.id,
                    name: &tactic.name,
                    reference: tactic_url(&tactic.id),
                });
            }
        }
        let groups = actors
            .iter()
            .filter(|a| a.score >= GROUP_CLAIM_SCORE)
            .map(|actor| GroupRef {
                actor,
                reference: group_url(&actor.group_id),
            })
            .collect();
        Self {
            techniques,
            tactics,
            actors,
            groups,
            severity: reported_severity(event.severity),
        }
    }

    /// Whether the event carries no attribution at all: no technique and no candidate actor.
    pub fn is_empty(&self) -> bool {
        self.techniques.is_empty() && self.actors.is_empty()
    }

    /// The technique details of the attribution, in order, each with its view.
    pub fn details(&self) -> impl Iterator<Item = (&Technique<'a>, &'a TechniqueDetail)> {
        self.techniques.iter().filter_map(|t| t.detail.map(|d| (t, d)))
    }

    /// ATT&CK page of one of the event's tactics (empty for a tactic the event does not carry).
    pub fn tactic_reference(&self, id: &str) -> &str {
        self.tactics
            .iter()
            .find(|t| t.id == id)
            .map_or("", |t| t.reference.as_str())
    }

    /// Lower-case name of the reported severity (`low` … `critical`).
    pub fn severity_name(&self) -> &'static str {
        severity_name(self.severity as i32)
    }

    /// Numeric severity on Elastic Security's risk bands (21, 47, 73, 99); HEC reports it too.
    pub fn severity_number(&self) -> i64 {
        match self.severity {
            Severity::Unspecified | Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }
}

/// ATT&CK's name of technique `id` in the embedded knowledge base; empty when it is unknown (or
/// the knowledge base cannot be decoded, which the build's own tests rule out).
pub fn technique_name(id: &str) -> &'static str {
    static KB: OnceLock<Option<Arc<Kb>>> = OnceLock::new();
    KB.get_or_init(|| Kb::embedded().ok())
        .as_deref()
        .and_then(|kb| kb.technique(id))
        .map_or("", |t| t.name.as_str())
}

fn technique<'a>(id: &'a str, name: &'a str, detail: Option<&'a TechniqueDetail>) -> Technique<'a> {
    let parent = id.split('.').next().unwrap_or(id);
    Technique {
        id,
        name,
        parent,
        parent_name: name,
        reference: technique_url(id),
        parent_reference: technique_url(parent),
        detail,
    }
}

/// STIX cyber-observable type of an indicator (ECS `threat.indicator.type`, HEC `indicators`).
pub fn stix_type(t: i32) -> &'static str {
    match IndicatorType::try_from(t).unwrap_or(IndicatorType::Unspecified) {
        IndicatorType::Ipv4 => "ipv4-addr",
        IndicatorType::Ipv6 => "ipv6-addr",
        IndicatorType::Domain => "domain-name",
        IndicatorType::Url => "url",
        IndicatorType::FileMd5 | IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::FileName => {
            "file"
        }
        IndicatorType::Email => "email-addr",
        IndicatorType::UserAccount => "user-account",
        IndicatorType::ProcessCommandLine => "process",
        IndicatorType::Mac => "mac-addr",
        IndicatorType::X509Sha1 => "x509-certificate",
        IndicatorType::Unspecified => "artifact",
    }
}
