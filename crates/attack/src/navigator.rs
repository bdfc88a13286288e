//! ATT&CK Navigator layers of observed techniques.
//!
//! A [`Tally`] counts how many events each technique was attributed in; its layer (format 4.5,
//! `enterprise-attack`) has one entry per technique and tactic, `score` = event count, a
//! gradient from the lowest to the highest count and a legend. Technique ids are checked
//! against the knowledge base: revoked ids count for their replacement, unknown ones are
//! reported to the caller and left out.

use std::collections::{BTreeMap, BTreeSet};

use attackmesh::proto::EnrichedEvent;
use serde_json::{Value, json};

use crate::kb::{Kb, Resolved};

/// Navigator layer format version written.
pub const LAYER_VERSION: &str = "4.5";
/// Navigator application version the layer was checked against.
pub const NAVIGATOR_VERSION: &str = "5.1.0";
const LOW_COLOR: &str = "#ffe766ff";
const HIGH_COLOR: &str = "#ff6666ff";

/// The layer for events already in memory (e.g. the demo's results).
pub fn layer(events: &[&EnrichedEvent], kb: &Kb, name: &str) -> Value {
    let mut tally = Tally::default();
    for event in events {
        tally.add(event, kb);
    }
    tally.layer(kb, name)
}

/// Event counts per technique.
#[derive(Debug, Default)]
pub struct Tally {
    events: u64,
    counts: BTreeMap<String, u64>,
    unknown: BTreeSet<String>,
}

impl Tally {
    /// A tally of counts made elsewhere (e.g. a store's aggregation): `events` events in all,
    /// `counts` per active technique id. Ids that are not active techniques of the knowledge
    /// base a layer is built with are left out of it.
    pub fn from_counts(events: u64, counts: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self {
            events,
            counts: counts.into_iter().filter(|(_, n)| *n > 0).collect(),
            unknown: BTreeSet::new(),
        }
    }

    /// Counts one event's techniques (each once per event). Revoked ids count for their
    /// replacement; returns the ids that are not active techniques of `kb` and were not seen
    /// before (they are left out of the layer).
    pub fn add(&mut self, event: &EnrichedEvent, kb: &Kb) -> Vec<String> {
        let mut newly_unknown = Vec::new();
        self.events += 1;
        let mut seen = BTreeSet::new();
        for id in &event.technique_ids {
            let technique = match kb.resolve(id) {
                Resolved::Active(t) => t,
                Resolved::Revoked { replacement, .. } => replacement,
                Resolved::Deprecated(_) | Resolved::Unknown => {
                    if self.unknown.insert(id.clone()) {
                        newly_unknown.push(id.clone());
                    }
                    continue;
                }
            };
            if seen.insert(technique.id.clone()) {
                *self.counts.entry(technique.id.clone()).or_default() += 1;
            }
        }
        newly_unknown
    }

