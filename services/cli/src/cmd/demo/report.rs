//! The demo's outputs: result files in the output folder and the analyst summary on stdout.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use attackmesh::proto::{EnrichedEvent, SinkStatus};
use attackmesh_attack::Kb;

use super::Sent;

/// Where the results went.
pub(crate) struct Report {
    out: PathBuf,
    layer: PathBuf,
    stix: PathBuf,
    stix_objects: usize,
    kb: std::sync::Arc<Kb>,
}

/// What the run did, for the summary.
pub(crate) struct Run<'a> {
    /// Campaigns built from the delivered events, the intrusion's first.
    pub(crate) campaigns: &'a [attackmesh::proto::Campaign],
    /// Per detector: what was sent and acknowledged.
    pub(crate) detectors: &'a [Sent],
    /// Per detector: the enriched events that arrived in `enriched.ndjson`.
    pub(crate) by_detector: &'a [(String, Vec<EnrichedEvent>)],
    /// The sinks after delivery.
    pub(crate) sinks: &'a [SinkStatus],
    /// Events the pipeline acknowledged.
    pub(crate) accepted: u64,
    /// TAXII URL of the collection's objects.
    pub(crate) taxii_objects: &'a str,
    /// Time since start.
    pub(crate) elapsed: Duration,
}

