//! The demo's outputs: result files in the output folder and the analyst summary on stdout.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use attackmesh::proto::{EnrichedEvent, GetKnowledgeBaseInfoResponse};
use attackmesh_attribution::Kb;

/// Where the results went.
pub(crate) struct Report {
    enriched: PathBuf,
    layer: PathBuf,
    kb: std::sync::Arc<Kb>,
}

/// Writes `enriched.ndjson` and `navigator-layer.json` under `out`.
pub(crate) fn write(out: &Path, sources: &[(String, Vec<EnrichedEvent>)]) -> anyhow::Result<Report> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let enriched = out.join("enriched.ndjson");
    let mut buf = Vec::new();
    for event in sources.iter().flat_map(|(_, events)| events) {
        attackmesh::json::write_json_line(event, &mut buf);
    }
    std::fs::write(&enriched, buf).with_context(|| format!("cannot write {}", enriched.display()))?;
    let layer = out.join("navigator-layer.json");
    let events: Vec<&EnrichedEvent> = sources.iter().flat_map(|(_, events)| events).collect();
    let kb = Kb::embedded()?;
    let json = crate::cmd::navigator::layer(&events, &kb, "attackmesh demo");
    std::fs::write(&layer, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", layer.display()))?;
    Ok(Report { enriched, layer, kb })
}

impl Report {
    /// Prints the analyst summary.
    pub(crate) fn print(
        &self,
        sources: &[(String, Vec<EnrichedEvent>)],
        info: &GetKnowledgeBaseInfoResponse,
        addr: SocketAddr,
        elapsed: Duration,
    ) {
        print!("{}", self.render(sources, info, addr, elapsed));
    }

    fn render(
        &self,
        sources: &[(String, Vec<EnrichedEvent>)],
        info: &GetKnowledgeBaseInfoResponse,
        addr: SocketAddr,
        elapsed: Duration,
    ) -> String {
        let mut s = String::new();
        let total: usize = sources.iter().map(|(_, e)| e.len()).sum();
        let _ = writeln!(
            s,
            "attackmesh demo — ATT&CK {} · rule packs {} · attribution over gRPC at {addr}\n",
            info.attack_version, info.rule_pack_version
        );
        let _ = writeln!(s, "Detections by detector");
        for (name, events) in sources {
            let attributed = events.iter().filter(|e| !e.technique_ids.is_empty()).count();
            let _ = writeln!(
                s,
                "  {name:<40} {:>5} events  {:>5} attributed",
                events.len(),
                attributed
            );
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
        let actors = attackmesh_attribution::rank_actors(&self.kb, &refs);
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
        let _ = writeln!(s, "\nDelivered");
        let _ = writeln!(s, "  enriched events (canonical JSON)  {}", self.enriched.display());
        let _ = writeln!(s, "  ATT&CK Navigator layer            {}", self.layer.display());
        let _ = writeln!(s, "\nDone in {:.2} s.", elapsed.as_secs_f64());
        s
    }
}
