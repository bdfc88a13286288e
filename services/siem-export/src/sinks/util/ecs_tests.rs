//! The ECS writer against the value tree it replaced, over every event of the real samples.

use attackmesh::{formats::Format, proto::EnrichedEvent};
use attackmesh_testkit::data;

use super::{Original, ecs, ecs_tree};

/// Every real sample as siem-export receives it (parsed and attributed).
fn samples() -> Vec<EnrichedEvent> {
    let Some(dir) = data::shared_data() else {
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
    let evtx = s.join("evtx-attack-samples/Credential Access");
    if let Ok(dir) = std::fs::read_dir(&evtx) {
        let mut paths: Vec<_> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "evtx"))
            .collect();
        paths.sort();
        files.extend(paths.into_iter().take(8).map(|p| (Format::Evtx, p)));
    }
    files
        .iter()
        .flat_map(|(format, path)| data::attributed_samples(*format, path))
        .collect()
}

#[test]
fn the_writer_writes_what_the_value_tree_wrote_for_every_real_event() {
    let events = samples();
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for ev in &events {
        for original in [Original::Keep, Original::Drop] {
            out.clear();
            ecs::write_document(ev, now, original, &mut out);
            let tree = ecs_tree::document(ev, now, original);
            let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(written, tree, "{} ({original:?})", ev.event_id);
            // Same keys in the same order, same escapes, same numbers.
            assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(&tree).unwrap(),
                "{}",
                ev.event_id
            );
        }
    }
    eprintln!("{} events compared", events.len());
}
