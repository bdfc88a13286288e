//! [`AttributeBatch`]: `attackmesh.v1.AttributeRequest` decoded so that each detection's
//! attributes stay in the bytes they arrived as.
//!
//! The engine reads a few attributes of each detection (the ones its rules test), and Sigma
//! reads them all only for Windows records. Decoded by prost, every attribute of every event
//! would be two `String`s and a B-tree entry, made and freed per batch: on real Suricata records
//! that was most of the service's time. Each event here is a [`Held`] detection instead, decoded
//! exactly as prost decodes it (the same recursion depth, the same errors, naming
//! `AttributeRequest` and the field, the same event).

use std::collections::HashMap;

use attackmesh::{
    held::{EventView, Held},
    proto::DetectionEvent,
};
use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut},
    encoding::{self, DecodeContext, WireType},
};

/// `attackmesh.v1.AttributeRequest` as the service reads it: the same fields, each event a
/// [`Held`] detection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributeBatch {
    /// Caller-chosen batch number, echoed in the response.
    pub batch_id: u64,
    /// The detections, in order.
    pub events: Vec<Held<DetectionEvent>>,
    /// W3C trace context of the batch.
    pub trace_context: HashMap<String, String>,
    /// The ATT&CK release the caller holds, when it asks for compact attributions.
    pub compact_for_attack_version: String,
}

impl From<attackmesh::proto::AttributeRequest> for AttributeBatch {
    fn from(request: attackmesh::proto::AttributeRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            events: request.events.into_iter().map(Held::from).collect(),
            trace_context: request.trace_context,
            compact_for_attack_version: request.compact_for_attack_version,
        }
    }
}

/// The length of `event` as [`AttributeBatch`] writes it: its bytes when it arrived as bytes
/// (they decode to it), else its encoding.
fn event_len(event: &Held<DetectionEvent>) -> usize {
    event
        .bytes()
        .map_or_else(|| event.event().encoded_len(), |bytes| bytes.len())
}

impl Message for AttributeBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.batch_id != 0 {
            encoding::uint64::encode(1, &self.batch_id, buf);
        }
        for event in &self.events {
            encoding::encode_key(2, WireType::LengthDelimited, buf);
            encoding::encode_varint(event_len(event) as u64, buf);
            match event.bytes() {
                Some(bytes) => buf.put_slice(bytes),
                None => event.event().encode_raw(buf),
            }
        }
        encoding::hash_map::encode(
            encoding::string::encode,
            encoding::string::encoded_len,
            encoding::string::encode,
            encoding::string::encoded_len,
            3,
            &self.trace_context,
            buf,
        );
        if !self.compact_for_attack_version.is_empty() {
            encoding::string::encode(4, &self.compact_for_attack_version, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (result, field) = match tag {
            1 => (
                encoding::uint64::merge(wire_type, &mut self.batch_id, buf, ctx),
                "batch_id",
            ),
            2 => (
                Held::merge(wire_type, buf, ctx).map(|event| self.events.push(event)),
                "events",
            ),
            3 => (
                encoding::hash_map::merge(
                    encoding::string::merge,
                    encoding::string::merge,
                    &mut self.trace_context,
                    buf,
                    ctx,
                ),
                "trace_context",
            ),
            4 => (
                encoding::string::merge(wire_type, &mut self.compact_for_attack_version, buf, ctx),
                "compact_for_attack_version",
            ),
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        result.map_err(|mut error| {
            error.push("AttributeRequest", field);
            error
        })
    }

    fn encoded_len(&self) -> usize {
        (if self.batch_id == 0 {
            0
        } else {
            encoding::uint64::encoded_len(1, &self.batch_id)
        }) + self
            .events
            .iter()
            .map(|event| {
                let len = event_len(event);
                encoding::key_len(2) + encoding::encoded_len_varint(len as u64) + len
            })
            .sum::<usize>()
            + encoding::hash_map::encoded_len(
                encoding::string::encoded_len,
                encoding::string::encoded_len,
                3,
                &self.trace_context,
            )
            + if self.compact_for_attack_version.is_empty() {
                0
            } else {
                encoding::string::encoded_len(4, &self.compact_for_attack_version)
            }
    }

    fn clear(&mut self) {
        self.batch_id = 0;
        self.events.clear();
        self.trace_context.clear();
        self.compact_for_attack_version.clear();
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
