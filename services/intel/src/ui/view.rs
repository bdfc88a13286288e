//! What the page asks for and what it is told: the view's query parameters (checked, with
//! field violations for anything malformed) and the JSON of the matrix layout, the counts and a
//! technique's details. Reads nothing from the store itself.

use std::collections::BTreeMap;

use attackmesh::proto::{FieldViolation, Severity};
use attackmesh_attack::{Kb, kb::model::Technique};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    error::Error,
    stix::taxii_timestamp,
    store::matrix::{MatrixCounts, MatrixFilter, TechniqueEvent},
};

/// Longest filter value accepted.
const MAX_VALUE: usize = 256;

/// The query parameters of every data endpoint: which collection and which observations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ViewParams {
    /// Collection (default: the default collection).
    pub(super) collection: Option<String>,
    /// A window ending now: `15m`, `24h`, `7d` …; `all` or unset: no lower bound.
    since: Option<String>,
    /// Start (RFC 3339), instead of `since`.
    from: Option<String>,
    /// End (RFC 3339, exclusive); unset: no upper bound.
    to: Option<String>,
    /// Only this detector.
    detector: Option<String>,
    /// Only events at least this severe (`low` … `critical`).
    severity: Option<String>,
    /// Only events involving this host, address or user.
    entity: Option<String>,
    /// Only events of this campaign.
    campaign: Option<String>,
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.into(),
        description: description.into(),
    }
}

/// A window such as `90s`, `15m`, `24h`, `7d`, in microseconds.
fn window_us(text: &str) -> Option<i64> {
    let unit = match text.chars().last()? {
        's' => 1_000_000,
        'm' => 60 * 1_000_000,
        'h' => 3_600 * 1_000_000,
        'd' => 86_400 * 1_000_000,
        _ => return None,
    };
    let n: i64 = text[..text.len() - 1].parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(unit)
}

