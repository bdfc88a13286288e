//! The `_bulk` request body: per event, the action line (`index` with an external version, or
//! `create` into a data stream) and the shared ECS document. No I/O here.

use std::sync::Arc;

use attackmesh::proto::EnrichedEvent;
use serde_json::{Value, json};

use super::ElasticsearchConfig;
use crate::sinks::{QueuedEvent, util::ecs};

/// The bulk action line for one event.
pub(super) fn action(config: &ElasticsearchConfig, event: &EnrichedEvent) -> Value {
    match &config.data_stream {
        Some(ds) => {
            let id = if event.revision > 1 {
                format!("{}-r{}", event.event_id, event.revision)
            } else {
                event.event_id.clone()
            };
            json!({"create": {"_index": ds, "_id": id}})
        }
        None => json!({"index": {
            "_index": config.index,
            "_id": event.event_id,
            "version": event.revision.max(1),
            "version_type": "external",
        }}),
    }
}

/// The NDJSON body of one `_bulk` request; `now` is the documents' `event.ingested`.
pub(super) fn bulk_body(
    config: &ElasticsearchConfig,
    events: &[Arc<QueuedEvent>],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 2048);
    for ev in events {
        let _ = serde_json::to_writer(&mut body, &action(config, &ev.event));
        body.push(b'\n');
        ecs::write_document(&ev.event, now, config.original, &mut body);
        body.push(b'\n');
    }
    body
}
