//! `attackmesh demo` end to end: the binary runs the whole pipeline on loopback and every result
//! file holds what the sinks really delivered: one enriched event per detection in each NDJSON
//! shape, a Navigator layer of the observed techniques and a STIX bundle from the intel
//! collection whose indicators point at real ATT&CK attack-patterns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::Command,
};

use attackmesh::proto::{AttributionStatus, EnrichedEvent};
use serde_json::Value;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn run_demo(out: &Path, extra: &[&str]) -> String {
    let cwd = out.parent().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_attackmesh"))
        .current_dir(cwd)
        .arg("demo")
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("ATTACKMESH_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Everything the run keeps is under --out.
    let mut stray: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    stray.retain(|name| name != out.file_name().unwrap());
    assert!(stray.is_empty(), "the demo wrote outside --out: {stray:?}");
    stdout
}

#[test]
fn demo_delivers_every_detection_to_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let cowrie = concat!(env!("CARGO_MANIFEST_DIR"), "/../enrichment/tests/data/cowrie.json");
    let replay = format!("cowrie:{cowrie}");
    let summary = run_demo(&out, &["--replay", &replay]);

    // Canonical events: one per detection, every one attributed or explicitly NO_MATCH.
    let enriched: Vec<EnrichedEvent> = lines(&out.join("enriched.ndjson"))
        .iter()
        .map(|l| attackmesh::json::from_json(l).unwrap())
        .collect();
    let ids: HashSet<&str> = enriched.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), enriched.len(), "an event was delivered twice");
    assert!(enriched.len() > 40, "only {} events", enriched.len());
    assert!(
        enriched
            .iter()
            .all(|e| e.attribution_status != AttributionStatus::Degraded as i32),
        "attribution was up the whole time"
    );
    let techniques: HashSet<&str> = enriched
        .iter()
        .flat_map(|e| e.technique_ids.iter().map(String::as_str))
        .collect();
    for expected in ["T1046", "T1110", "T1021", "T1048"] {
        assert!(
            techniques.iter().any(|t| t.starts_with(expected)),
            "{expected} missing from {techniques:?}"
        );
    }
    let by_detector: HashMap<&str, usize> = enriched.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e.source_service.as_str()).or_default() += 1;
        m
    });
    assert!(by_detector.len() >= 4, "{by_detector:?}");

    // ECS and HEC: the same events, in the shapes the SIEM sinks send.
    let ecs: Vec<Value> = lines(&out.join("ecs.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ecs.len(), enriched.len());
    let ecs_ids: HashSet<&str> = ecs.iter().map(|d| d["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ecs_ids, ids);
    assert!(ecs.iter().any(|d| d["threat"]["technique"]["id"].is_array()));
    let hec: Vec<Value> = lines(&out.join("hec.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hec.len(), enriched.len());
    assert!(hec.iter().all(|h| h["event"].is_object() && h["time"].is_number()));
    let ocsf: Vec<Value> = lines(&out.join("ocsf.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ocsf_ids: HashSet<&str> = ocsf
        .iter()
        .map(|f| f["finding_info"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!((ocsf.len(), ocsf_ids), (enriched.len(), ids.clone()));
    assert!(ocsf.iter().all(|f| f["class_uid"] == 2004));

    // Navigator: every observed technique is scored.
    let layer: Value = serde_json::from_slice(&std::fs::read(out.join("navigator-layer.json")).unwrap()).unwrap();
    let scored: HashSet<&str> = layer["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["techniqueID"].as_str().unwrap())
        .collect();
    for t in &techniques {
        assert!(scored.contains(t), "{t} not in the layer");
    }

    // STIX: indicators from the intel sink, related to ATT&CK attack-patterns.
    let bundle: Value = serde_json::from_slice(&std::fs::read(out.join("stix-bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle["type"], "bundle");
    let objects = bundle["objects"].as_array().unwrap();
    let indicators: Vec<&Value> = objects.iter().filter(|o| o["type"] == "indicator").collect();
    assert!(indicators.len() >= 5, "{} indicators", indicators.len());
    assert!(
        indicators
            .iter()
            .any(|i| i["pattern"].as_str().unwrap().contains("203.0.113.45")),
        "the attacker's address is not an indicator"
    );
    assert!(objects.iter().any(|o| o["type"] == "relationship"
        && o["relationship_type"] == "indicates"
        && o["target_ref"].as_str().unwrap().starts_with("attack-pattern--")));

    // The summary tells the analyst what happened and where it went.
    for needle in [
        "Detections by detector",
        "Techniques by tactic",
        "Candidate threat groups",
        "file-ecs",
        "file-hec",
        "intel",
        "stix-bundle.json",
        // The honeypot's run of failed logins followed by a success is only visible across events.
        "correlation.success_after_failures",
    ] {
        assert!(summary.contains(needle), "summary lacks {needle}:\n{summary}");
    }

    // A second run replaces the results instead of appending to them.
    run_demo(&out, &[]);
    let again = lines(&out.join("enriched.ndjson"));
    assert!(again.len() < enriched.len(), "results of the first run were kept");
}
