//! Reading the file sink back: every line decoded, the latest revision per event, and waiting
//! until the sink holds what a test sent.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::Duration,
};

use attackmesh::proto::{AttributionStatus, EnrichedEvent};

/// Every line of the sink file (and its rotations), decoded.
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
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            out.push(attackmesh::json::from_json::<EnrichedEvent>(line).unwrap());
        }
    }
    out
}

/// The latest revision of every event in the sink, by id.
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

/// Waits until the sink holds every id in `ids` and `done` holds for the latest revisions.
pub async fn wait_for_sink(
    path: &Path,
    ids: &std::collections::BTreeSet<String>,
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

/// Event ids the parsers derive from the records of `path`, with how many records carry each
/// (byte-identical lines are one event logged twice and share an id).
pub fn expected_records(format: attackmesh::formats::Format, path: &Path) -> BTreeMap<String, usize> {
    let input = attackmesh::formats::open_path(path).unwrap();
    let mut out = BTreeMap::new();
    for event in
        attackmesh::formats::Reader::new(format, input, path.to_string_lossy()).filter_map(|r| r.result.ok().flatten())
    {
        *out.entry(event.event_id).or_insert(0) += 1;
    }
    out
}

pub fn is_degraded(ev: &EnrichedEvent) -> bool {
    ev.attribution_status == AttributionStatus::Degraded as i32
}

pub fn counts(events: &[EnrichedEvent]) -> HashMap<(String, u32), usize> {
    let mut map = HashMap::new();
    for ev in events {
        *map.entry((ev.event_id.clone(), ev.revision)).or_insert(0) += 1;
    }
    map
}