    /// The Navigator layer of everything counted so far.
    pub fn layer(&self, kb: &Kb, name: &str) -> Value {
        let mut techniques = Vec::new();
        let mut parents_shown = BTreeSet::new();
        for (id, count) in &self.counts {
            let Some(t) = kb.technique(id) else { continue };
            if let Some(parent) = &t.parent_id {
                parents_shown.insert(parent.clone());
            }
            for tactic in kb.tactics_of(t) {
                techniques.push(json!({
                    "techniqueID": t.id,
                    "tactic": tactic.shortname,
                    "score": count,
                    "color": "",
                    "comment": format!("{} in {count} event(s)", t.name),
                    "enabled": true,
                    "metadata": [],
                    "links": [],
                    "showSubtechniques": false,
                }));
            }
        }
        // Expand the parents of observed sub-techniques so they are visible.
        for parent in &parents_shown {
            let Some(p) = kb.technique(parent) else { continue };
            for tactic in kb.tactics_of(p) {
                match techniques
                    .iter_mut()
                    .find(|e| e["techniqueID"] == p.id.as_str() && e["tactic"] == tactic.shortname.as_str())
                {
                    Some(entry) => entry["showSubtechniques"] = json!(true),
                    None => techniques.push(json!({
                        "techniqueID": p.id,
                        "tactic": tactic.shortname,
                        "color": "",
                        "comment": "",
                        "enabled": true,
                        "metadata": [],
                        "links": [],
                        "showSubtechniques": true,
                    })),
                }
            }
        }
        let max = self.counts.values().copied().max().unwrap_or(1).max(1);
        let min = self.counts.values().copied().min().unwrap_or(1).min(max);
        json!({
            "name": name,
            "versions": { "attack": kb.attack_version(), "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION },
            "domain": kb.domain(),
            "description": format!(
                "{} techniques attributed across {} enriched events by attackmesh (ATT&CK {}); score = number of events",
                self.counts.len(), self.events, kb.attack_version()
            ),
            "filters": { "platforms": platforms(kb) },
            "sorting": 3,
            "layout": {
                "layout": "side",
                "aggregateFunction": "max",
                "showID": true,
                "showName": true,
                "showAggregateScores": false,
                "countUnscored": false,
                "expandedSubtechniques": "annotated",
            },
            "hideDisabled": false,
            "techniques": techniques,
            "gradient": { "colors": [LOW_COLOR, HIGH_COLOR], "minValue": min, "maxValue": max },
            "legendItems": [
                { "label": format!("seen in {min} event(s)"), "color": LOW_COLOR },
                { "label": format!("seen in {max} event(s)"), "color": HIGH_COLOR },
            ],
            "metadata": [
                { "name": "events", "value": self.events.to_string() },
                { "name": "generator", "value": "attackmesh navigator" },
            ],
            "links": [],
            "showTacticRowBackground": false,
            "tacticRowBackground": "#dddddd",
            "selectTechniquesAcrossTactics": true,
            "selectSubtechniquesWithParent": false,
            "selectVisibleTechniques": false,
        })
    }
}

/// Every platform named by an active technique, sorted.
fn platforms(kb: &Kb) -> Vec<String> {
    let set: BTreeSet<&str> = kb
        .active_techniques()
        .flat_map(|t| t.platforms.iter().map(String::as_str))
        .collect();
    set.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_counts_events_per_technique_and_tactic() {
        let kb = Kb::embedded().expect("kb");
        let mut tally = Tally::default();
        let ev = |ids: &[&str]| EnrichedEvent {
            technique_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        tally.add(&ev(&["T1110.001", "T1078"]), &kb);
        tally.add(&ev(&["T1110.001", "T1110.001"]), &kb);
        tally.add(&ev(&["T1073", "T9999"]), &kb);
        let layer = tally.layer(&kb, "test");
        assert_eq!(layer["versions"]["layer"], "4.5");
        assert_eq!(layer["versions"]["attack"], "18.1");
        assert_eq!(layer["domain"], "enterprise-attack");
        let entries = layer["techniques"].as_array().expect("techniques");
        let find = |id: &str, tactic: &str| entries.iter().find(|e| e["techniqueID"] == id && e["tactic"] == tactic);
        assert_eq!(find("T1110.001", "credential-access").expect("T1110.001")["score"], 2);
        // T1078 serves four tactics: one entry each.
        for tactic in [
            "defense-evasion",
            "persistence",
            "privilege-escalation",
            "initial-access",
        ] {
            assert_eq!(find("T1078", tactic).expect("T1078")["score"], 1, "{tactic}");
        }
        // Revoked T1073 counts for its replacement; the unknown id is left out.
        assert!(find("T1574.001", "persistence").is_some());
        assert!(!entries.iter().any(|e| e["techniqueID"] == "T9999"));
        // The parent of an observed sub-technique is expanded.
        assert_eq!(
            find("T1110", "credential-access").expect("parent")["showSubtechniques"],
            true
        );
        assert_eq!(layer["gradient"]["maxValue"], 2);
        assert_eq!(layer["gradient"]["minValue"], 1);
    }

    #[test]
    fn counts_made_elsewhere_give_the_same_layer() {
        let kb = Kb::embedded().expect("kb");
        let mut tally = Tally::default();
        let ev = |ids: &[&str]| EnrichedEvent {
            technique_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        tally.add(&ev(&["T1110.001", "T1078"]), &kb);
        tally.add(&ev(&["T1110.001"]), &kb);
        let counted = Tally::from_counts(2, [("T1110.001".to_owned(), 2), ("T1078".to_owned(), 1)]);
        assert_eq!(counted.layer(&kb, "x"), tally.layer(&kb, "x"));
    }
}
