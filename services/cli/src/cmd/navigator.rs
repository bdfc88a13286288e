//! `attackmesh navigator`: turns enriched events into an ATT&CK Navigator layer.
//!
//! Reads canonical `EnrichedEvent` JSON lines (files, or stdin when none are given), counts how
//! many events each technique was attributed in, and writes a Navigator layer (format 4.5,
//! `enterprise-attack`) with one entry per technique and tactic, `score` = event count, a
//! gradient from the lowest to the highest count and a legend. Technique ids are checked
//! against the knowledge base: revoked ids count for their replacement, unknown ones are
//! reported on stderr and left out. Lines that do not decode are reported as `PATH:LINE:
//! message` and skipped.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, BufRead, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context as _;
use attackmesh::proto::EnrichedEvent;
use attackmesh_attribution::{Kb, Resolved};
use serde_json::{Value, json};

/// Navigator layer format version written.
const LAYER_VERSION: &str = "4.5";
/// Navigator application version the layer was checked against.
const NAVIGATOR_VERSION: &str = "5.1.0";
const LOW_COLOR: &str = "#ffe766ff";
const HIGH_COLOR: &str = "#ff6666ff";

/// Arguments of `attackmesh navigator`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Write the layer to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Layer name shown in the Navigator.
    #[arg(long, default_value = "attackmesh detections")]
    name: String,
    /// Knowledge base to use instead of the embedded one (compact KB or ATT&CK bundle).
    #[arg(long, value_name = "PATH")]
    kb: Option<PathBuf>,
    /// Enriched-event JSON lines files; stdin when none are given.
    inputs: Vec<PathBuf>,
}

/// Runs `attackmesh navigator`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kb: Arc<Kb> = match &args.kb {
        Some(p) => Arc::new(Kb::load(p).with_context(|| format!("loading {}", p.display()))?),
        None => Kb::embedded()?,
    };
    let mut tally = Tally::default();
    if args.inputs.is_empty() {
        tally
            .read("<stdin>", io::stdin().lock(), &kb)
            .context("reading stdin")?;
    } else {
        for path in &args.inputs {
            let file = attackmesh::formats::open_path(path).with_context(|| format!("opening {}", path.display()))?;
            tally
                .read(&path.display().to_string(), file, &kb)
                .with_context(|| format!("reading {}", path.display()))?;
        }
    }
    let layer = tally.layer(&kb, &args.name);
    let text = serde_json::to_string_pretty(&layer).context("encoding the layer")?;
    match &args.out {
        Some(path) => std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}").context("writing to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The layer for events already in memory (e.g. the demo's results).
pub(crate) fn layer(events: &[&EnrichedEvent], kb: &Kb, name: &str) -> Value {
    let mut tally = Tally::default();
    for event in events {
        tally.add(event, kb);
    }
    tally.layer(kb, name)
}

/// Event counts per technique.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    counts: BTreeMap<String, u64>,
    unknown: BTreeSet<String>,
}

impl Tally {
    fn read(&mut self, name: &str, input: impl BufRead, kb: &Kb) -> io::Result<()> {
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match attackmesh::json::from_json::<EnrichedEvent>(&line) {
                Ok(event) => self.add(&event, kb),
                Err(e) => eprintln!("{name}:{}: {e}", i + 1),
            }
        }
        Ok(())
    }

    fn add(&mut self, event: &EnrichedEvent, kb: &Kb) {
        self.events += 1;
        let mut seen = BTreeSet::new();
        for id in &event.technique_ids {
            let technique = match kb.resolve(id) {
                Resolved::Active(t) => t,
                Resolved::Revoked { replacement, .. } => replacement,
                Resolved::Deprecated(_) | Resolved::Unknown => {
                    if self.unknown.insert(id.clone()) {
                        eprintln!(
                            "warning: `{id}` is not an active technique of ATT&CK {}; left out",
                            kb.attack_version()
                        );
                    }
                    continue;
                }
            };
            if seen.insert(technique.id.clone()) {
                *self.counts.entry(technique.id.clone()).or_default() += 1;
            }
        }
    }

    fn layer(&self, kb: &Kb, name: &str) -> Value {
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
}
