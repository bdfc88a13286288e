//! One NDJSON line per event, in the configured shape. No I/O here.

use attackmesh::proto::EnrichedEvent;

use super::FileShape;
use crate::sinks::{elasticsearch, splunk_hec};

/// Appends `event` as one line of `shape` to `out`.
pub fn write_line(event: &EnrichedEvent, shape: FileShape, hec: &splunk_hec::SplunkHecConfig, out: &mut Vec<u8>) {
    match shape {
        FileShape::Canonical => attackmesh::json::write_json_line(event, out),
        FileShape::Ecs => {
            let doc = elasticsearch::encode::document(event, chrono::Utc::now());
            if serde_json::to_writer(&mut *out, &doc).is_err() {
                out.extend_from_slice(b"{}");
            }
            out.push(b'\n');
        }
        FileShape::Hec => {
            out.extend_from_slice(&splunk_hec::encode::envelope_bytes(event, hec));
            out.push(b'\n');
        }
    }
}
