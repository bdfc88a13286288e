//! Trigger selection and the shared matchers: each rule is reached through one of its
//! conditions (its trigger), and the triggers of all rules that can apply to an event type are
//! merged into one matcher per field (Aho-Corasick, `RegexSet`, value and command-word indexes).
//! Identical (field, rules) sets share their matchers. Validation happens before, in
//! [`super`]; nothing here rejects a rule the validator accepted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::RegexSet;

use super::Builder;
use crate::error::Error;
use crate::lookup::LookupMap;
use crate::rules::RuleSet;
use crate::rules::model::{Dispatch, FieldIdx, FieldTriggers, RuleIdx};
use crate::rules::pack::ConditionDef;
use crate::rules::text::Glob;

/// The trigger condition of a rule, as the shared matchers need it.
#[derive(Debug, Clone)]
pub(super) enum TriggerDef {
    Equals(Vec<String>),
    Command(Vec<String>),
    Contains(Vec<String>),
    Regex(Vec<String>),
}

impl Builder {
    /// Builds the dispatch tables and assembles the [`RuleSet`].
    pub(super) fn finish(self) -> Result<RuleSet, Error> {
        let rules = self.rules;
        let mut exact: HashMap<Box<str>, Vec<RuleIdx>> = HashMap::new();
        let mut globs: Vec<(Glob, Vec<RuleIdx>)> = Vec::new();
        for r in &rules {
            for g in &r.event_types {
                match g {
                    Glob::Exact(e) => {
                        exact.entry(e.clone()).or_default();
                    }
                    Glob::Prefix(_) | Glob::Suffix(_) if !globs.iter().any(|(x, _)| x == g) => {
                        globs.push((g.clone(), Vec::new()));
                    }
                    _ => {}
                }
            }
        }
        // Which rules apply to each exact event type named by a rule, to each glob, to any type.
        let mut any = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let i = i as RuleIdx;
            if r.event_types.is_empty() || r.event_types.contains(&Glob::Any) {
                any.push(i);
                exact.values_mut().for_each(|d| d.push(i));
                continue;
            }
            for (et, d) in exact.iter_mut() {
                if r.event_types.iter().any(|g| g.matches(et)) {
                    d.push(i);
                }
            }
            for (g, d) in globs.iter_mut() {
                if r.event_types.contains(g) {
                    d.push(i);
                }
            }
        }
        let all: Vec<RuleIdx> = (0..rules.len() as RuleIdx)
            .filter(|r| self.triggers[*r as usize].is_some())
            .collect();
        let mut shared = SharedTriggers {
            defs: &self.triggers,
            cache: HashMap::new(),
        };
        let exact = exact
            .into_iter()
            .map(|(et, members)| Ok((et, shared.dispatch(&members)?)))
            .collect::<Result<LookupMap<_, _>, Error>>()?;
        let globs = globs
            .into_iter()
            .map(|(g, members)| Ok((g, shared.dispatch(&members)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let any = shared.dispatch(&any)?;
        let all = shared.dispatch(&all)?;
        let mut version: Vec<String> = self.packs.iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
        version.sort();
        Ok(RuleSet {
            rules,
            packs: self.packs,
            version: version.join(","),
            fields: self.fields,
            exact,
            globs,
            any,
            all,
        })
    }
}

/// Builds dispatches, sharing the matchers of identical (field, rules) sets.
struct SharedTriggers<'a> {
    defs: &'a [Option<(FieldIdx, TriggerDef)>],
    cache: HashMap<(FieldIdx, Vec<RuleIdx>), Arc<FieldTriggers>>,
}

impl SharedTriggers<'_> {
    fn dispatch(&mut self, members: &[RuleIdx]) -> Result<Dispatch, Error> {
        let mut plain = Vec::new();
        let mut by_field: BTreeMap<FieldIdx, Vec<RuleIdx>> = BTreeMap::new();
        for r in members {
            match &self.defs[*r as usize] {
                None => plain.push(*r),
                Some((field, _)) => by_field.entry(*field).or_default().push(*r),
            }
        }
        let mut fields = Vec::with_capacity(by_field.len());
        for (field, rules) in by_field {
            let key = (field, rules);
            let triggers = match self.cache.get(&key) {
                Some(t) => t.clone(),
                None => {
                    let t = Arc::new(build_triggers(self.defs, &key.1)?);
                    self.cache.insert(key, t.clone());
                    t
                }
            };
            fields.push((field, triggers));
        }
        Ok(Dispatch { plain, fields })
    }
}