/// Writes `navigator-layer.json` under `out` from the delivered events; the sinks wrote the
/// rest.
pub(crate) fn write(
    out: &Path,
    sources: &[(String, Vec<EnrichedEvent>)],
    stix: PathBuf,
    stix_objects: usize,
) -> anyhow::Result<Report> {
    let layer = out.join("navigator-layer.json");
    let events: Vec<&EnrichedEvent> = sources.iter().flat_map(|(_, events)| events).collect();
    let kb = Kb::embedded()?;
    let json = attackmesh_attack::navigator::layer(&events, &kb, "attackmesh demo");
    std::fs::write(&layer, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", layer.display()))?;
    Ok(Report {
        out: out.to_owned(),
        layer,
        stix,
        stix_objects,
        kb,
    })
}

impl Report {
    /// Prints the analyst summary.
    pub(crate) fn print(&self, run: &Run<'_>) {
        print!("{}", self.render(run));
    }

    fn render(&self, run: &Run<'_>) -> String {
        let mut s = String::new();
        let sources = run.by_detector;
        let total: usize = sources.iter().map(|(_, e)| e.len()).sum();
        let first = sources.iter().flat_map(|(_, e)| e).next();
        let _ = writeln!(
            s,
            "attackmesh demo — ATT&CK {} · rule packs {} · detectors → enrichment → attribution → siem-export → intel over gRPC\n",
            first.map_or("?", |e| e.attack_version.as_str()),
            first
                .and_then(|e| e.metadata.as_ref())
                .map_or("?", |m| m.rule_pack_version.as_str()),
        );
        super::campaign::render(&mut s, run.campaigns);
        let _ = writeln!(s, "Detections by detector");
        let width = sources.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
        for (sent, (name, events)) in run.detectors.iter().zip(sources) {
            let attributed = events.iter().filter(|e| !e.technique_ids.is_empty()).count();
            let _ = writeln!(
                s,
                "  {name:<width$}  {:>5} sent {:>5} accepted {:>5} rejected {:>5} attributed",
                sent.sent,
                sent.accepted,
                sent.rejected.len(),
                attributed
            );
            for why in sent.rejected.iter().take(3) {
                let _ = writeln!(s, "      rejected {why}");
            }
        }

        // technique -> (name, count), grouped by tactic in kill-chain order of first appearance
        let mut tactics: BTreeMap<(usize, String), BTreeMap<String, (String, usize)>> = BTreeMap::new();
        let mut tactic_rank: HashMap<String, usize> = HashMap::new();
        let kill_chain = [
            "TA0043", "TA0042", "TA0001", "TA0002", "TA0003", "TA0004", "TA0005", "TA0006", "TA0007", "TA0008",
            "TA0009", "TA0011", "TA0010", "TA0040",
        ];
        for (i, t) in kill_chain.iter().enumerate() {
            tactic_rank.insert((*t).to_owned(), i);
        }
        let mut observed: Vec<String> = Vec::new();
        for event in sources.iter().flat_map(|(_, e)| e) {
            for technique in event.metadata.iter().flat_map(|m| &m.techniques) {
                if !observed.contains(&technique.id) {
                    observed.push(technique.id.clone());
                }
                for tactic in &technique.tactics {
                    let rank = tactic_rank.get(&tactic.id).copied().unwrap_or(usize::MAX);
                    let entry = tactics
                        .entry((rank, format!("{} {}", tactic.id, tactic.name)))
                        .or_default()
                        .entry(technique.id.clone())
                        .or_insert_with(|| (technique.name.clone(), 0));
                    entry.1 += 1;
                }
            }
        }
        let _ = writeln!(
            s,
            "\nTechniques by tactic ({} techniques over {total} events)",
            observed.len()
        );
        for ((_, tactic), techniques) in &tactics {
            let _ = writeln!(s, "  {tactic}");
            for (id, (name, count)) in techniques {
                let _ = writeln!(s, "    {id:<10} {name:<55} ×{count}");
            }
        }

        let _ = writeln!(
            s,
            "\nCandidate threat groups (all observed techniques; scores below 0.5 are weak evidence)"
        );
        let refs: Vec<&str> = observed.iter().map(String::as_str).collect();
        let actors = attackmesh_attack::rank_actors(&self.kb, &refs);
        if actors.is_empty() {
            let _ = writeln!(s, "  none: the evidence does not point to a known group");
        }
        for a in actors.iter().take(5) {
            let shown: Vec<&str> = a.matched_techniques.iter().take(6).map(String::as_str).collect();
            let more = a.matched_techniques.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  {:<6} {:<28} score {:.2}  matched {}{more}",
                a.group_id,
                a.name,
                a.score,
                shown.join(", ")
            );
        }
        let _ = writeln!(s, "\nDelivered ({} events acknowledged durable)", run.accepted);
        for sink in run.sinks {
            let state = if sink.queue_depth == 0 && sink.healthy {
                String::from("ok")
            } else if sink.last_error.is_empty() {
                format!("{} queued", sink.queue_depth)
            } else {
                format!("{} queued, last error: {}", sink.queue_depth, sink.last_error)
            };
            let _ = writeln!(
                s,
                "  {:<14} {:<13} {:>5} delivered {:>4} dead-lettered  {state}",
                sink.name, sink.kind, sink.delivered, sink.dead_lettered
            );
        }
        let _ = writeln!(s, "\nFiles in {}", self.out.display());
        let _ = writeln!(
            s,
            "  enriched events (canonical JSON)  {}",
            self.out.join(super::pipeline::ENRICHED).display()
        );
        let _ = writeln!(
            s,
            "  ECS documents                     {}",
            self.out.join(super::pipeline::ECS).display()
        );
        let _ = writeln!(
            s,
            "  Splunk HEC events                 {}",
            self.out.join(super::pipeline::HEC).display()
        );
        let _ = writeln!(
            s,
            "  OCSF Detection Findings           {}",
            self.out.join(super::pipeline::OCSF).display()
        );
        let _ = writeln!(s, "  ATT&CK Navigator layer            {}", self.layer.display());
        let _ = writeln!(
            s,
            "  campaigns (canonical JSON)        {}",
            self.out.join(super::campaign::CAMPAIGNS).display()
        );
        let _ = writeln!(
            s,
            "  Attack Flow 2.0 of the campaign   {}",
            self.out.join(super::campaign::ATTACK_FLOW).display()
        );
        let stix = format!("STIX 2.1 bundle ({} objects)", self.stix_objects);
        let _ = writeln!(s, "  {stix:<34}{}", self.stix.display());
        let _ = writeln!(s, "  TAXII 2.1 collection              {}", run.taxii_objects);
        let _ = writeln!(s, "\nDone in {:.2} s.", run.elapsed.as_secs_f64());
        s
    }
}
