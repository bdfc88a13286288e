//! The literal prefilter of a [`Compiled`](super::Compiled) set: the candidate rules of each
//! route and the needle automata that decide which of them to evaluate.
//!
//! Most rules cannot hold unless one of a few literals (their *needles*) occurs in a named
//! field, and many need literals in two or three fields at once (a group of needles each). A
//! route (channel, event id) keeps its candidates as two bit sets: rules evaluated only when a
//! needle of each of their groups was seen, and rules always evaluated. The first event that
//! takes a route builds its [`Plan`]: the fields its candidates read, one Aho-Corasick automaton per
//! field over the needles of *its* candidates only, and one over the needles of its keyword
//! searches (any field). An event then loads and scans only the fields its route reads (every
//! value when its route has keyword needles), and the automata of a route hold none of the
//! needles of rules it cannot reach: a Sysmon image load is not scanned for the thousands of
//! process creation needles.

use std::{collections::HashMap, sync::OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

use super::compile::SigmaRule;
use super::value::{FieldId, Target};
use crate::lookup::{LookupMap, NameTable};

/// Sets of at most this many needles are first searched leftmost-first: the crate's SIMD
/// literal search (Teddy) serves that many.
const FIRST_MAX_NEEDLES: usize = 64;

/// Separates the values of an event in the text the keyword automaton scans: no needle holds
/// it, so no needle is found across two values.
pub(crate) const VALUE_SEPARATOR: char = '\0';

/// [`Plan::read`]: the route reads the field, with no needles in it.
const READ: u32 = u32::MAX - 1;
/// [`Plan::read`]: no candidate of the route reads the field.
const NOT_READ: u32 = u32::MAX;

/// One set of needles and the needle groups (their bits, see `Compiled::slots`) each stands
/// for. Its automata are built the first time a
/// value is scanned, so a route's field that events never carry never pays for them: the
/// embedded rules' needles take about 0.6 MB as text, back to back, and ten times that as
/// automata.
#[derive(Debug)]
pub(crate) struct Needles {
    /// The needles, concatenated in order.
    text: Box<str>,
    /// Where each needle ends in `text`.
    ends: Box<[u32]>,
    ac: OnceLock<Option<Automata>>,
    /// The group bits of each needle.
    slots: Vec<Vec<u32>>,
    /// Length of the shortest needle: a shorter text holds none.
    shortest: usize,
}

impl Needles {
    /// The needles of `patterns`, each with its group bits.
    fn new(patterns: HashMap<&str, Vec<u32>>) -> Needles {
        let mut ordered: Vec<(&str, Vec<u32>)> = patterns.into_iter().collect();
        ordered.sort_unstable();
        let shortest = ordered.iter().map(|(p, _)| p.len()).min().unwrap_or(0);
        let mut text = String::new();
        let mut ends = Vec::with_capacity(ordered.len());
        let mut slots = Vec::with_capacity(ordered.len());
        for (needle, s) in ordered {
            text.push_str(needle);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            slots.push(s);
        }
        Needles {
            text: text.into(),
            ends: ends.into(),
            ac: OnceLock::new(),
            slots,
            shortest,
        }
    }

    /// The automata; `None` when they cannot be built.
    fn automata(&self) -> Option<&Automata> {
        self.ac
            .get_or_init(|| {
                let starts = std::iter::once(0).chain(self.ends.iter().copied());
                let needles: Vec<&str> = starts
                    .zip(self.ends.iter())
                    .map(|(start, &end)| self.text.get(start as usize..end as usize).unwrap_or_default())
                    .collect();
                // Contiguous NFAs, dense at the root only: a DFA of a few dozen needles takes a
                // few hundred KB, ten times as much, and dense states down to the crate's
                // default depth (3) make building the command line automaton of process
                // creation peak 3 MB higher. An event seldom finds the tables in the cache,
                // where the smaller ones scan as fast.
                let build = |match_kind| {
                    AhoCorasick::builder()
                        .match_kind(match_kind)
                        .kind(Some(AhoCorasickKind::ContiguousNFA))
                        .dense_depth(1)
                        .build(&needles)
                        .ok()
                };
                let first = if needles.len() <= FIRST_MAX_NEEDLES {
                    Some(build(MatchKind::LeftmostFirst)?)
                } else {
                    None
                };
                Some(Automata {
                    first,
                    every: build(MatchKind::Standard)?,
                })
            })
            .as_ref()
    }

    /// Sets the bit of every needle group one of whose needles occurs in `text`; of every group
    /// with a needle here when the automaton cannot be built (slower, never wrong).
    pub(crate) fn scan(&self, text: &str, hits: &mut [u64]) {
        if text.len() < self.shortest {
            return;
        }
        let mut hit = |slots: &[u32]| {
            for &s in slots {
                hits[s as usize / 64] |= 1 << (s % 64);
            }
        };
        let Some(ac) = self.automata() else {
            self.slots.iter().for_each(|s| hit(s));
            return;
        };
        let mut rest = Input::new(text);
        if let Some(first) = &ac.first {
            // No needle starts before the leftmost one.
            let Some(m) = first.find(text) else { return };
            rest.set_start(m.start());
        }
        for m in ac.every.find_overlapping_iter(rest) {
            hit(&self.slots[m.pattern().as_usize()]);
        }
    }

    /// Whether the automaton was built.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.ac.get().is_some()
    }
}

