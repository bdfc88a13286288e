//! Evaluation of a [`RuleSet`] against the fields of one event or pattern: event-type
//! dispatch, the shared per-field matchers, then verification of each candidate rule's
//! conditions. Uses per-thread scratch space so steady-state evaluation does not allocate.

use std::cell::RefCell;

use attackmesh::text::clip;

use super::RuleSet;
use super::fields::{Fields, NumBuf, Value};
use super::model::{Condition, Dispatch, FieldIdx, FieldTriggers, Op, RuleIdx, kind_bit};
use super::text::{command_words, lower_into};

impl RuleSet {
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

    /// The evidence detail of a match of rule `r`: its description and, when there is one, the
    /// text of the field it matched on (its trigger, else its first condition), clipped, as
    /// `description: text`. Built in one allocation, without the formatting machinery: every
    /// match of every event makes one.
    pub(crate) fn match_detail<F: Fields>(&self, r: RuleIdx, f: &F) -> String {
        let rule = &self.rules[r as usize];
        let value = rule
            .trigger
            .or(if rule.conditions.is_empty() { None } else { Some(0) })
            .and_then(|c| f.get(&self.fields[rule.conditions[c].field as usize]));
        let Some(value) = value else {
            return rule.description.clone();
        };
        let mut buf = NumBuf::default();
        let text = clip(value.as_text(&mut buf), 160);
        let mut detail = String::with_capacity(rule.description.len() + 2 + text.len());
        detail.push_str(&rule.description);
        detail.push_str(": ");
        detail.push_str(text);
        detail
    }
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
