//! Ranks ATT&CK groups by how specifically observed techniques match their known behaviour.
//!
//! Each group's profile is what ATT&CK records it using: direct `uses` of techniques (weight 1),
//! techniques of software it uses (weight 0.5), and the parent or sub-techniques of those
//! (half the weight again). A technique weighs by its rarity among groups, `idf = ln((N+1)/(df+1))`,
//! so that T1059 or T1105, used by most groups, say almost nothing while a rare technique says a
//! lot. For a group `g` and observed set `O` (techniques no group uses are left out):
//!
//! - `coverage = Σ_{t∈O} w(g,t)·idf(t) / Σ_{t∈O} idf(t)` — how much of what was seen `g` explains;
//! - `strength = 1 − exp(−Σ_{t∈O} w(g,t)·idf(t) / 6)` — how much specific evidence backs it;
//! - `score = coverage · strength`, capped at [`THIN_EVIDENCE_CAP`] when fewer than two observed
//!   techniques match the group or when every match is generic (used by ≥ ~10 % of groups), and
//!   at [`TWO_TECHNIQUE_CAP`] when exactly two match: two techniques are never a strong claim.
//!
//! Scores are rankings, not claims: below 0.5 is weak evidence. Per-event rankings leave out
//! thin candidates altogether (the contract's "empty when evidence is too thin"); rankings over a
//! set of techniques ([`rank_actors`]) keep them, capped, as leads. This module never reads events.

use std::collections::HashMap;

use attackmesh::proto::ThreatActor;

use crate::kb::{Kb, TechIdx};

/// Highest score a group can get from thin evidence (one matched technique, or generic ones only).
pub const THIN_EVIDENCE_CAP: f64 = 0.3;
/// Highest score a group can get from exactly two matched techniques.
pub const TWO_TECHNIQUE_CAP: f64 = 0.5;
/// How many groups a ranking returns at most.
pub const TOP_ACTORS: usize = 5;
/// Techniques whose idf is below this are generic (used by roughly 10 % of groups or more).
pub const GENERIC_IDF: f32 = std::f32::consts::LN_10;
/// Scale of the evidence-strength curve: matched idf mass at which strength reaches ~63 %.
const STRENGTH_SCALE: f64 = 6.0;
/// Groups scoring below this are not reported.
const MIN_REPORTED: f64 = 0.01;

/// Inverted index technique → groups using it, with the idf of every technique.
#[derive(Debug, Default)]
pub(crate) struct ActorIndex {
    by_technique: Vec<Vec<(u32, f32)>>,
    idf: Vec<f32>,
    profile_size: Vec<u32>,
}

impl ActorIndex {
    pub(crate) fn build(kb: &Kb) -> Self {
        let n_tech = kb.technique_count();
        let mut by_technique: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_tech];
        let mut profile_size = vec![0u32; kb.data().groups.len()];
        let software: HashMap<&str, &Vec<String>> = kb
            .all_software()
            .filter(|s| !s.revoked)
            .map(|s| (s.id.as_str(), &s.techniques))
            .collect();
        for (gi, group) in kb.groups().enumerate().filter(|(_, g)| g.is_active()) {
            let mut profile: HashMap<TechIdx, f32> = HashMap::new();
            fn add(profile: &mut HashMap<TechIdx, f32>, t: TechIdx, w: f32) {
                let e = profile.entry(t).or_insert(0.0);
                *e = e.max(w);
            }
            for t in &group.techniques {
                if let Some((i, _)) = kb.resolve_idx(t) {
                    add(&mut profile, i, 1.0);
                }
            }
            for s in group.software.iter().filter_map(|s| software.get(s.as_str())) {
                for t in s.iter() {
                    if let Some((i, _)) = kb.resolve_idx(t) {
                        add(&mut profile, i, 0.5);
                    }
                }
            }
            let base: Vec<(TechIdx, f32)> = profile.iter().map(|(t, w)| (*t, *w)).collect();
            for (t, w) in base {
                let technique = kb.at(t);
                if let Some((p, _)) = technique.parent_id.as_deref().and_then(|p| kb.resolve_idx(p)) {
                    add(&mut profile, p, w * 0.5);
                }
                for s in kb.subtechniques_of(technique).filter_map(|s| kb.technique_idx(&s.id)) {
                    add(&mut profile, s, w * 0.5);
                }
            }
            profile_size[gi] = profile.len() as u32;
            for (t, w) in profile {
                by_technique[t as usize].push((gi as u32, w));
            }
        }
        let n_groups = profile_size.iter().filter(|s| **s > 0).count() as f32;
        let idf = by_technique
            .iter_mut()
            .map(|groups| {
                groups.sort_unstable_by_key(|(g, _)| *g);
                ((n_groups + 1.0) / (groups.len() as f32 + 1.0)).ln()
            })
            .collect();
        Self {
            by_technique,
            idf,
            profile_size,
        }
    }

    /// Rarity weight of a technique (0 when no group uses it).
    pub(crate) fn idf(&self, t: TechIdx) -> f32 {
        if self.by_technique.get(t as usize).is_none_or(Vec::is_empty) {
            0.0
        } else {
            self.idf[t as usize]
        }
    }
}

