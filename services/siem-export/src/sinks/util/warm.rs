//! Reading events ahead of writing them. A sink writes a batch some time after its events were
//! received and decoded: behind a full queue window, thousands of events later, when an event's
//! bytes and the dozens of separate allocations of its decoded fields have left the cache. Each
//! shape then waits on memory at every field it reads, one miss after another, and over real
//! Suricata events that wait was about a third of writing an ECS document. [`warmed`] reads one
//! byte of each of those places a few events ahead of the one being written; the reads depend on
//! nothing the writer does, so the processor fetches them while it writes, and the event is in
//! cache by its turn. It changes nothing a sink writes.

use std::sync::Arc;

use attackmesh::{
    held::{EventView as _, Held},
    proto::EnrichedEvent,
};

use crate::sinks::QueuedEvent;

/// How many events ahead of the one written the next is read: far enough for its reads to
/// complete while the events between are written, near enough that they are still in cache.
const AHEAD: usize = 2;

/// The events of `events` in order, each event two ahead of the one yielded read first.
pub fn warmed(events: &[Arc<QueuedEvent>]) -> impl Iterator<Item = &Arc<QueuedEvent>> {
    events.iter().take(AHEAD).for_each(|e| touch(&e.event));
    events.iter().enumerate().map(move |(i, e)| {
        if let Some(ahead) = events.get(i + AHEAD) {
            touch(&ahead.event);
        }
        e
    })
}

/// Reads one byte of every cache line of the event's received bytes and the first byte of each
/// decoded string a shape writes, so that all of them are fetched.
fn touch(held: &Held<EnrichedEvent>) {
    let mut seen = held
        .bytes()
        .map_or(0, |bytes| bytes.chunks(64).fold(0, |seen, line| seen ^ line[0]));
    let mut first = |s: &str| seen ^= s.as_bytes().first().copied().unwrap_or_default();
    let e = held.event();
    for s in [
        &e.event_id,
        &e.source_service,
        &e.event_type,
        &e.description,
        &e.attack_version,
        &e.original,
        &e.original_format,
        &e.submitted_by,
    ] {
        first(s);
    }
    e.technique_ids.iter().for_each(|s| first(s));
    for endpoint in [&e.source, &e.destination].into_iter().flatten() {
        first(&endpoint.ip);
        first(&endpoint.hostname);
        first(&endpoint.user);
    }
    e.related_indicators.iter().for_each(|i| first(&i.value));
    if let Some(m) = &e.metadata {
        first(&m.rule_pack_version);
        for t in &m.techniques {
            first(&t.id);
            first(&t.name);
            first(&t.url);
            for tactic in &t.tactics {
                first(&tactic.id);
                first(&tactic.name);
                first(&tactic.shortname);
            }
            for evidence in &t.evidence {
                first(&evidence.rule_id);
                first(&evidence.detail);
            }
        }
        for actor in &m.threat_actors {
            first(&actor.group_id);
            first(&actor.name);
        }
    }
    std::hint::black_box(seen);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use attackmesh::proto::EnrichedEvent;
    use bytes::Bytes;
    use prost::Message as _;

    use super::*;

    fn queued(seq: u64) -> Arc<QueuedEvent> {
        let mut event = attackmesh_testkit::fixtures::event(seq);
        event.attributes.insert("k".into(), "v".into());
        let held = Held::<EnrichedEvent>::decode(Bytes::from(event.encode_to_vec())).unwrap();
        Arc::new(QueuedEvent {
            seq,
            event: Arc::new(held),
            trace_context: Arc::new(HashMap::new()),
            enqueued_at_micros: 0,
            compact_for: None,
        })
    }

    #[test]
    fn every_event_is_yielded_once_in_order() {
        for len in 0..=AHEAD + 3 {
            let events: Vec<_> = (0..len as u64).map(queued).collect();
            let seqs: Vec<u64> = warmed(&events).map(|e| e.seq).collect();
            assert_eq!(seqs, (0..len as u64).collect::<Vec<_>>(), "{len} events");
        }
    }
}