impl ViewParams {
    /// The store filter these parameters describe at `now_us`.
    pub(super) fn filter(&self, now_us: i64) -> Result<MatrixFilter, Error> {
        let mut violations = Vec::new();
        let time = |field: &str, text: &Option<String>, violations: &mut Vec<FieldViolation>| {
            let text = text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
            let parsed = crate::stix::parse_micros(text);
            if parsed.is_none() {
                violations.push(violation(field, "must be an RFC 3339 timestamp"));
            }
            parsed
        };
        let mut from_us = time("from", &self.from, &mut violations).unwrap_or(i64::MIN);
        let to_us = time("to", &self.to, &mut violations).unwrap_or(i64::MAX);
        match self.since.as_deref().map(str::trim) {
            None | Some("" | "all") => {}
            Some(_) if self.from.is_some() => violations.push(violation("since", "give `since` or `from`, not both")),
            Some(text) => match window_us(text) {
                Some(window) => from_us = now_us.saturating_sub(window),
                None => violations.push(violation("since", "must be a window such as 15m, 24h or 7d, or `all`")),
            },
        }
        if from_us >= to_us {
            violations.push(violation("to", "must be later than the start"));
        }
        let mut text = |field: &str, value: &Option<String>| {
            let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
            if value.len() > MAX_VALUE {
                violations.push(violation(field, format!("longer than {MAX_VALUE} bytes")));
                return None;
            }
            Some(value.to_owned())
        };
        let detector = text("detector", &self.detector);
        let entity = text("entity", &self.entity);
        let campaign = text("campaign", &self.campaign);
        let min_severity = match self.severity.as_deref().map(str::trim) {
            None | Some("" | "any") => None,
            Some(name) => match Severity::from_str_name(&format!("SEVERITY_{}", name.to_ascii_uppercase())) {
                Some(s) if s != Severity::Unspecified => Some(s as i32),
                _ => {
                    violations.push(violation("severity", "must be low, medium, high or critical"));
                    None
                }
            },
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(MatrixFilter {
            from_us,
            to_us,
            detector,
            min_severity,
            entity,
            campaign,
        })
    }
}

fn bound(us: i64) -> Value {
    if us == i64::MIN || us == i64::MAX {
        Value::Null
    } else {
        Value::String(taxii_timestamp(us))
    }
}

/// The Enterprise matrix of `kb`: tactics in kill-chain order, each with its techniques sorted
/// by name and their sub-techniques of that tactic.
pub(super) fn layout(kb: &Kb) -> Value {
    let cell = |t: &Technique| json!({ "id": t.id, "name": t.name });
    let tactics: Vec<Value> = kb
        .tactics()
        .map(|tactic| {
            let mut techniques: Vec<&Technique> = kb
                .active_techniques()
                .filter(|t| !t.is_subtechnique && t.tactics.contains(&tactic.id))
                .collect();
            techniques.sort_by(|a, b| a.name.cmp(&b.name));
            let techniques: Vec<Value> = techniques
                .into_iter()
                .map(|t| {
                    let mut subs: Vec<&Technique> = kb
                        .subtechniques_of(t)
                        .filter(|s| s.is_active() && (s.tactics.is_empty() || s.tactics.contains(&tactic.id)))
                        .collect();
                    subs.sort_by(|a, b| a.name.cmp(&b.name));
                    let mut value = cell(t);
                    value["subtechniques"] = subs.into_iter().map(cell).collect();
                    value
                })
                .collect();
            json!({
                "id": tactic.id,
                "name": tactic.name,
                "shortname": tactic.shortname,
                "url": tactic.url,
                "techniques": techniques,
            })
        })
        .collect();
    json!({ "attack_version": kb.attack_version(), "domain": kb.domain(), "tactics": tactics })
}

/// The counts of a view.
pub(super) fn counts(counts: &MatrixCounts, filter: &MatrixFilter, now_us: i64) -> Value {
    let techniques: BTreeMap<&str, Value> = counts
        .techniques
        .iter()
        .map(|(id, t)| {
            (
                id.as_str(),
                json!({ "count": t.count, "confidence": t.mean_confidence() }),
            )
        })
        .collect();
    json!({
        "events": counts.events,
        "from": bound(filter.from_us),
        "to": bound(filter.to_us),
        "as_of": taxii_timestamp(now_us),
        "techniques": techniques,
    })
}

/// Observations (newest first) that a technique's panel lists.
pub(super) const LISTED_EVENTS: usize = 20;

/// A technique's panel: what ATT&CK says of it, the rules behind the newest observations in
/// the view (`events`, newest first), those observations, and the groups known to use it.
pub(super) fn technique(kb: &Kb, t: &Technique, counts: &MatrixCounts, events: &[TechniqueEvent]) -> Value {
    let named = |t: &Technique| json!({ "id": t.id, "name": t.name, "url": t.url });
    let tactics: Vec<Value> = kb
        .tactics_of(t)
        .map(|x| json!({ "id": x.id, "name": x.name }))
        .collect();
    let tactic_names: Vec<&str> = kb.tactics_of(t).map(|x| x.name.as_str()).collect();
    let parent = t.parent_id.as_deref().and_then(|p| kb.technique(p));
    let mut description = format!(
        "{} ({}) is an ATT&CK {} of {} on {}.",
        t.name,
        t.id,
        if t.is_subtechnique {
            "sub-technique"
        } else {
            "technique"
        },
        tactic_names.join(", "),
        if t.platforms.is_empty() {
            "unspecified platforms".to_owned()
        } else {
            t.platforms.join(", ")
        },
    );
    if let Some(p) = parent {
        description.push_str(&format!(" It refines {} ({}).", p.name, p.id));
    }
    let mut rules: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in events {
        let evidence: Value = serde_json::from_str(&e.evidence).unwrap_or(Value::Null);
        for item in evidence.as_array().into_iter().flatten() {
            let source = item["source"].as_str().unwrap_or_default().to_owned();
            let rule = item["rule_id"].as_str().unwrap_or_default().to_owned();
            *rules.entry((source, rule)).or_default() += 1;
        }
    }
    let mut rules: Vec<((String, String), u64)> = rules.into_iter().collect();
    rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut groups: Vec<Value> = kb
        .groups()
        .filter(|g| g.is_active() && g.techniques.contains(&t.id))
        .map(|g| json!({ "id": g.id, "name": g.name, "url": g.url, "aliases": g.aliases }))
        .collect();
    groups.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let tally = counts.techniques.get(&t.id).copied().unwrap_or_default();
    json!({
        "id": t.id,
        "name": t.name,
        "url": t.url,
        "description": description,
        "tactics": tactics,
        "platforms": t.platforms,
        "parent": parent.map(named),
        "subtechniques": kb.subtechniques_of(t).filter(|s| s.is_active()).map(named).collect::<Vec<_>>(),
        "mitigations": kb.mitigations_for(&t.id).map(|m| json!({ "id": m.id, "name": m.name, "url": m.url })).collect::<Vec<_>>(),
        "count": tally.count,
        "confidence": tally.mean_confidence(),
        "rules": rules.into_iter().map(|((source, rule_id), n)| json!({ "source": source, "rule_id": rule_id, "observations": n })).collect::<Vec<_>>(),
        "rules_from": events.len(),
        "events": events.iter().take(LISTED_EVENTS).map(|e| json!({
            "event_id": e.event_id,
            "timestamp": taxii_timestamp(e.ts_us),
            "confidence": e.confidence,
            "evidence": serde_json::from_str::<Value>(&e.evidence).unwrap_or(Value::Null),
            "event": serde_json::from_str::<Value>(&e.summary).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "groups": groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ViewParams {
        let query: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        let uri: axum::http::Uri = format!("/?{}", query.replace(' ', "%20")).parse().unwrap();
        axum::extract::Query::<ViewParams>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn views_are_checked_and_become_store_filters() {
        let now = 10 * 86_400 * 1_000_000;
        let f = params(&[("since", "24h"), ("severity", "high"), ("detector", " suricata ")])
            .filter(now)
            .unwrap();
        assert_eq!(f.from_us, now - 86_400 * 1_000_000);
        assert_eq!(f.to_us, i64::MAX);
        assert_eq!(f.min_severity, Some(Severity::High as i32));
        assert_eq!(f.detector.as_deref(), Some("suricata"));
        let all = params(&[("since", "all")]).filter(now).unwrap();
        assert_eq!((all.from_us, all.to_us), (i64::MIN, i64::MAX));
        let Err(Error::InvalidArgument(v)) =
            params(&[("since", "soon"), ("severity", "dire"), ("to", "yesterday")]).filter(now)
        else {
            panic!("accepted")
        };
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["to", "since", "severity"]);
    }

    #[test]
    fn the_layout_has_tactics_in_kill_chain_order_and_foldable_subtechniques() {
        let kb = Kb::embedded().unwrap();
        let layout = layout(&kb);
        let tactics = layout["tactics"].as_array().unwrap();
        assert_eq!(tactics.len(), kb.tactics().count());
        assert_eq!(tactics[0]["shortname"], "reconnaissance");
        let credential = tactics.iter().find(|t| t["shortname"] == "credential-access").unwrap();
        let brute = credential["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == "T1110")
            .unwrap();
        assert!(
            brute["subtechniques"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == "T1110.001")
        );
    }
}
