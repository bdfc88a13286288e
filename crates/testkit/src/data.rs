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

/// Every `.evtx` file under `dir` and its subfolders, in path order; empty when `dir` is absent.
pub fn evtx_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "evtx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
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

/// The first-org Suricata sample (a real capture, 854-byte alerts on average): the real-record
/// workload of the benches; `None` (noted on stderr) without the shared data.
pub fn first_org_sample() -> Option<PathBuf> {
    shared_data().map(|d| d.join("samples/suricata/first-org-conf-2015.eve.ndjson"))
}

/// The first-org Suricata sample's detections, as a detector sends them; empty without the
/// shared data.
pub fn first_org_detections() -> Vec<DetectionEvent> {
    first_org_sample()
        .map(|path| {
            sample_events(Format::SuricataEve, &path)
                .into_iter()
                .map(|(_, ev)| ev)
                .collect()
        })
        .unwrap_or_default()
}

/// The first-org Suricata sample's events as siem-export receives them (see
/// [`attributed_samples`]); empty without the shared data.
pub fn first_org_attributed() -> Vec<attackmesh::proto::EnrichedEvent> {
    first_org_sample()
        .map(|path| attributed_samples(Format::SuricataEve, &path))
        .unwrap_or_default()
}

/// The real sample files: three Suricata captures, a Cowrie session, the Zeek logs and eight
/// EVTX files; empty without the shared data.
pub fn real_sample_files() -> Vec<(Format, PathBuf)> {
    let Some(dir) = shared_data() else {
        return Vec::new();
    };
    let s = dir.join("samples");
    let mut files = vec![
        (Format::SuricataEve, s.join("suricata/first-org-conf-2015.eve.ndjson")),
        (Format::SuricataEve, s.join("suricata/honeypot-2018.eve.ndjson")),
        (Format::SuricataEve, s.join("suricata/wrccdc-2017.eve.ndjson")),
        (Format::Cowrie, s.join("cowrie/cowrie_local_session.json")),
    ];
    for log in [
        "conn.log",
        "dns.log",
        "http.log",
        "notice.log",
        "files.log",
        "ssl.log",
        "weird.log",
    ] {
        let path = s.join("zeek/zat-0.4.9").join(log);
        if path.is_file() {
            files.push((Format::Zeek, path));
        }
    }
    let evtx = evtx_files(&s.join("evtx-attack-samples/Credential Access"));
    files.extend(evtx.into_iter().take(8).map(|p| (Format::Evtx, p)));
    files
}

/// Every detection of the real samples (see [`real_sample_files`]) as a detector sends it;
/// empty without the shared data. What an encoder of detections is compared over.
pub fn real_detections() -> Vec<DetectionEvent> {
    real_sample_files()
        .iter()
        .flat_map(|(format, path)| sample_events(*format, path).into_iter().map(|(_, ev)| ev))
        .collect()
}

/// Every event of the real samples (see [`real_sample_files`]) as siem-export receives it:
/// parsed and attributed; empty without the shared data. What an encoder that replaces another
/// is compared over.
pub fn real_attributed_samples() -> Vec<attackmesh::proto::EnrichedEvent> {
    real_sample_files()
        .iter()
        .flat_map(|(format, path)| attributed_samples(*format, path))
        .collect()
}