/// One field's matchers for `rules` (all of which trigger on that field).
fn build_triggers(defs: &[Option<(FieldIdx, TriggerDef)>], rules: &[RuleIdx]) -> Result<FieldTriggers, Error> {
    let mut contains: BTreeMap<String, Vec<RuleIdx>> = BTreeMap::new();
    let mut regex: Vec<(String, RuleIdx)> = Vec::new();
    let mut equals: LookupMap<Box<str>, Vec<RuleIdx>> = LookupMap::default();
    let mut command: LookupMap<Box<str>, Vec<RuleIdx>> = LookupMap::default();
    for r in rules {
        let Some((_, def)) = &defs[*r as usize] else { continue };
        match def {
            TriggerDef::Equals(values) => {
                for v in values {
                    equals.entry(v.to_ascii_lowercase().into()).or_default().push(*r);
                }
            }
            TriggerDef::Command(names) => {
                for n in names {
                    command.entry(n.to_ascii_lowercase().into()).or_default().push(*r);
                }
            }
            TriggerDef::Contains(patterns) => {
                for p in patterns {
                    let list = contains.entry(p.to_ascii_lowercase()).or_default();
                    if !list.contains(r) {
                        list.push(*r);
                    }
                }
            }
            TriggerDef::Regex(patterns) => regex.extend(patterns.iter().map(|p| (p.clone(), *r))),
        }
    }
    let contains = if contains.is_empty() {
        None
    } else {
        let (patterns, rules): (Vec<String>, Vec<Vec<RuleIdx>>) = contains.into_iter().unzip();
        Some((
            fast_substring_matcher(&patterns).map_err(|m| Error::pack("rules", m))?,
            rules,
        ))
    };
    let regex = if regex.is_empty() {
        None
    } else {
        let (patterns, rules): (Vec<String>, Vec<RuleIdx>) = regex.into_iter().unzip();
        let set = RegexSet::new(&patterns).map_err(|e| Error::pack("rules", format!("regex set: {e}")))?;
        Some((set, rules))
    };
    Ok(FieldTriggers {
        contains,
        regex,
        equals,
        command,
    })
}

/// What triggers a rule, from its trigger condition.
pub(super) fn trigger_def(c: &ConditionDef) -> Result<TriggerDef, String> {
    if let Some(v) = &c.equals {
        Ok(TriggerDef::Equals(vec![v.text()]))
    } else if let Some(v) = &c.one_of {
        Ok(TriggerDef::Equals(v.iter().map(|s| s.text()).collect()))
    } else if let Some(v) = &c.command {
        Ok(TriggerDef::Command(v.0.clone()))
    } else if let Some(v) = &c.contains {
        Ok(TriggerDef::Contains(v.0.clone()))
    } else if let Some(v) = &c.regex {
        Ok(TriggerDef::Regex(v.0.clone()))
    } else {
        Err("internal: condition cannot trigger".into())
    }
}

/// Equality first (a hash lookup), then command words, substrings, and regexes last.
pub(super) fn pick_trigger(conditions: &[ConditionDef]) -> Option<usize> {
    let rank = |c: &ConditionDef| -> Option<u8> {
        if c.not {
            None
        } else if c.equals.is_some() || c.one_of.is_some() {
            Some(0)
        } else if c.command.is_some() {
            Some(1)
        } else if c.contains.is_some() {
            Some(2)
        } else if c.regex.is_some() {
            Some(3)
        } else {
            None
        }
    };
    conditions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| rank(c).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i)
}

/// A shared trigger automaton over lower-case patterns, searched in lower-cased text.
fn fast_substring_matcher(patterns: &[String]) -> Result<AhoCorasick, String> {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .map_err(|e| format!("substring matcher: {e}"))
}
