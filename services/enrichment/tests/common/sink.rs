//! What the file sink should hold and how to read what it holds: the event ids a sample file
//! yields, degraded events, and how often each revision arrived.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use attackmesh::proto::{AttributionStatus, EnrichedEvent};

/// Event ids the parsers derive from the records of `path`, with how many records carry each
/// (byte-identical lines are one event logged twice and share an id; the sink writes it once).
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
