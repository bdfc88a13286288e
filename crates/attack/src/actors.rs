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
//!
//! A ranking depends on the observed set alone, and a detector stream repeats a few sets (the
//! same signatures fire again and again), so each knowledge base keeps the rankings of recently
//! ranked sets and gives a repeated set its ranking again without working it out.

use std::{
    collections::HashMap,
    hash::Hasher as _,
    sync::{Mutex, TryLockError},
};

use attackmesh::proto::ThreatActor;

use crate::{
    kb::{Kb, TechIdx},
    lookup::FxHasher,
};

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
    cache: RankCache,
}

/// How many rankings a knowledge base keeps (a power of two): each at the slot its set's hash
/// picks, the last one kept there replacing the one before. A few hundred bytes each.
const CACHED_RANKINGS: usize = 256;

/// Recent rankings of one knowledge base, by observed set and ranking options. A ranking is a
/// pure function of those, so a cached one is exactly what ranking again would give. A ranking
/// is kept the second time its set is ranked in a row at its slot: a set seen once costs a hash
/// and no copy, so a stream of sets that never repeat ranks at nearly the uncached cost. Slots
/// are locked one at a time and never waited for: a slot another thread holds is a miss.
#[derive(Debug)]
struct RankCache {
    slots: Box<[Mutex<Slot>]>,
}

/// What one slot of [`RankCache`] holds.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    /// The hash of the last set and options ranked here, not kept.
    Seen(u64),
    /// A ranking kept.
    Ranked(Ranked),
}

/// One cached ranking.
#[derive(Debug)]
struct Ranked {
    hash: u64,
    observed: Box<[TechIdx]>,
    options: Options,
    actors: Vec<ThreatActor>,
}

/// What a ranking asks for besides the set: `(limit, keep_thin, compact)`.
type Options = (usize, bool, bool);

