//! One NDJSON line per event, in the configured shape: canonical JSON, or the ECS document and
//! the HEC envelope (with the default HEC metadata) the SIEM sinks send, or the OCSF Detection
//! Finding. No I/O here.

use attackmesh::{held::EventView, proto::EnrichedEvent};
use attackmesh_attack::Kb;

use super::FileShape;
use crate::sinks::util::{Original, ecs, hec, ocsf};

/// Appends `event` as one line of `shape` to `out`, with or without its `original` record. A
/// compact event comes with the knowledge base its details are written from.
pub(super) fn write_line(
    event: &impl EventView<EnrichedEvent>,
    shape: FileShape,
    original: Original,
    compact: Option<&Kb>,
    out: &mut Vec<u8>,
) {
    match shape {
        FileShape::Canonical => match compact {
            Some(kb) => attackmesh::json::write_compact_event(event, original == Original::Keep, kb, out),
            None => attackmesh::json::write_enriched_event(event, original == Original::Keep, out),
        },
        FileShape::Ecs => ecs::write_document(event, chrono::Utc::now(), original, compact, out),
        FileShape::Ocsf => {
            if serde_json::to_writer(&mut *out, &ocsf::finding(event, original, compact)).is_err() {
                out.extend_from_slice(b"{}");
            }
        }
        FileShape::Hec => hec::write_envelope(event, &hec::Metadata::default(), compact, out),
    }
    out.push(b'\n');
}
