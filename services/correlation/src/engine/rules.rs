//! Rule packs as data: YAML documents of two kinds.
//!
//! - **Sigma correlation rules** (specification v2.1): `title`, `id`, `name`, `description`,
//!   `level`, `tags` (`attack.t1110.003` → technique `T1110.003`) and `correlation:` with
//!   `type` (`event_count`, `value_count`, `temporal`, `temporal_ordered`), `rules`,
//!   `group-by`, `timespan`, `condition` (`gt`/`gte`/`eq`, an optional `lt`/`lte` upper bound,
//!   and `field` for `value_count`) and `generate`. One extension: `type: beacon` (see
//!   [`Kind::Beacon`]); and a `confidence` beside `level`.
//! - **Selections** (an attackmesh extension standing in for Sigma base rules over network
//!   logs): `name`, optional `id`, `match:` and `not:` (see [`super::matcher`]).
//!
//! A correlation's `rules` names selections of the pack, other correlation rules of the pack
//! (chaining, as the specification allows), or rules of attribution by id: an attackmesh rule
//! id (`pack/rule`, or only `rule`) or a Sigma rule id, matched against the evidence of the
//! event's attributed techniques.

use std::{collections::HashMap, time::Duration};

use attackmesh::proto::Severity;
use serde::Deserialize;

use super::{
    fields::Field,
    matcher::{RawMap, Selection},
};

/// What a correlation rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Events of the referenced rules in the window.
    EventCount,
    /// Distinct values of `condition.field` in the window.
    ValueCount,
    /// Every referenced rule matched in the window, in any order.
    Temporal,
    /// Every referenced rule matched in the window, in the listed order.
    TemporalOrdered,
    /// Extension beyond Sigma: at least `condition` events whose inter-arrival times are steady
    /// (coefficient of variation at most `max_jitter`, mean interval at least `min_interval`).
    Beacon,
}

/// The count a rule's window must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Smallest count that fires.
    pub min: u64,
    /// Largest count that fires, if bounded.
    pub max: Option<u64>,
}

impl Threshold {
    /// Whether `n` satisfies the condition.
    pub fn holds(&self, n: u64) -> bool {
        n >= self.min && self.max.is_none_or(|m| n <= m)
    }
}

/// What a correlation's `rules` entry points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// A base: a selection of the pack or a rule of attribution (index into [`Pack::bases`]).
    Base(usize),
    /// Another correlation rule of the pack (index into [`Pack::rules`]).
    Rule(usize),
}

/// A base rule.
#[derive(Debug, Clone)]
pub enum Base {
    /// A selection of the pack.
    Selection(Selection),
    /// A rule of attribution, by id, matched against evidence rule ids.
    External(String),
}

/// One compiled correlation rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable id (the document's `id`, else its `name`).
    pub id: String,
    /// Short name (`name`, else `id`).
    pub name: String,
    /// Title.
    pub title: String,
    /// What the behaviour means.
    pub description: String,
    /// What is counted.
    pub kind: Kind,
    /// The referenced rules, in order.
    pub refs: Vec<Ref>,
    /// Window key fields.
    pub group_by: Vec<Field>,
    /// Names of `group_by`, as written.
    pub group_names: Vec<String>,
    /// Position in `group_by` of the field whose value decides the owning replica (always
    /// set: a rule without an entity field in `group-by` is refused).
    pub partition: Option<usize>,
    /// Sliding window length, in microseconds.
    pub timespan_micros: i64,
    /// Count condition.
    pub threshold: Threshold,
    /// `value_count`'s field.
    pub value_field: Option<Field>,
    /// Beacon: largest coefficient of variation of the intervals.
    pub max_jitter: f64,
    /// Beacon: smallest mean interval, in microseconds.
    pub min_interval_micros: i64,
    /// ATT&CK technique ids from the tags.
    pub techniques: Vec<String>,
    /// Confidence of a finding, in [0, 1].
    pub confidence: f64,
    /// Severity of a finding.
    pub severity: Severity,
    /// Whether a match is reported (false: it only feeds other correlation rules).
    pub generate: bool,
}

