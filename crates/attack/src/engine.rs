//! The attribution engine: knowledge base + compiled rules → `Attribution` for an event.
//!
//! Confidence model (documented in `rules/README.md` too):
//! - one piece of evidence supports a technique with `c = rule confidence` (or
//!   [`HINT_CONFIDENCE`] for a validated detector hint), multiplied by the event's
//!   `detector_confidence` when the detector set one;
//! - a technique's confidence is the noisy-OR of its evidence, `1 − Π(1 − cᵢ)`, capped at
//!   [`MAX_CONFIDENCE`];
//! - the event's `confidence_score` is the highest technique confidence (0 when none).
//!
//! Sigma rules (see [`crate::sigma`]) are one more source of rule evidence: a matching rule
//! supports each technique of its tags with the confidence of its level and status, and its
//! evidence names the rule (`sigma:<id>`) and title.
//!
//! Every technique in an output is an active technique of the loaded knowledge base: rules are
//! validated when compiled, and detector hints are resolved (revoked → replacement, recorded in
//! `replaces_revoked_id`) or dropped (unknown, deprecated, malformed).

use std::sync::Arc;

use attackmesh::held::EventView;
use attackmesh::proto::{
    Attribution, AttributionStatus, DetectionEvent, DetectorKind, EnrichmentMetadata, Evidence, EvidenceSource,
    GetKnowledgeBaseInfoResponse, PatternMapping, TechniqueDetail, ThreatActor,
};
use tracing::debug;

use crate::actors::{self, TOP_ACTORS, round4};
use crate::error::Error;
use crate::kb::{Kb, TechIdx};
use crate::rules::{EventFields, PatternFields, RulePack, RuleSet, with_scratch};
use crate::sigma::{Compiled, SigmaSet};

/// Confidence a validated detector hint supports on its own.
pub const HINT_CONFIDENCE: f64 = 0.6;
/// Upper bound of any combined confidence: attribution is never certain.
pub const MAX_CONFIDENCE: f64 = 0.99;

/// Knowledge base plus compiled rule packs. Cheap to share behind an `Arc`; immutable.
#[derive(Debug)]
pub struct Engine {
    kb: Arc<Kb>,
    rules: RuleSet,
    sigma: SigmaSet,
    version: String,
}

impl Engine {
    /// Compiles `packs` against `kb`, with the embedded Sigma rules; fails on the first invalid
    /// pack or rule (Sigma rules that cannot be compiled are listed, not fatal).
    pub fn new(kb: Arc<Kb>, packs: Vec<RulePack>) -> Result<Self, Error> {
        Engine::with_sigma(kb, packs, vec![SigmaSet::embedded_compiled()?])
    }

