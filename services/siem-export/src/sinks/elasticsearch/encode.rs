//! The `_bulk` request body: per event, the action line (`index` with an external version, or
//! `create` into a data stream) and the shared ECS document, all written into the one request
//! buffer. No I/O here.

use std::sync::Arc;

use super::ElasticsearchConfig;
use crate::sinks::{
    QueuedEvent,
    util::{ecs, warm::warmed},
};
use attackmesh::{held::EventView, json::Json, proto::EnrichedEvent};
use attackmesh_attack::Kb;

/// Appends the bulk action line for one event (no newline) to `out`.
pub(super) fn write_action(config: &ElasticsearchConfig, event: &EnrichedEvent, out: &mut Vec<u8>) {
    let mut j = Json::object(out);
    match &config.data_stream {
        Some(ds) => {
            j.obj("create");
            j.str_kept("_index", ds);
            if event.revision > 1 {
                j.str_kept("_id", &format!("{}-r{}", event.event_id, event.revision));
            } else {
                j.str_kept("_id", &event.event_id);
            }
        }
        None => {
            j.obj("index");
            j.str_kept("_index", &config.index);
            j.str_kept("_id", &event.event_id);
            j.int("version", i64::from(event.revision.max(1)));
            j.str_kept("version_type", "external");
        }
    }
    j.finish();
}

/// The bulk action line for one event, for tests that look into it.
#[cfg(test)]
pub(super) fn action(config: &ElasticsearchConfig, event: &EnrichedEvent) -> serde_json::Value {
    let mut out = Vec::new();
    write_action(config, event, &mut out);
    serde_json::from_slice(&out).unwrap()
}

/// The NDJSON body of one `_bulk` request, written into one buffer; `now` is the documents'
/// `event.ingested`. Compact events are written by reference to `kb` when there is one
/// ([`QueuedEvent::by_reference`]).
pub(super) fn bulk_body(
    config: &ElasticsearchConfig,
    events: &[Arc<QueuedEvent>],
    now: chrono::DateTime<chrono::Utc>,
    kb: Option<&Kb>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 4096);
    for ev in warmed(events) {
        let (ev, compact) = ev.by_reference(kb);
        write_action(config, ev.event.event(), &mut body);
        body.push(b'\n');
        ecs::write_document(&*ev.event, now, config.original, compact, &mut body);
        body.push(b'\n');
    }
    body
}