/// A compiled pack.
#[derive(Debug, Clone, Default)]
pub struct Pack {
    /// Base rules, referenced by [`Ref::Base`].
    pub bases: Vec<Base>,
    /// Correlation rules.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Sigma's descriptive keys are accepted so rules load unchanged; they do not change matching.
#[allow(dead_code)]
struct Doc {
    title: Option<String>,
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    level: Option<String>,
    confidence: Option<f64>,
    status: Option<String>,
    author: Option<String>,
    date: Option<serde_yaml::Value>,
    modified: Option<serde_yaml::Value>,
    references: Option<serde_yaml::Value>,
    falsepositives: Option<serde_yaml::Value>,
    correlation: Option<CorrelationDoc>,
    #[serde(rename = "match")]
    matches: Option<OneOrMany>,
    not: Option<RawMap>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(RawMap),
    Many(Vec<RawMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrelationDoc {
    #[serde(rename = "type")]
    kind: String,
    rules: OneOrManyNames,
    #[serde(rename = "group-by", default)]
    group_by: Vec<String>,
    timespan: String,
    #[serde(default)]
    condition: HashMap<String, serde_yaml::Value>,
    #[serde(default = "yes")]
    generate: bool,
    max_jitter: Option<f64>,
    min_interval: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrManyNames {
    One(String),
    Many(Vec<String>),
}

/// Parses a Sigma-style duration: `30s`, `5m`, `1h`, `1d` (and any humantime form).
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("bad duration {text:?}: {e}"))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn severity(level: Option<&str>) -> Result<Severity, String> {
    Ok(match level.unwrap_or("medium") {
        "informational" | "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => return Err(format!("unknown level {other:?}")),
    })
}

fn techniques(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack.t"))
        .filter(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|t| format!("T{}", t.to_ascii_uppercase()))
        .collect()
}

impl Pack {
    /// Compiles the YAML documents of `texts` (name, text) into one pack; every error names
    /// its document and what is wrong with it.
    pub fn parse(texts: &[(&str, &str)]) -> Result<Pack, String> {
        let mut docs = Vec::new();
        for (source, text) in texts {
            for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let value =
                    serde_yaml::Value::deserialize(de).map_err(|e| format!("{source}: document {}: {e}", i + 1))?;
                if value.is_null() {
                    continue;
                }
                let doc: Doc =
                    serde_yaml::from_value(value).map_err(|e| format!("{source}: document {}: {e}", i + 1))?;
                docs.push((format!("{source}: document {}", i + 1), doc));
            }
        }
        let mut pack = Pack::default();
        let mut names: HashMap<String, Ref> = HashMap::new();
        // Selections first, then correlation rules (so any order of documents works).
        for (at, doc) in &docs {
            if doc.correlation.is_some() {
                continue;
            }
            let name = doc
                .name
                .clone()
                .or(doc.id.clone())
                .ok_or(format!("{at}: a selection needs a name"))?;
            let any = match &doc.matches {
                None => return Err(format!("{at}: selection {name:?} has neither match nor correlation")),
                Some(OneOrMany::One(m)) => vec![m.clone()],
                Some(OneOrMany::Many(ms)) => ms.clone(),
            };
            let selection = Selection::compile(&any, doc.not.as_ref()).map_err(|e| format!("{at}: {e}"))?;
            let r = Ref::Base(pack.bases.len());
            pack.bases.push(Base::Selection(selection));
            for key in [Some(&name), doc.id.as_ref()].into_iter().flatten() {
                if names.insert(key.clone(), r.clone()).is_some() {
                    return Err(format!("{at}: {key:?} is defined twice"));
                }
            }
        }
        let correlations: Vec<_> = docs.iter().filter(|(_, d)| d.correlation.is_some()).collect();
        for (i, (at, doc)) in correlations.iter().enumerate() {
            for key in [doc.name.as_ref(), doc.id.as_ref()].into_iter().flatten() {
                if names.insert(key.clone(), Ref::Rule(i)).is_some() {
                    return Err(format!("{at}: {key:?} is defined twice"));
                }
            }
        }
        for (at, doc) in correlations {
            let rule = Self::rule(doc, &mut names, &mut pack.bases).map_err(|e| format!("{at}: {e}"))?;
            pack.rules.push(rule);
        }
        for (i, rule) in pack.rules.iter().enumerate() {
            if rule.refs.contains(&Ref::Rule(i)) {
                return Err(format!("rule {:?} refers to itself", rule.id));
            }
        }
        Ok(pack)
    }

    fn rule(doc: &Doc, names: &mut HashMap<String, Ref>, bases: &mut Vec<Base>) -> Result<Rule, String> {
        let Some(c) = &doc.correlation else {
            return Err("not a correlation rule".into());
        };
        let id = doc
            .id
            .clone()
            .or(doc.name.clone())
            .ok_or("a correlation rule needs an id or a name")?;
        let kind = match c.kind.as_str() {
            "event_count" => Kind::EventCount,
            "value_count" => Kind::ValueCount,
            "temporal" => Kind::Temporal,
            "temporal_ordered" => Kind::TemporalOrdered,
            "beacon" => Kind::Beacon,
            other => return Err(format!("unknown correlation type {other:?}")),
        };
        let listed = match &c.rules {
            OneOrManyNames::One(n) => vec![n.clone()],
            OneOrManyNames::Many(ns) => ns.clone(),
        };
        if listed.is_empty() {
            return Err("correlation.rules is empty".into());
        }
        let refs = listed
            .iter()
            .map(|n| {
                names.get(n).cloned().unwrap_or_else(|| {
                    let r = Ref::Base(bases.len());
                    bases.push(Base::External(n.clone()));
                    names.insert(n.clone(), r.clone());
                    r
                })
            })
            .collect();
        let group_by = c
            .group_by
            .iter()
            .map(|n| Field::parse(n).ok_or(format!("unknown group-by field {n:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let partition = c
            .group_by
            .iter()
            .position(|n| attackmesh_runtime::partition::ENTITY_FIELDS.contains(&n.as_str()));
        if partition.is_none() {
            return Err(format!(
                "group-by must include one of {} so each window has one owning replica",
                attackmesh_runtime::partition::ENTITY_FIELDS.join(", ")
            ));
        }
        let timespan = duration(&c.timespan)?;
        if timespan.is_zero() {
            return Err("correlation.timespan must be positive".into());
        }
        let number = |k: &str| -> Result<Option<u64>, String> {
            c.condition
                .get(k)
                .map(|v| v.as_u64().ok_or(format!("condition.{k} must be a whole number")))
                .transpose()
        };
        let min = match (number("gte")?, number("gt")?, number("eq")?) {
            (Some(n), None, None) => n,
            (None, Some(n), None) => n + 1,
            (None, None, Some(n)) => n,
            (None, None, None) if matches!(kind, Kind::Temporal | Kind::TemporalOrdered) => 1,
            (None, None, None) => {
                return Err(
                    "condition needs gte, gt or eq (lt/lte alone needs a window's end, which a stream never sees)"
                        .into(),
                );
            }
            _ => return Err("condition takes one of gte, gt, eq".into()),
        };
        let max = match (number("lte")?, number("lt")?, number("eq")?) {
            (_, _, Some(n)) => Some(n),
            (Some(n), None, None) => Some(n),
            (None, Some(n), None) => Some(n.saturating_sub(1)),
            (None, None, None) => None,
            _ => return Err("condition takes one of lte, lt".into()),
        };
        let value_field = match c.condition.get("field") {
            Some(serde_yaml::Value::String(f)) => {
                Some(Field::parse(f).ok_or(format!("unknown condition field {f:?}"))?)
            }
            Some(_) => return Err("condition.field must be a field name".into()),
            None if kind == Kind::ValueCount => return Err("value_count needs condition.field".into()),
            None => None,
        };
        let level = severity(doc.level.as_deref())?;
        let confidence = doc.confidence.unwrap_or(match level {
            Severity::Critical => 0.9,
            Severity::High => 0.75,
            Severity::Medium => 0.6,
            _ => 0.4,
        });
        if !(0.0..=1.0).contains(&confidence) {
            return Err("confidence must be within [0, 1]".into());
        }
        let name = doc.name.clone().unwrap_or(id.clone());
        Ok(Rule {
            title: doc.title.clone().unwrap_or(name.clone()),
            description: doc.description.clone().unwrap_or_default(),
            kind,
            refs,
            group_names: c.group_by.clone(),
            group_by,
            partition,
            timespan_micros: micros(timespan),
            threshold: Threshold { min, max },
            value_field,
            max_jitter: c.max_jitter.unwrap_or(0.1),
            min_interval_micros: c
                .min_interval
                .as_deref()
                .map(duration)
                .transpose()?
                .map_or(1_000_000, micros),
            techniques: techniques(&doc.tags),
            confidence,
            severity: level,
            generate: c.generate,
            id,
            name,
        })
    }
}

/// The built-in network behaviours pack (`rules/network.yml`).
pub const BUILTIN: &str = include_str!("../../rules/network.yml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pack_compiles_and_every_rule_has_a_technique_and_an_owner() {
        let pack = Pack::parse(&[("network.yml", BUILTIN)]).unwrap();
        assert!(pack.rules.len() >= 8);
        for r in &pack.rules {
            assert!(!r.techniques.is_empty(), "{}", r.id);
            assert!(r.partition.is_some(), "{}", r.id);
            assert!(!r.description.is_empty(), "{}", r.id);
        }
    }

    #[test]
    fn bad_rules_are_named() {
        let bad = |text: &str| Pack::parse(&[("t.yml", text)]).unwrap_err();
        assert!(
            bad("name: a\ncorrelation: {type: event_count, rules: x, group-by: [dns.parent], timespan: 5m, condition: {gte: 1}}")
                .contains("owning replica")
        );
        assert!(
            bad(
                "name: a\ncorrelation: {type: nope, rules: x, group-by: [source.ip], timespan: 5m, condition: {gte: 1}}"
            )
            .contains("nope")
        );
        assert!(
            bad("name: a\ncorrelation: {type: event_count, rules: x, group-by: [source.ip], timespan: 5m}")
                .contains("gte")
        );
        assert!(
            bad("name: a\ncorrelation: {type: value_count, rules: x, group-by: [source.ip], timespan: 5m, condition: {gte: 2}}")
                .contains("field")
        );
        assert!(
            bad("name: a\ncorrelation: {type: event_count, rules: x, group-by: [source.ip], timespan: soon, condition: {gte: 2}}")
                .contains("duration")
        );
        assert!(bad("name: s\nmatch: {nofield: 1}").contains("nofield"));
        assert!(bad("name: s\nwhat: 1").contains("what"));
    }

    #[test]
    fn sigma_correlation_rule_over_attribution_rules() {
        let text = "title: Many failed logins\nid: 0e95725d-7320-415d-80f7-004da920fc11\nname: failed_logins\ncorrelation:\n  type: event_count\n  rules: [cowrie/login-failed, 5b2b3f0e-7b7d-4b5c-9a51-0a1f3e0d4c21]\n  group-by: [source.ip]\n  timespan: 5m\n  condition: {gte: 10}\ntags: [attack.credential-access, attack.t1110.001]\nlevel: high\n";
        let pack = Pack::parse(&[("t.yml", text)]).unwrap();
        assert_eq!(pack.rules[0].techniques, ["T1110.001"]);
        assert_eq!(pack.rules[0].timespan_micros, 300_000_000);
        assert!(matches!(&pack.bases[0], Base::External(id) if id == "cowrie/login-failed"));
    }
}
