//! Detections as enrichment holds them: [`Detection`], an event with the bytes it arrived as, and
//! [`IngestBatch`], the `Ingest` request decoded so that each event keeps its bytes.
//!
//! An `IngestBatch` decodes exactly as prost decodes an `IngestRequest` (the same recursion
//! depths, the same errors, naming `IngestRequest` and the field), and keeps each event's bytes as
//! a slice of the received message, without a copy. Its encoded length, which admission counts,
//! is that of the bytes that arrived (and of the two fields enrichment stamps on each event), not
//! a walk over every decoded event.

use std::collections::HashMap;

use attackmesh::proto::DetectionEvent;
use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{self, DecodeContext, WireType},
};

/// `DetectionEvent.event_id`, which `Detection::prepare` fills when missing.
const EVENT_ID: u32 = 1;
/// `DetectionEvent.submitted_by`, which `Detection::prepare` always sets.
const SUBMITTED_BY: u32 = 16;
/// The fields `Detection::prepare` sets: of a received detection, taken from the event, never
/// from the bytes it arrived as.
pub(crate) const PREPARED_FIELDS: [u32; 2] = [EVENT_ID, SUBMITTED_BY];

/// A detection on its way through enrichment: the decoded event and, when it arrived whole in a
/// detector's `Ingest` batch, the bytes it arrived as. Enrichment changes a detection only in
/// `Detection::prepare`, which sets `event_id` (when missing) and `submitted_by`; a received
/// detection is sent on for attribution as its bytes followed by those two fields, instead of
/// being encoded again: for a singular field the last value on the wire wins, so attribution
/// decodes the prepared event.
#[derive(Debug, Clone)]
pub struct Detection {
    event: DetectionEvent,
    received: Option<Bytes>,
}

impl Detection {
    /// The event.
    pub fn event(&self) -> &DetectionEvent {
        &self.event
    }

    /// The event, letting its bytes go.
    pub fn into_event(self) -> DetectionEvent {
        self.event
    }

    /// The event and the bytes it arrived as, if it did.
    pub(crate) fn into_parts(self) -> (DetectionEvent, Option<Bytes>) {
        (self.event, self.received)
    }

    /// Stamps the detection as received from `caller` (see [`crate::pipeline::prepare`]).
    pub(crate) fn prepare(&mut self, caller: &str) {
        crate::pipeline::prepare(caller, &mut self.event);
    }

    /// The length of the detection as sent.
    pub(crate) fn encoded_len(&self) -> usize {
        match &self.received {
            Some(bytes) => {
                bytes.len()
                    + encoding::string::encoded_len(EVENT_ID, &self.event.event_id)
                    + encoding::string::encoded_len(SUBMITTED_BY, &self.event.submitted_by)
            }
            None => self.event.encoded_len(),
        }
    }

    /// Writes the detection as sent.
    pub(crate) fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.received {
            Some(bytes) => {
                buf.put_slice(bytes);
                // The fields prepare() sets, after whatever the detector sent in them.
                encoding::string::encode(EVENT_ID, &self.event.event_id, buf);
                encoding::string::encode(SUBMITTED_BY, &self.event.submitted_by, buf);
            }
            None => self.event.encode_raw(buf),
        }
    }
}

impl From<DetectionEvent> for Detection {
    /// A detection that did not arrive as bytes of its own (HTTP, OTLP, `Enrich`, the
    /// re-attribution log): encoded when sent.
    fn from(event: DetectionEvent) -> Self {
        Self { event, received: None }
    }
}

impl PartialEq for Detection {
    /// The same event, however it arrived.
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

/// `attackmesh.v1.IngestRequest` as enrichment reads it: the same fields, each event a
/// [`Detection`] that keeps the bytes it arrived as.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestBatch {
    /// Sender-chosen batch number, echoed in the acknowledgement.
    pub batch_id: u64,
    /// The detections, in order.
    pub events: Vec<Detection>,
    /// W3C trace context of the batch.
    pub trace_context: HashMap<String, String>,
}

impl IngestBatch {
    /// Decodes one event of field 2 the way prost's nested decoding does (so at the same depth),
    /// keeping its bytes when the buffer holds them in one piece, as the codec's always does.
    fn merge_event(&mut self, wire_type: WireType, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError> {
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let mut peek = buf.chunk();
        let whole = peek.len() == buf.remaining();
        let mut event = DetectionEvent::default();
        let received = match encoding::decode_varint(&mut peek) {
            Ok(len) if whole && len <= peek.len() as u64 => {
                let prefix = buf.remaining() - peek.len();
                // The length prefix and the event, taken from the buffer together (without a
                // copy when it is `Bytes`); the event is decoded from them as prost would.
                let field = buf.copy_to_bytes(prefix + len as usize);
                encoding::message::merge(wire_type, &mut event, &mut field.clone(), ctx)?;
                Some(field.slice(prefix..))
            }
            _ => {
                encoding::message::merge(wire_type, &mut event, buf, ctx)?;
                None
            }
        };
        self.events.push(Detection { event, received });
        Ok(())
    }
}

impl Message for IngestBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.batch_id != 0 {
            encoding::uint64::encode(1, &self.batch_id, buf);
        }
        for event in &self.events {
            encoding::encode_key(2, WireType::LengthDelimited, buf);
            encoding::encode_varint(event.encoded_len() as u64, buf);
            event.encode_raw(buf);
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
            2 => (self.merge_event(wire_type, buf, ctx), "events"),
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
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        result.map_err(|mut error| {
            error.push("IngestRequest", field);
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
                let len = event.encoded_len();
                encoding::key_len(2) + encoding::encoded_len_varint(len as u64) + len
            })
            .sum::<usize>()
            + encoding::hash_map::encoded_len(
                encoding::string::encoded_len,
                encoding::string::encoded_len,
                3,
                &self.trace_context,
            )
    }

    fn clear(&mut self) {
        self.batch_id = 0;
        self.events.clear();
        self.trace_context.clear();
    }
}

#[cfg(test)]
#[path = "detection_tests.rs"]
mod tests;