    /// Compiles `packs` against `kb` with the given compiled Sigma sets (later sets' rules
    /// replace earlier rules with the same id; an empty list turns Sigma off).
    pub fn with_sigma(kb: Arc<Kb>, packs: Vec<RulePack>, sigma: Vec<Arc<Compiled>>) -> Result<Self, Error> {
        let rules = RuleSet::compile(&kb, &packs)?;
        let sigma = SigmaSet::bind(&kb, sigma);
        let version = [rules.version(), sigma.version()]
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self {
            kb,
            rules,
            sigma,
            version,
        })
    }

    /// The embedded packs and Sigma rules, with a rules directory applied when given: its packs
    /// overlay the embedded ones (see [`RulePack::embedded_with_dir`]) and the Sigma rules under
    /// its `sigma/` folder are added (replacing SigmaHQ rules with the same id). A Sigma rule
    /// that cannot be compiled is logged with its reason and listed by [`SigmaSet::rejected`].
    pub fn with_rules_dir(kb: Arc<Kb>, dir: Option<&std::path::Path>) -> Result<Self, Error> {
        let Some(dir) = dir else {
            return Engine::new(kb, RulePack::embedded()?);
        };
        let packs = RulePack::embedded_with_dir(dir)?;
        let mut sigma = vec![SigmaSet::embedded_compiled()?];
        if let Some(local) = crate::sigma::SigmaPack::load_dir(dir)? {
            let compiled = Compiled::compile(&[local]);
            for r in &compiled.rejected {
                tracing::warn!(path = %r.path, id = %r.id, reason = %r.reason, "sigma rule not loaded");
            }
            sigma.push(Arc::new(compiled));
        }
        Engine::with_sigma(kb, packs, sigma)
    }

    /// The embedded knowledge base with the embedded rule packs.
    pub fn embedded() -> Result<Self, Error> {
        Engine::new(Kb::embedded()?, RulePack::embedded()?)
    }

    /// The knowledge base.
    pub fn kb(&self) -> &Arc<Kb> {
        &self.kb
    }

    /// The compiled rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The Sigma rules in force.
    pub fn sigma(&self) -> &SigmaSet {
        &self.sigma
    }

    /// Every technique the loaded rule packs and Sigma rules can attribute, once each, sorted
    /// by id (a detector's hint can name any other active technique of the knowledge base).
    pub fn emittable_techniques(&self) -> Vec<&crate::kb::Technique> {
        let mut idx: Vec<TechIdx> = self
            .rules
            .rules
            .iter()
            .flat_map(|r| r.techniques.iter().map(|(t, _)| *t))
            .chain(self.sigma.technique_indexes())
            .collect();
        idx.sort_unstable();
        idx.dedup();
        let mut out: Vec<&crate::kb::Technique> = idx.into_iter().map(|i| self.kb.at(i)).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// `name@version` of every loaded pack, mapping packs then Sigma packs.
    pub fn rule_pack_version(&self) -> &str {
        &self.version
    }

    /// Attributes one detection: rule matches and validated hints, combined per technique,
    /// plus candidate groups when at least two techniques were found.
    pub fn attribute(&self, ev: &impl EventView<DetectionEvent>) -> Attribution {
        self.attribute_as(ev, false)
    }

    /// [`Engine::attribute`] made directly in the compact form of [`crate::compact`], without
    /// the rule-pack version (the answer carries it once, see [`Engine::rule_pack_version`]):
    /// equal to the full attribution after [`crate::compact::strip`], at a fraction of its
    /// allocations.
    pub fn attribute_compact(&self, ev: &impl EventView<DetectionEvent>) -> Attribution {
        self.attribute_as(ev, true)
    }

    fn attribute_as(&self, ev: &impl EventView<DetectionEvent>, compact: bool) -> Attribution {
        let mut acc = Accumulator::new(ev.event().detector_confidence);
        with_scratch(|scratch| {
            let fields = EventFields(ev);
            self.rules.matches(&fields, scratch);
            for r in &scratch.matched {
                let rule = &self.rules.rules[*r as usize];
                let detail = self.rules.match_detail(*r, &fields);
                add_match(&mut acc, rule.techniques.iter().copied(), rule.full_id.clone(), detail);
            }
        });
        self.sigma.for_each_match(ev, |hit, techniques| {
            let detail = format!("{} (Sigma {} rule, {})", hit.title, hit.level.name(), hit.pack);
            let techniques = techniques.iter().map(|t| (*t, hit.confidence));
            add_match(&mut acc, techniques, format!("sigma:{}", hit.id), detail);
        });
        add_hints(&self.kb, ev.event(), &mut acc);
        let status = if acc.is_empty() {
            AttributionStatus::NoMatch
        } else {
            AttributionStatus::Ok
        };
        let form = if compact {
            Form::Compact
        } else {
            Form::Full(&self.version)
        };
        acc.into_attribution(&self.kb, status, form, true)
    }

    /// What enrichment records when attribution is unreachable: only the detector's hints,
    /// validated against `kb`, with status DEGRADED (the event is re-attributed later).
    pub fn degraded(kb: &Kb, ev: &DetectionEvent) -> Attribution {
        let mut acc = Accumulator::new(ev.detector_confidence);
        add_hints(kb, ev, &mut acc);
        acc.into_attribution(kb, AttributionStatus::Degraded, Form::Full(""), false)
    }

    /// Maps free-text patterns (signatures, command lines, rule names) to techniques. Every
    /// field a rule reads is the pattern; `event_type`/`kind` filter rules when given.
    pub fn map_patterns<S: AsRef<str>>(
        &self,
        patterns: &[S],
        event_type: &str,
        kind: DetectorKind,
    ) -> Vec<PatternMapping> {
        let event_type = (!event_type.trim().is_empty()).then_some(event_type.trim());
        let kind = (kind != DetectorKind::Unspecified).then_some(kind);
        patterns
            .iter()
            .map(|p| {
                let pattern = p.as_ref();
                let mut acc = Accumulator::new(None);
                with_scratch(|scratch| {
                    let fields = PatternFields {
                        pattern,
                        event_type,
                        kind,
                    };
                    self.rules.matches(&fields, scratch);
                    for r in &scratch.matched {
                        let rule = &self.rules.rules[*r as usize];
                        let (id, detail) = (rule.full_id.clone(), rule.description.clone());
                        add_match(&mut acc, rule.techniques.iter().copied(), id, detail);
                    }
                });
                PatternMapping {
                    pattern: pattern.to_owned(),
                    techniques: acc.into_details(&self.kb, false),
                }
            })
            .collect()
    }

    /// Ranks candidate groups for techniques observed together (e.g. across many events).
    pub fn rank_actors(&self, techniques: &[&str]) -> Vec<ThreatActor> {
        actors::rank_actors(&self.kb, techniques)
    }

    /// What `GetKnowledgeBaseInfo` reports.
    pub fn info(&self) -> GetKnowledgeBaseInfoResponse {
        let c = self.kb.counts();
        GetKnowledgeBaseInfoResponse {
            attack_version: self.kb.attack_version().to_owned(),
            techniques: c.techniques as u32,
            subtechniques: c.subtechniques as u32,
            tactics: c.tactics as u32,
            groups: c.groups as u32,
            rule_pack_version: self.version.clone(),
            rules: (self.rules.len() + self.sigma.len()) as u32,
        }
    }
}