/// Ranks groups for a set of technique ids (any order, duplicates and unknown ids ignored,
/// revoked ids replaced). Use it for one event or for everything seen across many events.
pub fn rank_actors(kb: &Kb, techniques: &[&str]) -> Vec<ThreatActor> {
    let mut idx: Vec<TechIdx> = techniques
        .iter()
        .filter_map(|t| kb.resolve_idx(t).map(|(i, _)| i))
        .collect();
    idx.sort_unstable();
    idx.dedup();
    rank(kb, &idx, TOP_ACTORS, true)
}

struct Candidate {
    group: usize,
    mass: f64,
    matched: Vec<TechIdx>,
    specific: bool,
}

/// Ranks groups for distinct active technique indexes; `keep_thin` keeps candidates whose
/// evidence is thin (capped at [`THIN_EVIDENCE_CAP`]).
pub(crate) fn rank(kb: &Kb, observed: &[TechIdx], limit: usize, keep_thin: bool) -> Vec<ThreatActor> {
    let index = &kb.actors;
    let total: f64 = observed.iter().map(|t| f64::from(index.idf(*t))).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut slot: HashMap<u32, usize> = HashMap::new();
    for t in observed {
        let idf = index.idf(*t);
        for (g, w) in &index.by_technique[*t as usize] {
            let at = *slot.entry(*g).or_insert_with(|| {
                candidates.push(Candidate {
                    group: *g as usize,
                    mass: 0.0,
                    matched: Vec::new(),
                    specific: false,
                });
                candidates.len() - 1
            });
            let c = &mut candidates[at];
            c.mass += f64::from(w * idf);
            c.matched.push(*t);
            c.specific |= idf >= GENERIC_IDF && *w >= 0.5;
        }
    }
    let mut scored: Vec<(f64, Candidate)> = candidates
        .into_iter()
        .filter_map(|c| {
            let coverage = c.mass / total;
            let strength = 1.0 - (-c.mass / STRENGTH_SCALE).exp();
            let mut score = (coverage * strength).clamp(0.0, 1.0);
            let thin = c.matched.len() < 2 || !c.specific;
            if thin {
                score = score.min(THIN_EVIDENCE_CAP);
            } else if c.matched.len() == 2 {
                score = score.min(TWO_TECHNIQUE_CAP);
            }
            (score >= MIN_REPORTED && (keep_thin || !thin)).then_some((score, c))
        })
        .collect();
    scored.sort_by(|(sa, a), (sb, b)| {
        sb.total_cmp(sa)
            .then(b.mass.total_cmp(&a.mass))
            .then(index.profile_size[a.group].cmp(&index.profile_size[b.group]))
            .then(a.group.cmp(&b.group))
    });
    scored.truncate(limit);
    scored
        .into_iter()
        .map(|(score, mut c)| {
            let group = &kb.data().groups[c.group];
            c.matched
                .sort_by(|a, b| index.idf(*b).total_cmp(&index.idf(*a)).then(a.cmp(b)));
            ThreatActor {
                group_id: group.id.clone(),
                name: group.name.clone(),
                aliases: group.aliases.clone(),
                score: round4(score),
                matched_techniques: c.matched.iter().map(|t| kb.at(*t).id.clone()).collect(),
                stix_id: group.stix_id.clone(),
            }
        })
        .collect()
}

/// Rounds to four decimals so scores read cleanly in JSON.
pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
