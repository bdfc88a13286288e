//! Compiled mapping rules and their evaluation against events.
//!
//! Packs ([`pack`]) are compiled once ([`compile`]) into a [`RuleSet`]: rules are dispatched by
//! event type, and every rule with a text or value condition is reached through one shared
//! matcher per field (one Aho-Corasick automaton, one `RegexSet`, one value index and one
//! command-word index), so an event costs one pass over each of its relevant fields whatever
//! the number of rules. Evaluation reuses per-thread scratch space and does not allocate in
//! steady state. This module decides which rules match; it does not build attributions.
//!
//! Rooms: `model` (compiled rules, conditions and dispatch tables), `fields` (where values are
//! read from: events or free-text patterns), `eval` (matching and its scratch space), `text`
//! (command words, event-type globs, ASCII lower-casing).

pub mod compile;
mod eval;
mod fields;
mod model;
pub mod pack;
mod text;

use attackmesh::proto::DetectionEvent;

use crate::lookup::LookupMap;

pub use pack::{PackDef, RulePack};
pub use text::command_words;

pub(crate) use eval::with_scratch;
pub(crate) use fields::{EventFields, PatternFields};

use fields::FieldRef;
use model::{Dispatch, Rule};
use text::Glob;

/// A loaded pack, as reported by `GetKnowledgeBaseInfo` and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Pack name.
    pub name: String,
    /// Pack version.
    pub version: String,
    /// Where it was loaded from.
    pub source: String,
    /// Number of rules.
    pub rules: usize,
}

/// Compiled, validated rules of a set of packs.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    packs: Vec<PackInfo>,
    version: String,
    fields: Vec<FieldRef>,
    exact: LookupMap<Box<str>, Dispatch>,
    globs: Vec<(Glob, Dispatch)>,
    any: Dispatch,
    /// Every rule with a trigger (pattern mode without an event type).
    all: Dispatch,
}

impl RuleSet {
    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The packs, in load order.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// `name@version` of every pack, sorted by name and joined with `,`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of rules matching `event` (the benchmarked hot path).
    pub fn count_matches(&self, event: &DetectionEvent) -> usize {
        with_scratch(|s| {
            self.matches(&EventFields(event), s);
            s.matched.len()
        })
    }
}
