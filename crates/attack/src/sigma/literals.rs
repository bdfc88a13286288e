//! A field's list of case-insensitive `contains` values, searched for all at once.

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
    searcher: OnceLock<Option<Searcher>>,
}

/// How the literals are searched for.
#[derive(Debug)]
enum Searcher {
    /// The SIMD literal search, for up to 64 literals.
    Packed(packed::Searcher),
    /// A contiguous NFA beyond them (or without the SIMD search), small as the prefilter's
    /// automata are.
    Automaton(AhoCorasick),
}

impl Literals {
    /// The literals, lowered.
    pub(crate) fn list(&self) -> &[String] {
        &self.list
    }

    /// Whether `lowered` contains one of the literals.
    pub(crate) fn in_value(&self, lowered: &str) -> bool {
        let searcher = self.searcher.get_or_init(|| {
            let packed = packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(self.list.iter())
                .build();
            match packed {
                Some(searcher) => Some(Searcher::Packed(searcher)),
                None => AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .dense_depth(1)
                    .build(self.list.iter())
                    .ok()
                    .map(Searcher::Automaton),
            }
        });
        match searcher {
            Some(Searcher::Packed(searcher)) => searcher.find(lowered).is_some(),
            Some(Searcher::Automaton(automaton)) => automaton.is_match(lowered),
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