/// Adds the evidence of one rule match to each technique it names, with that technique's
/// confidence: a copy of `rule_id` and `detail` to each but the last, which takes them (a match
/// nearly always names one technique).
fn add_match(
    acc: &mut Accumulator,
    techniques: impl Iterator<Item = (TechIdx, f64)>,
    mut rule_id: String,
    mut detail: String,
) {
    let mut techniques = techniques.peekable();
    while let Some((t, confidence)) = techniques.next() {
        let (rule_id, detail) = if techniques.peek().is_some() {
            (rule_id.clone(), detail.clone())
        } else {
            (std::mem::take(&mut rule_id), std::mem::take(&mut detail))
        };
        let evidence = Evidence {
            source: EvidenceSource::Rule as i32,
            rule_id,
            detail,
            confidence,
        };
        acc.add(t, None, evidence);
    }
}

/// Normalises a detector's tag to a technique id: `t1059.004`, `attack.t1059.004`, `T1059_004`.
/// The id is written into `buf` (an id is at most nine bytes), so a hint costs no allocation.
fn normalise_hint<'b>(hint: &str, buf: &'b mut [u8; 9]) -> Option<&'b str> {
    let h = hint.trim().as_bytes();
    let h = ["attack.", "mitre.", "mitre_attack.", "mitre-attack:"]
        .iter()
        .find_map(|p| {
            h.get(..p.len())
                .filter(|start| start.eq_ignore_ascii_case(p.as_bytes()))
                .map(|_| &h[p.len()..])
        })
        .unwrap_or(h);
    let id = buf.get_mut(..h.len())?;
    for (to, &b) in id.iter_mut().zip(h) {
        *to = if b == b'_' { b'.' } else { b.to_ascii_uppercase() };
    }
    std::str::from_utf8(id)
        .ok()
        .filter(|id| attackmesh::validate::is_technique_id(id))
}

fn add_hints(kb: &Kb, ev: &DetectionEvent, acc: &mut Accumulator) {
    let mut buf = [0u8; 9];
    for hint in &ev.technique_hints {
        let resolved = normalise_hint(hint, &mut buf).and_then(|id| kb.resolve_idx(id).map(|r| (id, r)));
        match resolved {
            Some((id, (t, revoked))) => {
                let detail = if revoked {
                    format!(
                        "detector tagged {id}, revoked in ATT&CK {}; replaced by {}",
                        kb.attack_version(),
                        kb.at(t).id
                    )
                } else {
                    const TAGGED: &str = "detector tagged ";
                    let mut detail = String::with_capacity(TAGGED.len() + id.len());
                    detail.push_str(TAGGED);
                    detail.push_str(id);
                    detail
                };
                let evidence = Evidence {
                    source: EvidenceSource::DetectorHint as i32,
                    rule_id: hint.clone(),
                    detail,
                    confidence: HINT_CONFIDENCE,
                };
                acc.add(t, revoked.then(|| id.to_owned()), evidence);
            }
            None => {
                debug!(hint = %attackmesh::text::clip(hint, 64), "dropped detector hint that is not an active ATT&CK technique")
            }
        }
    }
}

/// The form an attribution is made in.
#[derive(Clone, Copy)]
enum Form<'a> {
    /// Everything, with this rule-pack version.
    Full(&'a str),
    /// What [`crate::compact::strip`] leaves, without the rule-pack version.
    Compact,
}

/// Evidence per technique of one event or pattern.
struct Accumulator {
    scale: f64,
    items: Vec<(TechIdx, Option<String>, Vec<Evidence>)>,
}

