//! Evaluating a [`Compiled`] set against one Windows event's fields: route by channel and
//! event id, load the values of the fields the route's candidates read and scan each with its
//! field's needle automaton (and every value with the keyword automaton), then evaluate the
//! conditions of the candidates the prefilter let through, in rule order. Per-thread scratch
//! space is reused, so steady-state evaluation does not allocate.

use std::cell::RefCell;
use std::hash::Hasher as _;
use std::net::IpAddr;

use super::compile::{Compiled, Search};
use super::condition::Expr;
use super::prefilter::{Candidates, Needles, Plan, VALUE_SEPARATOR};
use super::value::{Cmp, FieldTest, Matcher, Place, Target, in_network};
use crate::lookup::FxHasher;

const NONE: u32 = u32::MAX;

/// Reusable buffers of one thread.
#[derive(Default)]
pub(crate) struct Scratch {
    raw: String,
    lower: String,
    /// (raw start, raw end, lower start, lower end) of every loaded value.
    values: Vec<[u32; 4]>,
    /// Value index of every interned field of the set being evaluated.
    slots: Vec<u32>,
    /// The fields with a value, in the order their first was loaded.
    touched: Vec<u32>,
    /// Bit per needle group (see `Compiled::slots`): one of its needles occurs.
    hits: Vec<u64>,
    key: String,
    found: FoundCache,
}

/// Short values recently scanned, with the needles found in each, per needle set. Most fields
/// of Windows events repeat from one event to the next (`IntegrityLevel`, `Company`, `User`, the
/// image of a process started again and again), and a scan of even a short value costs more in
/// the set's cold tables than looking its result up here: three in four short values of the
/// EVTX samples, in their order, were found here. Direct-mapped and small (at most 32 KB of
/// values per thread): it remembers only what recurs within the last few hundred values.
#[derive(Default)]
struct FoundCache {
    entries: Vec<Found>,
}

/// One value a needle set was run over, and the needles it holds.
#[derive(Default)]
struct Found {
    /// [`Needles::id`] of the set; 0: empty.
    set: u64,
    value: String,
    needles: Vec<u32>,
}

/// Entries of a [`FoundCache`]: `1 << FOUND_BITS`.
const FOUND_BITS: u32 = 8;

/// Longest value a [`FoundCache`] keeps.
const FOUND_MAX_VALUE: usize = 128;

impl FoundCache {
    /// Sets the group bits of the needles of `set` occurring in `text`, from the cache when
    /// `set` was last run over the same text here.
    fn scan(&mut self, set: &Needles, text: &str, hits: &mut [u64]) {
        if text.len() > FOUND_MAX_VALUE {
            return set.scan(text, hits);
        }
        if self.entries.is_empty() {
            self.entries.resize_with(1 << FOUND_BITS, Found::default);
        }
        let mut h = FxHasher::default();
        h.write_u64(set.id());
        h.write(text.as_bytes());
        let entry = &mut self.entries[(h.finish() >> (64 - FOUND_BITS)) as usize];
        if entry.set != set.id() || entry.value != text {
            entry.set = set.id();
            entry.value.clear();
            entry.value.push_str(text);
            entry.needles.clear();
            set.find(text, &mut |needle| entry.needles.push(needle as u32));
            entry.needles.sort_unstable();
            entry.needles.dedup();
        }
        for &needle in &entry.needles {
            set.hit(needle as usize, hits);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The fields of one Windows event (name, value), as parsers produce them.
pub(crate) struct WinEvent<'a, I> {
    pub(crate) channel: &'a str,
    pub(crate) event_id: u32,
    pub(crate) fields: I,
}

impl Compiled {
    /// Appends the indexes of the rules matching the event to `out`, in rule order.
    pub(crate) fn matches<'a, I>(&self, ev: WinEvent<'a, I>, s: &mut Scratch, out: &mut Vec<u32>)
    where
        I: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        s.key.clear();
        s.key.push_str(ev.channel);
        s.key.make_ascii_lowercase();
        let candidates: &Candidates = match self.channels.get(s.key.as_str()) {
            Some(routes) => routes.by_event_id.get(&ev.event_id).unwrap_or(&routes.any),
            None => &self.any_channel,
        };
        if candidates.empty {
            return;
        }
        let plan = candidates.plan(&self.rules, &self.fields);
        // Keyword needles are searched in every value at once; otherwise only the values the
        // route's rules read are loaded.
        let all = plan.keywords.is_some();
        if all {
            self.load(ev.fields.clone(), plan, s);
        } else {
            self.load_read(ev.fields.clone(), plan, s);
        }
        s.hits.clear();
        s.hits.resize(self.slots.div_ceil(64), 0);
        for &f in &s.touched {
            if let Some(n) = plan.automaton(plan.read(f)) {
                let [_, _, ls, le] = s.values[s.slots[f as usize] as usize];
                s.found.scan(n, &s.lower[ls as usize..le as usize], &mut s.hits);
            }
        }
        if let Some(n) = &plan.keywords {
            n.scan(&s.lower, &mut s.hits);
        }
        // A keyword search reads every value: load them all when such a rule is to be evaluated.
        let words = candidates
            .filtered
            .iter()
            .zip(&candidates.always)
            .zip(&plan.keyword_rules);
        if !all
            && words
                .zip(&s.hits)
                .any(|(((&filtered, &always), &keywords), &hits)| ((hits & filtered) | always) & keywords != 0)
        {
            self.load(ev.fields, plan, s);
        }
        for (w, (&filtered, &always)) in candidates.filtered.iter().zip(&candidates.always).enumerate() {
            let mut bits = (s.hits[w] & filtered) | always;
            while bits != 0 {
                let r = (w * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                let rule = &self.rules[r as usize];
                // A rule needing more than one group of needles is evaluated once each was seen.
                let seen = |&slot: &u32| s.hits[slot as usize / 64] & (1 << (slot % 64)) != 0;
                if rule.more_slots.iter().all(seen) && self.expr(&rule.condition, &rule.searches, s) {
                    out.push(r);
                }
            }
        }
    }

    /// Loads the first value of every field the route reads.
    fn load_read<'a>(&self, fields: impl Iterator<Item = (&'a str, &'a str)>, plan: &Plan, s: &mut Scratch) {
        self.clear(s);
        for (k, v) in fields {
            if let Some(field) = plan.field(k)
                && s.slots[field as usize] == NONE
            {
                push(s, field, v);
            }
        }
    }

