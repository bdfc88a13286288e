//! The literal prefilter of a [`Compiled`](super::Compiled) set and its per-route candidates.
//!
//! Most rules cannot hold unless one of a few literals (their *needles*) occurs in one named
//! field. Needles are grouped by the field they must occur in: one small Aho-Corasick automaton
//! per field scans only that field's lowered value, and one more holds the needles of keyword
//! searches (any field), scanned over every value only for routes with keyword rules. A route
//! (channel, event id) keeps its candidates as two bit sets: rules evaluated only when one of
//! their needles was seen, and rules always evaluated; a rule needs no work at all otherwise.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::value::{FieldId, Target};

/// Automata with at most this many needles are built as DFAs (fast, small at that size).
const DFA_MAX_NEEDLES: usize = 400;

/// Separates the values of an event in the text the keyword automaton scans: no needle holds
/// it, so no needle is found across two values.
pub(crate) const VALUE_SEPARATOR: char = '\0';

/// One automaton and the rules each of its needles stands for.
#[derive(Debug)]
pub(crate) struct Needles {
    ac: AhoCorasick,
    rules: Vec<Vec<u32>>,
    /// Length of the shortest needle: a shorter text holds none.
    shortest: usize,
}

impl Needles {
    fn build(patterns: HashMap<String, Vec<u32>>) -> Option<Needles> {
        let mut ordered: Vec<(String, Vec<u32>)> = patterns.into_iter().collect();
        ordered.sort_unstable();
        let kind = (ordered.len() <= DFA_MAX_NEEDLES).then_some(AhoCorasickKind::DFA);
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(kind)
            .build(ordered.iter().map(|(p, _)| p.as_str()))
            .ok()?;
        let shortest = ordered.iter().map(|(p, _)| p.len()).min().unwrap_or(0);
        Some(Needles {
            ac,
            rules: ordered.into_iter().map(|(_, r)| r).collect(),
            shortest,
        })
    }

    /// Sets the bit of every rule one of whose needles occurs in `text`.
    pub(crate) fn scan(&self, text: &str, hits: &mut [u64]) {
        if text.len() < self.shortest {
            return;
        }
        for m in self.ac.find_overlapping_iter(text) {
            for &r in &self.rules[m.pattern().as_usize()] {
                hits[r as usize / 64] |= 1 << (r % 64);
            }
        }
    }
}

/// Needle automata by field, and the one of keyword searches.
#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    pub(crate) by_field: Vec<Option<Needles>>,
    pub(crate) any: Option<Needles>,
}

impl Prefilter {
    /// Builds the automata from each rule's needles (`None`: the rule has none); `None` when
    /// an automaton cannot be built (then every rule is evaluated: slower, never wrong).
    pub(crate) fn build(needles: &[Option<Vec<(Target, String)>>], fields: usize) -> Option<Prefilter> {
        let mut by_field: Vec<HashMap<String, Vec<u32>>> = vec![HashMap::new(); fields];
        let mut any: HashMap<String, Vec<u32>> = HashMap::new();
        for (rule, set) in needles.iter().enumerate() {
            for (target, needle) in set.iter().flatten() {
                let map = match target {
                    Target::Field(f) => by_field.get_mut(*f as usize)?,
                    Target::Any => &mut any,
                };
                let rules = map.entry(needle.clone()).or_default();
                if rules.last() != Some(&(rule as u32)) {
                    rules.push(rule as u32);
                }
            }
        }
        let build = |m: HashMap<String, Vec<u32>>| {
            if m.is_empty() {
                Ok(None)
            } else {
                Needles::build(m).map(Some).ok_or(())
            }
        };
        Some(Prefilter {
            by_field: by_field.into_iter().map(build).collect::<Result<_, _>>().ok()?,
            any: build(any).ok()?,
        })
    }

    /// The automaton of field `f`'s needles.
    pub(crate) fn field(&self, f: FieldId) -> Option<&Needles> {
        self.by_field.get(f as usize).and_then(Option::as_ref)
    }
}

/// The candidate rules of one route as bit sets over the set's rules.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Rules evaluated only when the prefilter saw one of their needles.
    pub(crate) filtered: Vec<u64>,
    /// Rules always evaluated.
    pub(crate) always: Vec<u64>,
    /// Some candidate has a keyword search: every value of the event is read.
    pub(crate) keywords: bool,
    /// No rule at all.
    pub(crate) empty: bool,
}

impl Candidates {
    /// The candidates `list` of a set of `rules` rules, with each rule's `filtered` and
    /// `keywords` flags.
    pub(crate) fn new(
        list: &[u32],
        rules: usize,
        filtered: impl Fn(u32) -> bool,
        keywords: impl Fn(u32) -> bool,
    ) -> Self {
        let words = rules.div_ceil(64);
        let mut c = Candidates {
            filtered: vec![0; words],
            always: vec![0; words],
            keywords: list.iter().any(|&r| keywords(r)),
            empty: list.is_empty(),
        };
        for &r in list {
            let set = if filtered(r) { &mut c.filtered } else { &mut c.always };
            set[r as usize / 64] |= 1 << (r % 64);
        }
        c
    }
}
