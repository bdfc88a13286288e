//! Where the shared data lives (the ATT&CK bundle, detector samples, mappings) and how tests
//! read it. The shared data sits beside the repository (`../shared/data`); a test that needs it
//! and does not find it says so on stderr and returns.

use std::path::{Path, PathBuf};

use attackmesh::formats::{self, Format, Reader};
use attackmesh::proto::DetectionEvent;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The shared data directory, or `None` (with a note on stderr) when it is absent.
pub fn shared_data() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/data");
    if dir.join("attack").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: shared data not found at {} (the ATT&CK bundle and samples live there)",
            dir.display()
        );
        None
    }
}

/// The official ATT&CK 18.1 bundle, when the shared data is present.
pub fn attack_bundle() -> Option<PathBuf> {
    shared_data()
        .map(|d| d.join("attack/enterprise-attack-18.1.json.gz"))
        .filter(|p| p.is_file())
}

/// Every event of a sample file with its line number; panics on unreadable files.
pub fn sample_events(format: Format, path: &Path) -> Vec<(u64, DetectionEvent)> {
    let input = formats::open_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Reader::new(format, input, path.display().to_string())
        .filter_map(|record| match record.result {
            Ok(Some(ev)) => Some((record.line, ev)),
            Ok(None) => None,
            Err(e) => panic!("{}:{}: {e}", path.display(), record.line),
        })
        .collect()
}

/// Every event of a sample file as siem-export receives it: parsed, attributed by the embedded
/// engine (rules, Sigma and actor ranking) and made an enriched event (revision 1).
pub fn attributed_samples(format: Format, path: &Path) -> Vec<attackmesh::proto::EnrichedEvent> {
    use std::sync::OnceLock;
    static ENGINE: OnceLock<attackmesh_attack::Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| attackmesh_attack::Engine::embedded().expect("embedded engine"));
    sample_events(format, path)
        .into_iter()
        .map(|(_, ev)| {
            let attribution = engine.attribute(&ev);
            attackmesh::enriched_event(ev, attribution, 1)
        })
        .collect()
}
