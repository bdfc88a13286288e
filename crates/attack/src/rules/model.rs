//! The compiled form of rules: rules, their conditions, and the per-event-type dispatch
//! tables with their shared per-field matchers. Built by [`super::compile`], read by
//! evaluation; it holds data only and decides nothing.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use attackmesh::proto::DetectorKind;
use regex::{Regex, RegexSet};

use super::text::Glob;
use crate::kb::TechIdx;
use crate::lookup::LookupMap;

/// Index of a rule in a [`RuleSet`](super::RuleSet).
pub(crate) type RuleIdx = u32;
/// Index of a field in the fields the rules of a [`RuleSet`](super::RuleSet) read.
pub(super) type FieldIdx = u16;

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) full_id: String,
    pub(crate) description: String,
    pub(super) event_types: Vec<Glob>,
    pub(super) kinds: u8,
    pub(super) conditions: Vec<Condition>,
    pub(super) trigger: Option<usize>,
    pub(crate) techniques: Vec<(TechIdx, f64)>,
    pub(super) fallback: bool,
}

/// Rules to evaluate for one event type: trigger-less rules directly, the rest through the
/// matchers of their trigger field (built from exactly the rules of this dispatch, and shared
/// between dispatches with the same rules).
#[derive(Debug, Default, Clone)]
pub(super) struct Dispatch {
    pub(super) plain: Vec<RuleIdx>,
    pub(super) fields: Vec<(FieldIdx, Arc<FieldTriggers>)>,
}

/// Matchers of one field for a set of rules, each result mapped to the rules it triggers.
#[derive(Debug, Default)]
pub(super) struct FieldTriggers {
    pub(super) contains: Option<(AhoCorasick, Vec<Vec<RuleIdx>>)>,
    pub(super) regex: Option<(RegexSet, Vec<RuleIdx>)>,
    pub(super) equals: LookupMap<Box<str>, Vec<RuleIdx>>,
    pub(super) command: LookupMap<Box<str>, Vec<RuleIdx>>,
}

/// A compiled condition.
#[derive(Debug)]
pub(crate) struct Condition {
    pub(super) field: FieldIdx,
    pub(super) op: Op,
    pub(super) negate: bool,
}

/// What a condition tests.
#[derive(Debug)]
pub(super) enum Op {
    Equals(Vec<Box<str>>),
    Contains(AhoCorasick),
    Regex(Vec<Regex>),
    Command(Vec<Box<str>>),
    Compare {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    Exists(bool),
}

/// The bit of a detector kind in [`Rule`]'s kind mask.
pub(crate) fn kind_bit(kind: DetectorKind) -> u8 {
    match kind {
        DetectorKind::TrafficMonitor => 1,
        DetectorKind::BehaviouralAnalysis => 2,
        DetectorKind::Decoy => 4,
        DetectorKind::Other | DetectorKind::Unspecified => 8,
    }
}
