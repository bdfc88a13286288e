//! The ATT&CK view of one event, worked out once and then only laid out by each SIEM shape (the
//! ECS document, the HEC envelope): the techniques with their parents, the tactics once each,
//! the actors strong enough to be claimed, the ATT&CK pages, and the severity a SIEM is told.
//! Every shape reads the same view, so an event never says one thing in Elastic and another in
//! Splunk. No JSON and no I/O here. Lookups beyond the event: a parent technique's name in the
//! embedded knowledge base, decoded once per process, and, for a compact event, the details it
//! leaves out, borrowed from the knowledge base it is compact for (as
//! [`attackmesh::json::write_compact_event`] writes them for the canonical shape).

use std::sync::{Arc, OnceLock};

use attackmesh::{
    json::{AttackDetails, TacticText},
    proto::{EnrichedEvent, IndicatorType, Severity, TechniqueDetail, ThreatActor},
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
    pub actors: Vec<Actor<'a>>,
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
    /// The attribution's details; `None` for an id carried without them. A compact event's
    /// lack the name, tactics and page: read those from this view, never from here.
    pub detail: Option<&'a TechniqueDetail>,
    /// Tactics the technique serves: the detail's, or the knowledge base's for a compact one
    /// (none for an id carried without details).
    tactics: Vec<TacticText<'a>>,
    /// The page the attribution names (empty when it names none).
    url: &'a str,
}

impl<'a> Technique<'a> {
    /// Whether this is a sub-technique.
    pub fn is_sub(&self) -> bool {
        self.parent != self.id
    }

    /// Tactics the technique serves (none for an id carried without details).
    pub fn tactics(&self) -> &[TacticText<'a>] {
        &self.tactics
    }

    /// The page the attribution names for the technique, else its ATT&CK page.
    pub fn page(&self) -> &str {
        if self.url.is_empty() { &self.reference } else { self.url }
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

/// A ranked candidate actor: the event's, its name, aliases and STIX id from the knowledge base
/// when the event is compact.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// ATT&CK group id (`G0016`).
    pub group_id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Aliases.
    pub aliases: &'a [String],
    /// Score of the candidate.
    pub score: f64,
    /// The event's techniques the group is known to use.
    pub matched_techniques: &'a [String],
    /// STIX id of the group.
    pub stix_id: &'a str,
}

/// A claimed actor with its ATT&CK page.
#[derive(Debug)]
pub struct GroupRef<'a> {
    /// The ranked candidate.
    pub actor: Actor<'a>,
    /// ATT&CK page of the group.
    pub reference: String,
}

impl<'a> AttackView<'a> {
    /// The view of `event`. With `kb`, a compact event's techniques and actors left without a
    /// name take their name, tactics, page and STIX id, or name, aliases and STIX id, from it, as
    /// the event filled in from `kb` would carry them (an id `kb` does not hold exactly stays as
    /// it is); without, every detail is taken as the event carries it.
    pub fn of(event: &'a EnrichedEvent, kb: Option<&'a Kb>) -> Self {
        let (details, candidates) = event
            .metadata
            .as_ref()
            .map(|m| (m.techniques.as_slice(), m.threat_actors.as_slice()))
            .unwrap_or_default();
        let mut techniques: Vec<Technique<'a>> = details.iter().map(|d| detailed(d, kb)).collect();
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
        for tactic in techniques.iter().flat_map(|t| &t.tactics) {
            if !tactics.iter().any(|t| t.id == tactic.id) {
                tactics.push(TacticRef {
                    id: tactic.id,
                    name: tactic.name,
                    reference: tactic_url(tactic.id),
                });
            }
        }
        let actors: Vec<Actor<'a>> = candidates.iter().map(|a| actor(a, kb)).collect();
        let groups = actors
            .iter()
            .filter(|a| a.score >= GROUP_CLAIM_SCORE)
            .map(|&actor| GroupRef {
                actor,
                reference: group_url(actor.group_id),
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
        tactics: Vec::new(),
        url: "",
    }
}

/// An attributed technique: its details as the event carries them, or from `kb` when it is left
/// without a name (a compact event's) and `kb` holds its id exactly.
fn detailed<'a>(detail: &'a TechniqueDetail, kb: Option<&'a Kb>) -> Technique<'a> {
    let known = kb
        .filter(|_| detail.name.is_empty())
        .and_then(|kb| AttackDetails::technique(kb, &detail.id));
    let mut t = technique(&detail.id, &detail.name, Some(detail));
    match known {
        Some((text, tactics)) => {
            t.name = text.name;
            t.parent_name = text.name;
            t.url = text.url;
            t.tactics = tactics.collect();
        }
        None => {
            t.url = &detail.url;
            t.tactics = detail
                .tactics
                .iter()
                .map(|x| TacticText {
                    id: &x.id,
                    name: &x.name,
                    shortname: &x.shortname,
                })
                .collect();
        }
    }
    t
}

/// A ranked candidate as the event carries it, or with its name, aliases and STIX id from `kb`
/// when it is left without a name (a compact event's) and `kb` holds its id exactly.
fn actor<'a>(candidate: &'a ThreatActor, kb: Option<&'a Kb>) -> Actor<'a> {
    let mut actor = Actor {
        group_id: &candidate.group_id,
        name: &candidate.name,
        aliases: &candidate.aliases,
        score: candidate.score,
        matched_techniques: &candidate.matched_techniques,
        stix_id: &candidate.stix_id,
    };
    if let Some(group) = kb
        .filter(|_| candidate.name.is_empty())
        .and_then(|kb| AttackDetails::group(kb, &candidate.group_id))
    {
        actor.name = group.name;
        actor.aliases = group.aliases;
        actor.stix_id = group.stix_id;
    }
    actor
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