impl Accumulator {
    fn new(detector_confidence: Option<f64>) -> Self {
        let scale = detector_confidence
            .filter(|d| d.is_finite())
            .map_or(1.0, |d| d.clamp(0.0, 1.0));
        Self {
            scale,
            items: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn add(&mut self, t: TechIdx, revoked: Option<String>, mut evidence: Evidence) {
        evidence.confidence = round4(evidence.confidence * self.scale);
        match self.items.iter_mut().find(|(x, ..)| *x == t) {
            Some((_, rev, list)) => {
                if rev.is_none() {
                    *rev = revoked;
                }
                if !list
                    .iter()
                    .any(|e| e.rule_id == evidence.rule_id && e.source == evidence.source)
                {
                    list.push(evidence);
                }
            }
            None => self.items.push((t, revoked, vec![evidence])),
        }
    }

    /// Each technique's detail, highest confidence first; with only what a knowledge base
    /// cannot tell when `compact` (the fields [`crate::compact::strip`] keeps).
    fn into_details(self, kb: &Kb, compact: bool) -> Vec<TechniqueDetail> {
        let mut details: Vec<TechniqueDetail> = self
            .items
            .into_iter()
            .map(|(t, revoked, evidence)| {
                let miss: f64 = evidence.iter().map(|e| 1.0 - e.confidence.clamp(0.0, 1.0)).product();
                let mut d = if compact {
                    TechniqueDetail {
                        id: kb.at(t).id.clone(),
                        ..Default::default()
                    }
                } else {
                    kb.technique_detail(kb.at(t))
                };
                d.confidence = round4((1.0 - miss).min(MAX_CONFIDENCE));
                d.evidence = evidence;
                d.replaces_revoked_id = revoked.unwrap_or_default();
                d
            })
            .collect();
        details.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| a.id.cmp(&b.id)));
        details
    }

    fn into_attribution(self, kb: &Kb, status: AttributionStatus, form: Form<'_>, actors: bool) -> Attribution {
        let compact = matches!(form, Form::Compact);
        let observed: Vec<TechIdx> = self.items.iter().map(|(t, ..)| *t).collect();
        let techniques = self.into_details(kb, compact);
        let threat_actors = if actors && observed.len() >= 2 {
            let mut sorted = observed;
            sorted.sort_unstable();
            actors::rank(kb, &sorted, TOP_ACTORS, false, compact)
        } else {
            Vec::new()
        };
        let (technique_ids, rule_pack_version) = match form {
            Form::Full(version) => (techniques.iter().map(|t| t.id.clone()).collect(), version.to_owned()),
            Form::Compact => (Vec::new(), String::new()),
        };
        Attribution {
            technique_ids,
            confidence_score: techniques.first().map_or(0.0, |t| t.confidence),
            metadata: Some(EnrichmentMetadata {
                techniques,
                threat_actors,
                rule_pack_version,
            }),
            status: status as i32,
            attack_version: kb.attack_version().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Accumulator, add_match, normalise_hint};

    /// Every technique a match names gets the match's evidence, with its own confidence, the
    /// last as well as the others.
    #[test]
    fn a_match_gives_each_of_its_techniques_its_evidence() {
        for n in 0..4u32 {
            let mut acc = Accumulator::new(None);
            let techniques = (0..n).map(|t| (t, 0.5 + f64::from(t) / 10.0));
            add_match(&mut acc, techniques, "pack/rule".into(), "matched: text".into());
            assert_eq!(acc.items.len(), n as usize);
            for (t, (idx, _, evidence)) in (0..n).zip(&acc.items) {
                assert_eq!(*idx, t);
                assert_eq!(evidence.len(), 1);
                assert_eq!(evidence[0].rule_id, "pack/rule");
                assert_eq!(evidence[0].detail, "matched: text");
                assert_eq!(evidence[0].confidence, 0.5 + f64::from(t) / 10.0);
            }
        }
    }

    #[test]
    fn hints_are_normalised_or_refused() {
        let normalised = |hint: &str| normalise_hint(hint, &mut [0; 9]).map(str::to_owned);
        assert_eq!(normalised(" t1059.004 ").as_deref(), Some("T1059.004"));
        assert_eq!(normalised("attack.t1110.001").as_deref(), Some("T1110.001"));
        assert_eq!(normalised("ATTACK.T1110").as_deref(), Some("T1110"));
        assert_eq!(normalised("Mitre-Attack:t1003_008").as_deref(), Some("T1003.008"));
        assert_eq!(normalised("mitre_attack.T1021.002").as_deref(), Some("T1021.002"));
        assert_eq!(normalised("mitre.t1046").as_deref(), Some("T1046"));
        assert_eq!(normalised("T1003_008").as_deref(), Some("T1003.008"));
        assert_eq!(normalised("mitre_execution"), None);
        assert_eq!(normalised("T12"), None);
        assert_eq!(normalised("T1059.0041"), None);
        assert_eq!(normalised("attack."), None);
        assert_eq!(normalised(""), None);
        // A prefix is cut once; what follows must be the id itself.
        assert_eq!(normalised("attack.attack.t1059"), None);
        // Bytes that are not ASCII are never an id, wherever they are.
        assert_eq!(normalised("attack.T1059\u{e9}"), None);
        assert_eq!(normalised("\u{e9}ttack.T1059"), None);
        assert_eq!(normalised("T\u{e9}059"), None);
    }
}
