//! Validates parsed packs against a knowledge base and compiles them into a [`RuleSet`].
//!
//! Validation is strict and names the file and rule: unknown fields, duplicate ids, technique
//! ids that are not active techniques of the knowledge base, confidences outside [0, 1],
//! regexes that don't compile, unsupported event-type globs, unknown detector kinds. A pack
//! set either compiles whole or not at all.
//!
//! This file validates and compiles each rule; `triggers` picks each rule's trigger condition
//! and builds the per-event-type dispatch tables with their shared matchers.

mod triggers;

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use attackmesh::proto::DetectorKind;
use regex::Regex;

use super::fields::{EndpointField, FieldRef, Side};
use super::model::{Condition, FieldIdx, Op, Rule, RuleIdx, kind_bit};
use super::pack::{ConditionDef, PackDef, RuleDef, RulePack, TechniqueDef};
use super::text::Glob;
use super::{PackInfo, RuleSet};
use crate::error::Error;
use crate::kb::{Kb, Resolved};
use triggers::{TriggerDef, pick_trigger, trigger_def};

/// Highest number of distinct fields rules may read.
const MAX_FIELDS: usize = 4096;

impl RuleSet {
    /// Validates and compiles packs; the first problem found fails the whole set.
    pub fn compile(kb: &Kb, packs: &[RulePack]) -> Result<RuleSet, Error> {
        let mut b = Builder::default();
        let mut names = HashMap::new();
        for pack in packs {
            if let Some(other) = names.insert(pack.def.pack.clone(), pack.source.clone()) {
                return Err(Error::pack(
                    &pack.source,
                    format!("pack `{}` is also defined in {other}", pack.def.pack),
                ));
            }
            b.pack(kb, pack)?;
        }
        b.finish()
    }
}

#[derive(Default)]
struct Builder {
    rules: Vec<Rule>,
    packs: Vec<PackInfo>,
    fields: Vec<FieldRef>,
    field_index: HashMap<FieldRef, FieldIdx>,
    /// Per rule: its trigger field and what triggers it.
    triggers: Vec<Option<(FieldIdx, TriggerDef)>>,
}

