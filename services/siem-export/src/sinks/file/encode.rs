//! One NDJSON line per event, in the configured shape: canonical JSON, or the ECS document and
//! the HEC envelope (with the default HEC metadata) the SIEM sinks send, or the OCSF Detection
//! Finding. No I/O here.

use attackmesh::proto::EnrichedEvent;

use super::FileShape;
use crate::sinks::util::{Original, ecs, hec, ocsf};

/// Appends `event` as one line of `shape` to `out`, with or without its `original` record.
pub(super) fn write_line(event: &EnrichedEvent, shape: FileShape, original: Original, out: &mut Vec<u8>) {
    match shape {
        FileShape::Canonical if original == Original::Drop && !event.original.is_empty() => {
            let event = EnrichedEvent {
                original: String::new(),
                ..event.clone()
            };
            attackmesh::json::write_json_line(&event, out);
        }
        FileShape::Canonical => attackmesh::json::write_json_line(event, out),
        FileShape::Ecs => {
            ecs::write_document(event, chrono::Utc::now(), original, out);
            out.push(b'\n');
        }
        FileShape::Ocsf => {
            if serde_json::to_writer(&mut *out, &ocsf::finding(event, original)).is_err() {
                out.extend_from_slice(b"{}");
            }
            out.push(b'\n');
        }
        FileShape::Hec => {
            hec::write_envelope(event, &hec::Metadata::default(), out);
            out.push(b'\n');
        }
    }
}