    /// Loads every value (the first of each field the route reads is the one its tests read).
    pub(crate) fn load<'a>(&self, fields: impl Iterator<Item = (&'a str, &'a str)>, plan: &Plan, s: &mut Scratch) {
        self.clear(s);
        for (k, v) in fields {
            push(s, plan.field(k).unwrap_or(NONE), v);
        }
    }

    /// Empties the loaded values.
    fn clear(&self, s: &mut Scratch) {
        for f in s.touched.drain(..) {
            if let Some(slot) = s.slots.get_mut(f as usize) {
                *slot = NONE;
            }
        }
        if s.slots.len() < self.fields.len() {
            s.slots.resize(self.fields.len(), NONE);
        }
        s.raw.clear();
        s.lower.clear();
        s.values.clear();
    }

    fn expr(&self, e: &Expr, searches: &[Search], s: &Scratch) -> bool {
        match e {
            Expr::Search(i) => match &searches[*i] {
                Search::All(tests) => tests.iter().all(|t| test(t, s)),
                Search::Any(alts) => alts.iter().any(|tests| tests.iter().all(|t| test(t, s))),
            },
            Expr::Not(inner) => !self.expr(inner, searches, s),
            Expr::And(items) => items.iter().all(|x| self.expr(x, searches, s)),
            Expr::Or(items) => items.iter().any(|x| self.expr(x, searches, s)),
        }
    }
}

/// Appends value `v` of `field` (`NONE`: a field the route does not read), the field's first
/// when it has none yet.
fn push(s: &mut Scratch, field: u32, v: &str) {
    let index = s.values.len() as u32;
    if field != NONE && s.slots[field as usize] == NONE {
        s.slots[field as usize] = index;
        s.touched.push(field);
    }
    let (rs, ls) = (s.raw.len() as u32, s.lower.len() as u32);
    s.raw.push_str(v);
    s.lower.push_str(v);
    let lower_end = s.lower.len() as u32;
    s.lower[ls as usize..].make_ascii_lowercase();
    // No needle holds it, so no needle is found across two values.
    s.lower.push(VALUE_SEPARATOR);
    s.values.push([rs, s.raw.len() as u32, ls, lower_end]);
}

/// The raw and lowered text of value `index`.
fn value(s: &Scratch, index: u32) -> (&str, &str) {
    let [rs, re, ls, le] = s.values[index as usize];
    (&s.raw[rs as usize..re as usize], &s.lower[ls as usize..le as usize])
}

fn slot(s: &Scratch, field: u32) -> Option<(&str, &str)> {
    match s.slots.get(field as usize) {
        Some(&i) if i != NONE => Some(value(s, i)),
        _ => None,
    }
}

fn test(t: &FieldTest, s: &Scratch) -> bool {
    match t.target {
        Target::Field(f) => {
            let v = slot(s, f);
            if t.all {
                t.matchers.iter().all(|m| matcher(m, v, s))
            } else {
                t.matchers.iter().any(|m| matcher(m, v, s))
            }
        }
        Target::Any => {
            let each = |m: &Matcher| (0..s.values.len() as u32).any(|i| matcher(m, Some(value(s, i)), s));
            if t.all {
                t.matchers.iter().all(each)
            } else {
                t.matchers.iter().any(each)
            }
        }
    }
}

fn matcher(m: &Matcher, v: Option<(&str, &str)>, s: &Scratch) -> bool {
    match m {
        Matcher::Exists(yes) => v.is_some() == *yes,
        Matcher::Null => v.is_none_or(|(raw, _)| raw.is_empty()),
        _ => {
            let Some((raw, lower)) = v else { return false };
            match m {
                Matcher::Str { pat, cased } => pat.matches(if *cased { raw } else { lower }),
                Matcher::Contains(literals) => literals.in_value(lower),
                Matcher::Regex(re) => re.is_match(raw),
                Matcher::Cidr { net, bits } => raw.trim().parse::<IpAddr>().is_ok_and(|ip| in_network(ip, *net, *bits)),
                Matcher::Num(cmp, n) => raw.trim().parse::<f64>().is_ok_and(|x| match cmp {
                    Cmp::Gt => x > *n,
                    Cmp::Gte => x >= *n,
                    Cmp::Lt => x < *n,
                    Cmp::Lte => x <= *n,
                }),
                Matcher::FieldRef { other, place } => slot(s, *other).is_some_and(|(_, o)| match place {
                    Place::Exact => lower == o,
                    Place::Contains => lower.contains(o),
                    Place::Starts => lower.starts_with(o),
                    Place::Ends => lower.ends_with(o),
                }),
                Matcher::Exists(_) | Matcher::Null => false,
            }
        }
    }
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
