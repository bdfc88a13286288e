//! Searching for many literals at once: a field's list of case-insensitive `contains` values,
//! and the search that the prefilter's needle sets share with it.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind, packed};

use super::value::{Matcher, StrPat};

/// Fewest `contains` values of a field that are searched for at once ([`Matcher::Contains`]).
/// One search of a value for a few literals takes about as long as looking for one.
const CONTAINS_AT_ONCE: usize = 4;

/// Literals searched for all at once, with a searcher built the first time a value is tested
/// (as [`LazyRegex`](super::value::LazyRegex), for rule sets most of whose tests an event stream never reaches).
#[derive(Debug)]
pub(crate) struct Literals {
    /// The literals, lowered.
    list: Box<[String]>,
    searcher: OnceLock<Option<Leftmost>>,
}

/// The leftmost-first search of literals.
#[derive(Debug)]
pub(super) enum Leftmost {
    /// The SIMD literal search (Teddy) itself, for up to 64 literals. Behind an automaton it is
    /// used only when the crate's heuristics pick it: they did not for the `SHA256=…` values of
    /// Sysmon's image loads, which the automaton then stepped through at 1.1 µs a value,
    /// against 70 ns here.
    Packed(packed::Searcher),
    /// An [`automaton`] beyond them, or where the SIMD search is not available.
    Automaton(AhoCorasick),
}

impl Leftmost {
    /// The search of `literals`; `None` when it cannot be built.
    pub(super) fn new(literals: &[&str]) -> Option<Leftmost> {
        let packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(literals)
            .build();
        match packed {
            Some(searcher) => Some(Leftmost::Packed(searcher)),
            None => automaton(MatchKind::LeftmostFirst, literals).map(Leftmost::Automaton),
        }
    }

    /// Where the leftmost literal in `text` starts: no literal starts before it.
    pub(super) fn start(&self, text: &str) -> Option<usize> {
        match self {
            Leftmost::Packed(searcher) => searcher.find(text).map(|m| m.start()),
            Leftmost::Automaton(automaton) => automaton.find(text).map(|m| m.start()),
        }
    }
}

/// An Aho-Corasick automaton of `literals` as every Sigma search builds one: a contiguous NFA,
/// dense at the root only. A DFA of a few dozen literals takes a few hundred KB, ten times as
/// much, and dense states down to the crate's default depth (3) make building the command line
/// automaton of process creation peak 3 MB higher. An event seldom finds the tables in the
/// cache, where the smaller ones scan as fast. `None` when it cannot be built.
pub(super) fn automaton(match_kind: MatchKind, literals: &[&str]) -> Option<AhoCorasick> {
    AhoCorasick::builder()
        .match_kind(match_kind)
        .kind(Some(AhoCorasickKind::ContiguousNFA))
        .dense_depth(1)
        .build(literals)
        .ok()
}

impl Literals {
    /// The literals, lowered.
    pub(crate) fn list(&self) -> &[String] {
        &self.list
    }

    /// Whether `lowered` contains one of the literals.
    pub(crate) fn in_value(&self, lowered: &str) -> bool {
        let searcher = self.searcher.get_or_init(|| {
            let literals: Vec<&str> = self.list.iter().map(String::as_str).collect();
            Leftmost::new(&literals)
        });
        match searcher {
            Some(searcher) => searcher.start(lowered).is_some(),
            None => self.list.iter().any(|l| lowered.contains(l.as_str())),
        }
    }
}

/// `matchers` with its case-insensitive `contains` patterns, when there are at least
/// [`CONTAINS_AT_ONCE`], made one [`Matcher::Contains`]: any of them holding is what it says.
pub(super) fn contains_at_once(matchers: Vec<Matcher>) -> Vec<Matcher> {
    let at_once = |m: &Matcher| {
        matches!(
            m,
            Matcher::Str {
                pat: StrPat::Contains(_),
                cased: false
            }
        )
    };
    if matchers.iter().filter(|m| at_once(m)).count() < CONTAINS_AT_ONCE {
        return matchers;
    }
    let (literals, mut rest): (Vec<Matcher>, Vec<Matcher>) = matchers.into_iter().partition(at_once);
    let list = literals
        .into_iter()
        .filter_map(|m| match m {
            Matcher::Str {
                pat: StrPat::Contains(p),
                ..
            } => Some(p),
            _ => None,
        })
        .collect();
    rest.push(Matcher::Contains(Literals {
        list,
        searcher: OnceLock::new(),
    }));
    rest
}