/// The automata of a set of needles. Most values hold none of a set's needles. For a few dozen
/// needles, a leftmost-first search says so fastest: it skips ahead with the crate's SIMD
/// literal search, where the overlapping search steps through its tables byte by byte (and
/// those tables are seldom in the cache when an event arrives). Only a value that holds one is
/// searched again for every needle it holds, from the leftmost on.
#[derive(Debug)]
struct Automata {
    /// Leftmost-first, for sets of at most [`FIRST_MAX_NEEDLES`].
    first: Option<AhoCorasick>,
    /// Every occurrence of every needle.
    every: AhoCorasick,
}

/// What evaluating the candidates of one route needs.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The fields the candidates read, by name.
    names: NameTable,
    /// Per interned field: [`NOT_READ`], [`READ`], or the index of its automaton.
    read: Box<[u32]>,
    automata: Vec<Needles>,
    /// The needles of keyword searches, found in any value.
    pub(crate) keywords: Option<Needles>,
    /// Bit per rule with a keyword search: evaluating one needs every value of the event.
    pub(crate) keyword_rules: Vec<u64>,
}

impl Plan {
    /// The plan of candidates `list` of `rules`, over the interned `fields`.
    fn new(list: &[u32], rules: &[SigmaRule], fields: &LookupMap<Box<str>, FieldId>) -> Plan {
        let mut read = vec![NOT_READ; fields.len()];
        let mut keyword_rules = vec![0; rules.len().div_ceil(64)];
        let mut by_field: HashMap<FieldId, HashMap<&str, Vec<u32>>> = HashMap::new();
        let mut any: HashMap<&str, Vec<u32>> = HashMap::new();
        for &r in list {
            let rule = &rules[r as usize];
            rule.for_each_field(|f| {
                if let Some(slot) = read.get_mut(f as usize) {
                    *slot = READ;
                }
            });
            if rule.keywords() {
                keyword_rules[r as usize / 64] |= 1 << (r % 64);
            }
            for (g, group) in rule.needles.iter().flatten().enumerate() {
                // The group's bit: the rule's own for its first group.
                let slot = g.checked_sub(1).map_or(r, |more| rule.more_slots[more]);
                for (target, needle) in group {
                    let map = match target {
                        Target::Field(f) => by_field.entry(*f).or_default(),
                        Target::Any => &mut any,
                    };
                    let slots = map.entry(needle).or_default();
                    if slots.last() != Some(&slot) {
                        slots.push(slot);
                    }
                }
            }
        }
        let mut by_field: Vec<(FieldId, HashMap<&str, Vec<u32>>)> = by_field.into_iter().collect();
        by_field.sort_unstable_by_key(|(f, _)| *f);
        let mut automata = Vec::with_capacity(by_field.len());
        for (f, needles) in by_field {
            if let Some(slot) = read.get_mut(f as usize) {
                *slot = automata.len() as u32;
                automata.push(Needles::new(needles));
            }
        }
        let names = fields
            .iter()
            .filter(|(_, f)| read.get(**f as usize).is_some_and(|&r| r != NOT_READ));
        Plan {
            names: NameTable::new(names.map(|(name, f)| (&**name, *f))),
            read: read.into(),
            automata,
            keywords: (!any.is_empty()).then(|| Needles::new(any)),
            keyword_rules,
        }
    }

    /// The interned field named `name` (in any ASCII case), when the route reads it.
    pub(crate) fn field(&self, name: &str) -> Option<FieldId> {
        self.names.get(name)
    }

    /// [`NOT_READ`], [`READ`], or the index of field `f`'s automaton.
    pub(crate) fn read(&self, f: FieldId) -> u32 {
        self.read.get(f as usize).copied().unwrap_or(NOT_READ)
    }

    /// The automaton of index `i` (from [`Plan::read`]).
    pub(crate) fn automaton(&self, i: u32) -> Option<&Needles> {
        self.automata.get(i as usize)
    }

    /// Every automaton of the plan.
    #[cfg(test)]
    pub(crate) fn all_automata(&self) -> impl Iterator<Item = &Needles> {
        self.automata.iter().chain(&self.keywords)
    }
}

/// The candidate rules of one route as bit sets over the set's rules.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// The candidates, in rule order.
    list: Box<[u32]>,
    /// Rules evaluated only when the prefilter saw a needle of each of their groups.
    pub(crate) filtered: Vec<u64>,
    /// Rules always evaluated.
    pub(crate) always: Vec<u64>,
    /// No rule at all.
    pub(crate) empty: bool,
    plan: OnceLock<Plan>,
}

impl Candidates {
    /// The candidates `list` of `rules` (each evaluated only after one of its needles was seen
    /// when it has needles).
    pub(crate) fn new(mut list: Vec<u32>, rules: &[SigmaRule]) -> Self {
        list.sort_unstable();
        list.dedup();
        let words = rules.len().div_ceil(64);
        let mut c = Candidates {
            filtered: vec![0; words],
            always: vec![0; words],
            empty: list.is_empty(),
            list: list.into(),
            plan: OnceLock::new(),
        };
        for &r in &c.list {
            let set = if rules[r as usize].needles.is_some() {
                &mut c.filtered
            } else {
                &mut c.always
            };
            set[r as usize / 64] |= 1 << (r % 64);
        }
        c
    }

    /// The plan of these candidates, built on first use.
    pub(crate) fn plan(&self, rules: &[SigmaRule], fields: &LookupMap<Box<str>, FieldId>) -> &Plan {
        self.plan.get_or_init(|| Plan::new(&self.list, rules, fields))
    }

    /// The plan, when an event has taken the route.
    #[cfg(test)]
    pub(crate) fn built_plan(&self) -> Option<&Plan> {
        self.plan.get()
    }
}
