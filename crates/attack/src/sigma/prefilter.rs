//! The literal prefilter of a [`Compiled`](super::Compiled) set: the candidate rules of each
//! route and the needle automata that decide which of them to evaluate.
//!
//! Most rules cannot hold unless one of a few literals (their *needles*) occurs in a named
//! field, and many need literals in two or three fields at once (a group of needles each). A
//! route (channel, event id) keeps its candidates as two bit sets: rules evaluated only when a
//! needle of each of their groups was seen, and rules always evaluated. The first event that
//! takes a route builds its [`Plan`]: the fields its candidates read, one needle search per field
//! over the needles of *its* candidates only (Aho-Corasick automata, or the windows of a large
//! set of long needles), and one over the needles of its keyword searches (any field). An event
//! then loads and scans only the fields its route reads (every
//! value when its route has keyword needles), and the automata of a route hold none of the
//! needles of rules it cannot reach: a Sysmon image load is not scanned for the thousands of
//! process creation needles.

use std::{
    collections::HashMap,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use aho_corasick::{AhoCorasick, Input, MatchKind};

use super::compile::SigmaRule;
use super::literals::{Leftmost, automaton};
use super::value::{FieldId, Target};
use super::windows::{WINDOW, Windows};
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
    /// Unique in the process (see [`Needles::id`]).
    id: u64,
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
    pub(super) fn new(patterns: HashMap<&str, Vec<u32>>) -> Needles {
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
        /// The id of the next set made.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Needles {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            text: text.into(),
            ends: ends.into(),
            ac: OnceLock::new(),
            slots,
            shortest,
        }
    }

    /// Number of needles.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Needle `i`.
    pub(super) fn needle(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] as usize);
        self.text.get(start..self.ends[i] as usize).unwrap_or_default()
    }

    /// The automata; `None` when they cannot be built.
    fn automata(&self) -> Option<&Automata> {
        self.ac
            .get_or_init(|| {
                // A large set of long needles is found by their windows, any other set by
                // automata. Windows were slower where some needles are short (for the long
                // ones), and for a few dozen needles the SIMD search is faster still, most of
                // all over the long text of every value that keyword needles are found in.
                if self.ends.len() > FIRST_MAX_NEEDLES && self.shortest >= WINDOW {
                    Some(Automata::Windows(Windows::new(self)))
                } else {
                    Ac::new(self).map(Automata::Ac)
                }
            })
            .as_ref()
    }

    /// An id no other set of this process has (never 0), however sets are made and dropped:
    /// what a set found in a value can be remembered by it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Sets the bit of every needle group one of whose needles occurs in `text`; of every group
    /// with a needle here when the automaton cannot be built (slower, never wrong).
    pub(crate) fn scan(&self, text: &str, hits: &mut [u64]) {
        self.find(text, &mut |needle| self.hit(needle, hits));
    }

    /// Calls `found` with every needle occurring in `text` (some more than once); with every
    /// needle when the automaton cannot be built.
    pub(crate) fn find(&self, text: &str, found: &mut impl FnMut(usize)) {
        if text.len() < self.shortest {
            return;
        }
        match self.automata() {
            Some(Automata::Ac(ac)) => ac.scan(text, found),
            Some(Automata::Windows(windows)) => windows.scan(self, text.as_bytes(), found),
            None => (0..self.slots.len()).for_each(found),
        }
    }

    /// Sets the bits of the needle groups `needle` stands for.
    pub(crate) fn hit(&self, needle: usize, hits: &mut [u64]) {
        for &s in &self.slots[needle] {
            hits[s as usize / 64] |= 1 << (s % 64);
        }
    }

    /// Whether the automaton was built.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.ac.get().is_some()
    }
}

/// How a set of needles is searched.
#[derive(Debug)]
enum Automata {
    Ac(Ac),
    Windows(Windows),
}

/// The Aho-Corasick automata of a set of needles. Most values hold none of a set's needles.
/// For a few dozen needles, a leftmost-first search says so fastest: the crate's SIMD literal
/// search (Teddy) skips ahead, where the overlapping search steps through its tables byte by
/// byte (and those tables are seldom in the cache when an event arrives). Only a value that
/// holds one is searched again for every needle it holds, from the leftmost on.
#[derive(Debug)]
struct Ac {
    /// Leftmost-first, for sets of at most [`FIRST_MAX_NEEDLES`].
    first: Option<Leftmost>,
    /// Every occurrence of every needle.
    every: AhoCorasick,
}

impl Ac {
    /// The automata of `set`; `None` when they cannot be built.
    fn new(set: &Needles) -> Option<Ac> {
        let needles: Vec<&str> = (0..set.len()).map(|i| set.needle(i)).collect();
        let first = if needles.len() <= FIRST_MAX_NEEDLES {
            Some(Leftmost::new(&needles)?)
        } else {
            None
        };
        Some(Ac {
            first,
            every: automaton(MatchKind::Standard, &needles)?,
        })
    }