impl Default for RankCache {
    fn default() -> Self {
        Self {
            slots: (0..CACHED_RANKINGS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl RankCache {
    /// The ranking of `observed` with `options`: the cached one, else `rank()`'s (kept when the
    /// slot saw the same set last).
    fn get_or_rank(
        &self,
        observed: &[TechIdx],
        options: Options,
        rank: impl FnOnce() -> Vec<ThreatActor>,
    ) -> Vec<ThreatActor> {
        let mut h = FxHasher::default();
        for t in observed {
            h.write_u32(*t);
        }
        h.write_u64(options.0 as u64);
        h.write_u8(u8::from(options.1) | (u8::from(options.2) << 1));
        let hash = h.finish();
        // The hash's high bits: the multiply leaves the low ones weak.
        let slot = &self.slots[(hash >> (64 - CACHED_RANKINGS.trailing_zeros())) as usize];
        let seen_before = match slot.try_lock() {
            Ok(mut slot) => match &*slot {
                Slot::Ranked(r) if r.hash == hash && r.options == options && *r.observed == *observed => {
                    return r.actors.clone();
                }
                Slot::Seen(seen) if *seen == hash => true,
                _ => {
                    *slot = Slot::Seen(hash);
                    false
                }
            },
            Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => return rank(),
        };
        let actors = rank();
        if seen_before && let Ok(mut slot) = slot.try_lock() {
            *slot = Slot::Ranked(Ranked {
                hash,
                observed: observed.into(),
                options,
                actors: actors.clone(),
            });
        }
        actors
    }
}

impl ActorIndex {
    pub(crate) fn build(kb: &Kb) -> Self {
        let n_tech = kb.technique_count();
        let resolve =
            |ids: &[String]| -> Vec<TechIdx> { ids.iter().filter_map(|t| kb.resolve_idx(t).map(|(i, _)| i)).collect() };
        let parent: Vec<Option<TechIdx>> = (0..n_tech as TechIdx)
            .map(|t| {
                kb.at(t)
                    .parent_id
                    .as_deref()
                    .and_then(|p| kb.resolve_idx(p))
                    .map(|(i, _)| i)
            })
            .collect();
        let software: HashMap<&str, Vec<TechIdx>> = kb
            .all_software()
            .filter(|s| !s.revoked)
            .map(|s| (s.id.as_str(), resolve(&s.techniques)))
            .collect();
        let mut by_technique: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_tech];
        let mut profile_size = vec![0u32; kb.data().groups.len()];
        // Dense per-group profile, reused: weight per technique and the techniques touched.
        let mut weight = vec![0f32; n_tech];
        let mut touched: Vec<TechIdx> = Vec::new();
        let add = |weight: &mut [f32], touched: &mut Vec<TechIdx>, t: TechIdx, w: f32| {
            let slot = &mut weight[t as usize];
            if *slot == 0.0 {
                touched.push(t);
            }
            *slot = slot.max(w);
        };
        for (gi, group) in kb.groups().enumerate().filter(|(_, g)| g.is_active()) {
            for t in resolve(&group.techniques) {
                add(&mut weight, &mut touched, t, 1.0);
            }
            for s in group.software.iter().filter_map(|s| software.get(s.as_str())) {
                for t in s {
                    add(&mut weight, &mut touched, *t, 0.5);
                }
            }
            for i in 0..touched.len() {
                let (t, w) = (touched[i], weight[touched[i] as usize]);
                if let Some(p) = parent[t as usize] {
                    add(&mut weight, &mut touched, p, w * 0.5);
                }
                for s in kb.subtechnique_indices(t) {
                    add(&mut weight, &mut touched, *s, w * 0.5);
                }
            }
            profile_size[gi] = touched.len() as u32;
            for t in touched.drain(..) {
                by_technique[t as usize].push((gi as u32, weight[t as usize]));
                weight[t as usize] = 0.0;
            }
        }
        let n_groups = profile_size.iter().filter(|s| **s > 0).count() as f32;
        let idf = by_technique
            .iter()
            .map(|groups| ((n_groups + 1.0) / (groups.len() as f32 + 1.0)).ln())
            .collect();
        Self {
            by_technique,
            idf,
            profile_size,
            cache: RankCache::default(),
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
    rank(kb, &idx, TOP_ACTORS, true, false)
}

/// Per-group accumulators of one ranking, dense by group index.
#[derive(Default)]
struct Accumulators {
    mass: Vec<f64>,
    matched: Vec<u16>,
    specific: Vec<bool>,
    touched: Vec<u32>,
}

thread_local! {
    static ACC: std::cell::RefCell<Accumulators> = std::cell::RefCell::new(Accumulators::default());
}

/// Ranks groups for distinct active technique indexes; `keep_thin` keeps candidates whose
/// evidence is thin (capped at [`THIN_EVIDENCE_CAP`]); `compact` leaves out what the knowledge
/// base can tell (name, aliases, STIX id), as [`crate::compact::strip`] does.
pub(crate) fn rank(kb: &Kb, observed: &[TechIdx], limit: usize, keep_thin: bool, compact: bool) -> Vec<ThreatActor> {
    let index = &kb.actors;
    let total: f64 = observed.iter().map(|t| f64::from(index.idf(*t))).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let options = (limit, keep_thin, compact);
    index.cache.get_or_rank(observed, options, || {
        ACC.with(|cell| match cell.try_borrow_mut() {
            Ok(mut acc) => rank_with(kb, observed, total, options, &mut acc),
            Err(_) => rank_with(kb, observed, total, options, &mut Accumulators::default()),
        })
    })
}

fn rank_with(
    kb: &Kb,
    observed: &[TechIdx],
    total: f64,
    (limit, keep_thin, compact): Options,
    acc: &mut Accumulators,
) -> Vec<ThreatActor> {
    let index = &kb.actors;
    let n = index.profile_size.len();
    acc.mass.resize(n, 0.0);
    acc.matched.resize(n, 0);
    acc.specific.resize(n, false);
    for t in observed {
        let idf = index.idf(*t);
        for (g, w) in &index.by_technique[*t as usize] {
            let g = *g as usize;
            if acc.matched[g] == 0 {
                acc.touched.push(g as u32);
            }
            acc.mass[g] += f64::from(w * idf);
            acc.matched[g] += 1;
            acc.specific[g] |= idf >= GENERIC_IDF && *w >= 0.5;
        }
    }
    let mut scored: Vec<(f64, f64, usize)> = Vec::new();
    for g in acc.touched.drain(..) {
        let g = g as usize;
        let (mass, matched, specific) = (acc.mass[g], acc.matched[g], acc.specific[g]);
        (acc.mass[g], acc.matched[g], acc.specific[g]) = (0.0, 0, false);
        let coverage = mass / total;
        let strength = 1.0 - (-mass / STRENGTH_SCALE).exp();
        let mut score = (coverage * strength).clamp(0.0, 1.0);
        let thin = matched < 2 || !specific;
        if thin {
            score = score.min(THIN_EVIDENCE_CAP);
        } else if matched == 2 {
            score = score.min(TWO_TECHNIQUE_CAP);
        }
        if score >= MIN_REPORTED && (keep_thin || !thin) {
            scored.push((score, mass, g));
        }
    }
    let order = |(sa, ma, a): &(f64, f64, usize), (sb, mb, b): &(f64, f64, usize)| {
        sb.total_cmp(sa)
            .then(mb.total_cmp(ma))
            .then(index.profile_size[*a].cmp(&index.profile_size[*b]))
            .then(a.cmp(b))
    };
    // Only the best `limit` are reported: select them in linear time, then order them.
    if scored.len() > limit && limit > 0 {
        scored.select_nth_unstable_by(limit - 1, order);
        scored.truncate(limit);
    }
    scored.sort_by(order);
    scored.truncate(limit);
    scored
        .into_iter()
        .map(|(score, _, g)| {
            let group = &kb.data().groups[g];
            let mut matched: Vec<TechIdx> = observed
                .iter()
                .copied()
                .filter(|t| weight_of(index, *t, g).is_some())
                .collect();
            matched.sort_by(|a, b| index.idf(*b).total_cmp(&index.idf(*a)).then(a.cmp(b)));
            let matched_techniques = matched.iter().map(|t| kb.at(*t).id.clone()).collect();
            if compact {
                ThreatActor {
                    group_id: group.id.clone(),
                    score: round4(score),
                    matched_techniques,
                    ..Default::default()
                }
            } else {
                kb.threat_actor(group, round4(score), matched_techniques)
            }
        })
        .collect()
}

/// Profile weight of technique `t` for group `g` (entries are sorted by group).
fn weight_of(index: &ActorIndex, t: TechIdx, g: usize) -> Option<f32> {
    let entries = &index.by_technique[t as usize];
    entries
        .binary_search_by_key(&(g as u32), |(x, _)| *x)
        .ok()
        .map(|i| entries[i].1)
}

/// Rounds to four decimals so scores read cleanly in JSON.
pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranking of `observed`, worked out without the cache.
    fn uncached(kb: &Kb, observed: &[TechIdx], options: Options) -> Vec<ThreatActor> {
        let total: f64 = observed.iter().map(|t| f64::from(kb.actors.idf(*t))).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        rank_with(kb, observed, total, options, &mut Accumulators::default())
    }

    #[test]
    fn a_cached_ranking_is_that_of_its_own_set_and_options() {
        let kb = Kb::embedded().expect("embedded knowledge base");
        // Each active group's profile, and its first two and three techniques: more sets than
        // the cache has slots, so slots are shared and rankings replaced.
        let sets: Vec<Vec<TechIdx>> = kb
            .groups()
            .filter(|g| g.is_active())
            .flat_map(|g| {
                let mut idx: Vec<TechIdx> = g
                    .techniques
                    .iter()
                    .filter_map(|t| kb.resolve_idx(t).map(|(i, _)| i))
                    .collect();
                idx.sort_unstable();
                idx.dedup();
                [
                    idx.clone(),
                    idx[..idx.len().min(2)].to_vec(),
                    idx[..idx.len().min(3)].to_vec(),
                ]
            })
            .filter(|set| set.len() >= 2)
            .collect();
        assert!(sets.len() > CACHED_RANKINGS, "only {} sets", sets.len());
        let all_options: [Options; 3] = [(TOP_ACTORS, false, true), (TOP_ACTORS, true, false), (1, true, false)];
        let mut named = 0;
        for round in 0..2 {
            for set in &sets {
                for options in all_options {
                    let expected = uncached(&kb, set, options);
                    named += usize::from(!expected.is_empty());
                    // Three times in a row: the second keeps the ranking, the third is the kept one.
                    for _ in 0..3 {
                        assert_eq!(
                            rank(&kb, set, options.0, options.1, options.2),
                            expected,
                            "{set:?} {options:?} round {round}"
                        );
                    }
                }
            }
        }
        assert!(named > sets.len(), "the sets name groups");
        // What the slots hold is what ranking their sets gives.
        let mut held = 0;
        for slot in &kb.actors.cache.slots {
            if let Slot::Ranked(r) = &*slot.lock().unwrap() {
                held += 1;
                assert_eq!(r.actors, uncached(&kb, &r.observed, r.options));
            }
        }
        assert!(held > CACHED_RANKINGS / 2, "{held} slots hold a ranking");
    }
}
