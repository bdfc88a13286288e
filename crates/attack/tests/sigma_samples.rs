//! Quality of Sigma attribution on the shared EVTX samples (one folder per ATT&CK tactic; GPL
//! data read from the shared folder, never committed; skipped with a note when absent).
//!
//! Prints two tables (`cargo test -p attackmesh-attack --test sigma_samples -- --nocapture`):
//! per tactic folder, the files where at least one event gets a technique of that tactic (from
//! the whole attribution, and from Sigma evidence alone); and events matched per highest rule
//! level. The assertions are floors far below the measured figures: they catch a broken
//! reader or engine, not a missed rule.

use std::collections::BTreeMap;

use attackmesh::formats::{Format, Reader, open_path};
use attackmesh_attack::Engine;
use attackmesh_attack::sigma::Level;
use attackmesh_testkit::evtx_files;

const TACTICS: &[(&str, &str)] = &[
    ("Command and Control", "TA0011"),
    ("Credential Access", "TA0006"),
    ("Defense Evasion", "TA0005"),
    ("Discovery", "TA0007"),
    ("Execution", "TA0002"),
    ("Lateral Movement", "TA0008"),
    ("Persistence", "TA0003"),
    ("Privilege Escalation", "TA0004"),
];

#[test]
fn tactic_folders_and_levels_report() {
    let Some(data) = attackmesh_testkit::shared_data() else {
        return;
    };
    let root = data.join("samples/evtx-attack-samples");
    if !root.is_dir() {
        eprintln!("skipped: {} not found", root.display());
        return;
    }
    let engine = Engine::embedded().expect("engine");
    let kb = engine.kb().clone();
    let mut levels: BTreeMap<Level, usize> = BTreeMap::new();
    let (mut events, mut matched_events) = (0usize, 0usize);
    let mut rows = Vec::new();
    for (folder, tactic) in TACTICS {
        let files = evtx_files(&root.join(folder));
        let (mut any, mut sigma_only) = (0usize, 0usize);
        for path in &files {
            let (mut file_any, mut file_sigma) = (false, false);
            let input = open_path(path).expect("opens");
            for record in Reader::new(Format::Evtx, input, path.display().to_string()) {
                let Ok(Some(event)) = record.result else { continue };
                events += 1;
                let mut best: Option<Level> = None;
                engine.sigma().for_each_match(&event, |hit, _| {
                    best = best.max(Some(hit.level));
                });
                if let Some(level) = best {
                    matched_events += 1;
                    *levels.entry(level).or_insert(0) += 1;
                }
                let a = engine.attribute(&event);
                for t in a.metadata.iter().flat_map(|m| &m.techniques) {
                    if t.tactics.iter().any(|x| x.id == *tactic) {
                        file_any = true;
                        if t.evidence.iter().any(|e| e.rule_id.starts_with("sigma:")) {
                            file_sigma = true;
                        }
                    }
                }
            }
            any += usize::from(file_any);
            sigma_only += usize::from(file_sigma);
        }
        rows.push((*folder, *tactic, files.len(), any, sigma_only));
    }
    println!("\n| tactic folder | files | files with a technique of the tactic | by Sigma evidence |");
    println!("|---|---:|---:|---:|");
    for (folder, tactic, files, any, sigma) in &rows {
        println!(
            "| {folder} ({tactic}) | {files} | {any} ({}%) | {sigma} |",
            any * 100 / (*files).max(1)
        );
    }
    let (files, any): (usize, usize) = rows.iter().fold((0, 0), |(f, a), r| (f + r.2, a + r.3));
    println!("| all | {files} | {any} ({}%) | |", any * 100 / files.max(1));
    println!("\n| highest level of the matching Sigma rules | events |");
    println!("|---|---:|");
    for level in Level::ALL {
        println!("| {} | {} |", level.name(), levels.get(&level).copied().unwrap_or(0));
    }
    println!("| any (of {events} events in these folders) | {matched_events} |");
    assert!(kb.attack_version() == "18.1");
    assert!(
        any * 3 > files,
        "a third of the files attributed to their tactic: {any} of {files}"
    );
    assert!(matched_events > 500, "{matched_events} events matched");
}