    /// Calls `hit` with every needle occurring in `text` (some more than once).
    fn scan(&self, text: &str, hit: &mut impl FnMut(usize)) {
        let mut rest = Input::new(text);
        if let Some(first) = &self.first {
            // No needle starts before the leftmost one.
            let Some(start) = first.start(text) else { return };
            rest.set_start(start);
        }
        for m in self.every.find_overlapping_iter(rest) {
            hit(m.pattern().as_usize());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::testing::Lcg;

    /// The group bits `needles` set for `text`, one bit per needle.
    fn hits(needles: &Needles, text: &str, count: usize) -> Vec<u64> {
        let mut hits = vec![0; count.div_ceil(64)];
        needles.scan(text, &mut hits);
        hits
    }

    #[test]
    fn long_needles_are_found_by_their_windows_wherever_they_occur() {
        let mut rng = Lcg(7);
        // Hash values, some behind a shared prefix, some inside others, some sharing windows.
        let mut list: Vec<String> = (0..150).map(|_| rng.hex(8, 57)).collect();
        list.extend((0..40).map(|_| format!("imphash={}", rng.hex(32, 1))));
        list.push(list[3][1..list[3].len().min(9)].to_owned() + "ff");
        list.push("0123456789abcdef".into());
        list.push("89abcdef01234567".into());
        list.push("23456789".into());
        list.sort();
        list.dedup();
        list.retain(|n| n.len() >= WINDOW);
        let needles = set(&list);
        assert!(
            matches!(needles.automata(), Some(Automata::Windows(_))),
            "a large set of long needles"
        );
        finds_what_contains_finds(&needles, &list, &mut rng);
    }

    #[test]
    fn a_few_needles_are_found_from_the_leftmost_on_wherever_they_occur() {
        let mut rng = Lcg(3);
        // Short and long, one inside another, one the start of another.
        let mut list: Vec<String> = (0..30).map(|_| rng.hex(2, 12)).collect();
        list.extend(["sha256=", "sha256=0a", "a0a", "0a"].map(String::from));
        list.sort();
        list.dedup();
        let needles = set(&list);
        assert!(matches!(
            needles.automata(),
            Some(Automata::Ac(Ac { first: Some(_), .. }))
        ));
        finds_what_contains_finds(&needles, &list, &mut rng);
        // More than the leftmost-first search takes, short ones among them.
        list.extend((0..80).map(|_| rng.hex(3, 20)));
        list.sort();
        list.dedup();
        let needles = set(&list);
        assert!(matches!(needles.automata(), Some(Automata::Ac(Ac { first: None, .. }))));
        finds_what_contains_finds(&needles, &list, &mut rng);
    }

    /// Needle set `list`, each needle its own group bit.
    fn set(list: &[String]) -> Needles {
        Needles::new(
            list.iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), vec![i as u32]))
                .collect(),
        )
    }

    /// Checks that `needles` (of `list`) find in values made of them exactly what `contains`
    /// finds.
    fn finds_what_contains_finds(needles: &Needles, list: &[String], rng: &mut Lcg) {
        let mut texts: Vec<String> = vec![
            String::new(),
            "0123456".into(),
            "0123456789abcdef0123456789abcdef".into(),
            format!("sha1={},md5={}", rng.hex(40, 1), rng.hex(32, 1)),
        ];
        for _ in 0..400 {
            let mut text = rng.hex(0, 80);
            for _ in 0..rng.next(4) {
                let needle = &list[rng.next(list.len())];
                let at = rng.next(text.len() + 1);
                text.insert_str(at, needle);
            }
            texts.push(text);
        }
        // Every needle as the whole value and at its end; needles overlapping each other.
        for needle in list {
            texts.push(needle.clone());
            texts.push(format!("{}{needle}", rng.hex(1, 9)));
        }
        texts.push(format!("{}{}", list[0], list[1]));
        texts.push(format!("{}{}", list[5], &list[5][1..]));
        for text in &texts {
            let mut expected = vec![0u64; list.len().div_ceil(64)];
            for (i, n) in list.iter().enumerate() {
                if text.contains(n.as_str()) {
                    expected[i / 64] |= 1 << (i % 64);
                }
            }
            assert_eq!(hits(needles, text, list.len()), expected, "{text}");
        }
    }

    #[test]
    fn only_a_large_set_of_long_needles_is_searched_by_windows() {
        let mut rng = Lcg(11);
        let mut list: Vec<String> = (0..100).map(|_| rng.hex(8, 30)).collect();
        assert!(matches!(set(&list[..80]).automata(), Some(Automata::Windows(_))));
        assert!(
            matches!(set(&list[..3]).automata(), Some(Automata::Ac(_))),
            "a few needles"
        );
        list.push("abc".into());
        assert!(matches!(set(&list).automata(), Some(Automata::Ac(_))));
        assert!(matches!(set(&list[95..]).automata(), Some(Automata::Ac(_))));
    }
}