impl Builder {
    fn pack(&mut self, kb: &Kb, pack: &RulePack) -> Result<(), Error> {
        let PackDef {
            pack: name,
            version,
            rules,
            ..
        } = &pack.def;
        let file = pack.source.as_str();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::pack(
                file,
                format!("pack name `{name}` must be non-empty [A-Za-z0-9._-]"),
            ));
        }
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::pack(file, format!("version `{version}` is not x.y.z")));
        }
        let mut ids = HashSet::new();
        for rule in rules {
            if !ids.insert(rule.id.as_str()) {
                return Err(Error::rule(file, &rule.id, "duplicate rule id"));
            }
            self.rule(kb, file, name, rule)?;
        }
        self.packs.push(PackInfo {
            name: name.clone(),
            version: version.clone(),
            source: file.to_owned(),
            rules: rules.len(),
        });
        Ok(())
    }

    fn rule(&mut self, kb: &Kb, file: &str, pack: &str, def: &RuleDef) -> Result<(), Error> {
        let err = |m: String| Error::rule(file, &def.id, m);
        if def.id.is_empty() || def.id.contains('/') || def.id.chars().any(char::is_whitespace) {
            return Err(err("rule id must be non-empty, without `/` or spaces".into()));
        }
        let idx = self.rules.len() as RuleIdx;
        let event_types = def
            .event_type
            .0
            .iter()
            .map(|g| {
                Glob::parse(g)
                    .ok_or_else(|| err(format!("event_type `{g}`: only `x`, `x*`, `*x` and `*` are supported")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut kinds = 0u8;
        for k in &def.detector_kind.0 {
            kinds |= parse_kind(k).ok_or_else(|| {
                err(format!(
                    "detector_kind `{k}` is not one of traffic_monitor, behavioural_analysis, decoy, other"
                ))
            })?;
        }
        if def.techniques.is_empty() {
            return Err(err("no techniques".into()));
        }
        let mut techniques = Vec::new();
        for t in &def.techniques {
            let (id, confidence) = match t {
                TechniqueDef::Id(id) => (id, def.confidence),
                TechniqueDef::Full { id, confidence } => (id, confidence.or(def.confidence)),
            };
            let confidence = confidence.ok_or_else(|| {
                err(format!(
                    "technique {id}: no confidence (set it on the technique or the rule)"
                ))
            })?;
            if !(0.0..=1.0).contains(&confidence) {
                return Err(err(format!(
                    "technique {id}: confidence {confidence} is outside [0, 1]"
                )));
            }
            let tech = match kb.resolve(id) {
                Resolved::Active(t) => t,
                Resolved::Revoked { replacement, .. } => {
                    return Err(err(format!(
                        "technique {id} is revoked in ATT&CK {}; use {}",
                        kb.attack_version(),
                        replacement.id
                    )));
                }
                Resolved::Deprecated(_) => {
                    return Err(err(format!(
                        "technique {id} is deprecated in ATT&CK {}",
                        kb.attack_version()
                    )));
                }
                Resolved::Unknown => {
                    return Err(err(format!(
                        "technique {id} is not a technique of ATT&CK {}",
                        kb.attack_version()
                    )));
                }
            };
            let ti = kb
                .technique_idx(&tech.id)
                .ok_or_else(|| err(format!("technique {id} not indexed")))?;
            if techniques.iter().any(|(t, _)| *t == ti) {
                return Err(err(format!("technique {id} listed twice")));
            }
            techniques.push((ti, confidence));
        }
        let mut conditions = Vec::new();
        for (i, c) in def.when.iter().enumerate() {
            conditions.push(
                self.condition(c)
                    .map_err(|m| err(format!("condition {}: {m}", i + 1)))?,
            );
        }
        let trigger = pick_trigger(&def.when);
        let trigger_def = match trigger {
            Some(t) => Some((conditions[t].field, trigger_def(&def.when[t]).map_err(err)?)),
            None => None,
        };
        debug_assert_eq!(self.triggers.len(), idx as usize);
        self.triggers.push(trigger_def);
        self.rules.push(Rule {
            full_id: format!("{pack}/{}", def.id),
            description: if def.description.is_empty() {
                def.id.clone()
            } else {
                def.description.clone()
            },
            event_types,
            kinds,
            conditions,
            trigger,
            techniques,
            fallback: def.fallback,
        });
        Ok(())
    }

    fn field(&mut self, c: &ConditionDef) -> Result<FieldIdx, String> {
        let field = match (&c.field, &c.attr) {
            (Some(f), None) => parse_field(f).ok_or_else(|| format!("unknown field `{f}`"))?,
            (None, Some(a)) if !a.is_empty() => FieldRef::Attr(a.as_str().into()),
            _ => return Err("exactly one of `field` or `attr` is required".into()),
        };
        if let Some(i) = self.field_index.get(&field) {
            return Ok(*i);
        }
        if self.fields.len() >= MAX_FIELDS {
            return Err("too many distinct fields".into());
        }
        let i = self.fields.len() as FieldIdx;
        self.fields.push(field.clone());
        self.field_index.insert(field, i);
        Ok(i)
    }

    fn condition(&mut self, c: &ConditionDef) -> Result<Condition, String> {
        let field = self.field(c)?;
        let compare = [c.gt, c.gte, c.lt, c.lte];
        let ops = [
            c.equals.is_some(),
            c.one_of.is_some(),
            c.contains.is_some(),
            c.regex.is_some(),
            c.command.is_some(),
            c.exists.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count()
            + usize::from(compare.iter().any(Option::is_some));
        if ops != 1 {
            return Err(
                "exactly one operator is required (equals, in, contains, regex, command, gt/gte/lt/lte, exists)".into(),
            );
        }
        let nonempty = |v: &[String], what: &str| {
            if v.is_empty() || v.iter().any(String::is_empty) {
                Err(format!("`{what}` needs non-empty values"))
            } else {
                Ok(())
            }
        };
        let op = if let Some(v) = &c.equals {
            Op::Equals(vec![v.text().into()])
        } else if let Some(v) = &c.one_of {
            if v.is_empty() {
                return Err("`in` needs values".into());
            }
            Op::Equals(v.iter().map(|s| s.text().into()).collect())
        } else if let Some(v) = &c.contains {
            nonempty(&v.0, "contains")?;
            Op::Contains(substring_matcher(&v.0)?)
        } else if let Some(v) = &c.regex {
            nonempty(&v.0, "regex")?;
            Op::Regex(
                v.0.iter()
                    .map(|r| Regex::new(r).map_err(|e| format!("bad regex `{r}`: {e}")))
                    .collect::<Result<_, _>>()?,
            )
        } else if let Some(v) = &c.command {
            nonempty(&v.0, "command")?;
            Op::Command(v.0.iter().map(|s| s.as_str().into()).collect())
        } else if let Some(want) = c.exists {
            Op::Exists(want)
        } else {
            if compare.iter().flatten().any(|x| !x.is_finite()) {
                return Err("numeric bounds must be finite".into());
            }
            Op::Compare {
                gt: c.gt,
                gte: c.gte,
                lt: c.lt,
                lte: c.lte,
            }
        };
        Ok(Condition {
            field,
            op,
            negate: c.not,
        })
    }
}

fn substring_matcher(patterns: &[String]) -> Result<AhoCorasick, String> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .map_err(|e| format!("substring matcher: {e}"))
}

fn parse_kind(k: &str) -> Option<u8> {
    let kind = match k.trim().to_ascii_lowercase().trim_start_matches("detector_kind_") {
        "traffic_monitor" | "traffic" => DetectorKind::TrafficMonitor,
        "behavioural_analysis" | "behavioral_analysis" | "behaviour" | "behavior" => DetectorKind::BehaviouralAnalysis,
        "decoy" | "honeypot" => DetectorKind::Decoy,
        "other" | "unspecified" => DetectorKind::Other,
        _ => return None,
    };
    Some(kind_bit(kind))
}

fn parse_field(name: &str) -> Option<FieldRef> {
    Some(match name {
        "description" => FieldRef::Description,
        "event_type" => FieldRef::EventType,
        "source_service" => FieldRef::SourceService,
        "severity" => FieldRef::Severity,
        "command_line" => FieldRef::CommandLine,
        _ => {
            let (side, rest) = if let Some(r) = name.strip_prefix("source.") {
                (Side::Source, r)
            } else {
                (Side::Destination, name.strip_prefix("destination.")?)
            };
            let f = match rest {
                "ip" => EndpointField::Ip,
                "port" => EndpointField::Port,
                "hostname" => EndpointField::Hostname,
                "user" => EndpointField::User,
                "process.name" => EndpointField::ProcessName,
                "process.executable" => EndpointField::ProcessExecutable,
                "process.command_line" => EndpointField::ProcessCommandLine,
                "process.parent_name" => EndpointField::ProcessParentName,
                _ => return None,
            };
            FieldRef::Endpoint(side, f)
        }
    })
}
