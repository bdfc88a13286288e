//! Reading the export service's file sink back: every line decoded, the latest revision per
//! event, and waiting until the sink holds what a test sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use attackmesh::proto::EnrichedEvent;

/// Every whole line of the sink file `path` and of its rotations (the files beside it), decoded.
pub fn sink_events(path: &Path) -> Vec<EnrichedEvent> {
    let Some(dir) = path.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        // A line without its newline is still being written: it is read on the next look.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in whole.lines().filter(|l| !l.trim().is_empty()) {
            out.push(attackmesh::json::from_json::<EnrichedEvent>(line).unwrap());
        }
    }
    out
}

/// The latest revision of every event in `events`, by id.
pub fn latest(events: &[EnrichedEvent]) -> BTreeMap<String, EnrichedEvent> {
    let mut map: BTreeMap<String, EnrichedEvent> = BTreeMap::new();
    for ev in events {
        match map.get(&ev.event_id) {
            Some(have) if have.revision >= ev.revision => {}
            _ => {
                map.insert(ev.event_id.clone(), ev.clone());
            }
        }
    }
    map
}

/// Waits until the sink holds every id in `ids` and `done` holds for the latest revisions;
/// returns everything the sink holds then. Panics after 90 s.
pub async fn wait_for_sink(
    path: &Path,
    ids: &BTreeSet<String>,
    done: impl Fn(&BTreeMap<String, EnrichedEvent>) -> bool,
) -> Vec<EnrichedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let events = sink_events(path);
        let map = latest(&events);
        if ids.iter().all(|id| map.contains_key(id)) && done(&map) {
            return events;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = ids.iter().filter(|id| !map.contains_key(*id)).take(5).collect();
            panic!(
                "sink never got everything: {} of {} ids present, e.g. missing {missing:?}",
                ids.iter().filter(|id| map.contains_key(*id)).count(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
