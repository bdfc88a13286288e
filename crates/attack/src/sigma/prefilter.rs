//! The literal prefilter of a [`Compiled`](super::Compiled) set and its per-route candidates.
//!
//! Most rules cannot hold unless one of a few literals (their *needles*) occurs in one named
//! field. Needles are grouped by the field they must occur in: one Aho-Corasick automaton per
//! field, built when it is first needed, scans only that field's lowered value, and one more
//! holds the needles of keyword searches (any field), scanned over every value only for routes
//! with keyword rules. A route (channel, event id) keeps its candidates as two bit sets: rules
//! evaluated only when one of their needles was seen, and rules always evaluated; a rule needs
//! no work at all otherwise.

use std::{collections::HashMap, sync::OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::value::{FieldId, Target};

/// Automata with at most this many needles are built as DFAs (the fastest kind; up to about
/// 2 MB each at that size).
const DFA_MAX_NEEDLES: usize = 400;

/// Separates the values of an event in the text the keyword automaton scans: no needle holds
/// it, so no needle is found across two values.
pub(crate) const VALUE_SEPARATOR: char = '\0';

/// One automaton and the rules each of its needles stands for. The automaton is built the first
/// time a value is scanned, so an event stream that never carries the field (none carries any
/// when it holds no Windows records) never pays for it: the embedded rules' needles take about
/// 0.6 MB as text, back to back, and 15 MB as automata.
#[derive(Debug)]
pub(crate) struct Needles {
    /// The needles, concatenated in order.
    text: Box<str>,
    /// Where each needle ends in `text`.
    ends: Box<[u32]>,
    ac: OnceLock<Option<AhoCorasick>>,
    rules: Vec<Vec<u32>>,
    /// Length of the shortest needle: a shorter text holds none.
    shortest: usize,
}

impl Needles {
    fn new(patterns: HashMap<String, Vec<u32>>) -> Needles {
        let mut ordered: Vec<(String, Vec<u32>)> = patterns.into_iter().collect();
        ordered.sort_unstable();
        let shortest = ordered.iter().map(|(p, _)| p.len()).min().unwrap_or(0);
        let mut text = String::new();
        let mut ends = Vec::with_capacity(ordered.len());
        let mut rules = Vec::with_capacity(ordered.len());
        for (needle, r) in ordered {
            text.push_str(&needle);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            rules.push(r);
        }
        Needles {
            text: text.into(),
            ends: ends.into(),
            ac: OnceLock::new(),
            rules,
            shortest,
        }
    }

    /// The automaton; `None` when it cannot be built.
    fn automaton(&self) -> Option<&AhoCorasick> {
        self.ac
            .get_or_init(|| {
                let kind = (self.ends.len() <= DFA_MAX_NEEDLES).then_some(AhoCorasickKind::DFA);
                let starts = std::iter::once(0).chain(self.ends.iter().copied());
                let needles = starts
                    .zip(self.ends.iter())
                    .map(|(start, &end)| self.text.get(start as usize..end as usize).unwrap_or_default());
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(kind)
                    .build(needles)
                    .ok()
            })
            .as_ref()
    }

    /// Sets the bit of every rule one of whose needles occurs in `text`; of every rule with a
    /// needle here when the automaton cannot be built (slower, never wrong).
    pub(crate) fn scan(&self, text: &str, hits: &mut [u64]) {
        if text.len() < self.shortest {
            return;
        }
        let mut hit = |rules: &[u32]| {
            for &r in rules {
                hits[r as usize / 64] |= 1 << (r % 64);
            }
        };
        match self.automaton() {
            Some(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    hit(&self.rules[m.pattern().as_usize()]);
                }
            }
            None => self.rules.iter().for_each(|r| hit(r)),
        }
    }

    /// Whether the automaton was built.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.ac.get().is_some()
    }
}

/// Needle automata by field, and the one of keyword searches.
#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    pub(crate) by_field: Vec<Option<Needles>>,
    pub(crate) any: Option<Needles>,
}

impl Prefilter {
    /// Groups each rule's needles (`None`: the rule has none) by the field they must occur in;
    /// `None` when a needle names a field out of range.
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
        let build = |m: HashMap<String, Vec<u32>>| (!m.is_empty()).then(|| Needles::new(m));
        Some(Prefilter {
            by_field: by_field.into_iter().map(build).collect(),
            any: build(any),
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
