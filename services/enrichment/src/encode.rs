//! Requests encoded with no walk over an event repeated: enriched events encoded once, as they
//! are made, into the bytes export receives, the detection part of a received detection's event
//! copied from the bytes it arrived as ([`EventEncoder`]); and detections sent for attribution
//! as they arrived, or with each event's length computed once ([`AttributeBatch`]).
//!
//! An `ExportRequest`'s `repeated EnrichedEvent events = 2` and a `repeated bytes` field 2 are
//! the same on the wire (both length-delimited), so a batch of events encoded one by one and sent
//! as [`EncodedExport`](attackmesh::codec::EncodedExport) is, byte for byte, the `ExportRequest` of those events. Encoding each
//! event right after it is made lets it go while its memory is still warm, and spares prost's
//! re-walking of every event (and its attributes map) for each length prefix of a whole batch.
//! This module decides nothing about what an event holds; [`attackmesh::enriched_event`] does.

use attackmesh::{
    enriched::write_detection_fields,
    enriched_event,
    proto::{AttributeRequest, Attribution, EnrichedEvent},
};
use prost::{
    Message,
    bytes::{Buf, BufMut, Bytes, BytesMut},
    encoding::{self, DecodeContext, WireType},
};

use crate::detection::{Detection, PREPARED_FIELDS};

/// Room reserved for an event before any has been encoded: the typical generated event fits.
const FIRST_EVENT_BYTES: usize = 1024;

/// Largest buffer reserved at once: below the allocator's mmap threshold, so buffers are taken
/// from (and given back to) the heap instead of fresh pages for every batch.
const MAX_BUFFER_BYTES: usize = 64 * 1024;

/// Encodes the events of one batch into slices of a few shared buffers.
#[derive(Debug)]
pub struct EventEncoder {
    buf: BytesMut,
    events: Vec<Bytes>,
    expected: usize,
    written: usize,
}

impl EventEncoder {
    /// An encoder for a batch of `expected` events.
    pub fn with_capacity(expected: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            events: Vec::with_capacity(expected),
            expected,
            written: 0,
        }
    }

    /// Encodes `event` as the next event of the batch.
    pub fn push(&mut self, event: &EnrichedEvent) {
        self.reserve();
        event.encode_raw(&mut self.buf);
        self.split();
    }

    /// Encodes, as the next event of the batch, the event [`attackmesh::enriched_event`] makes of
    /// `detection` and `attribution`. A detection that arrived as bytes of its own is not
    /// encoded again: its fields are copied from those bytes, renumbered as `enriched_event`
    /// places them ([`write_detection_fields`]), but for the two `Detection::prepare` sets,
    /// which are encoded with the attribution's fields after them. A decoder takes fields in any
    /// order, so export decodes the same event.
    pub fn push_enriched(&mut self, detection: Detection, attribution: Attribution, revision: u32) {
        self.reserve();
        if let Some(received) = detection.received() {
            match write_detection_fields(received, &PREPARED_FIELDS, &mut self.buf) {
                Ok(()) => {
                    enriched_event(detection.into_prepared(), attribution, revision).encode_raw(&mut self.buf);
                    self.split();
                    return;
                }
                // Not reached for bytes that decoded as the event: encoded from the event then.
                Err(_) => self.buf.clear(),
            }
        }
        enriched_event(detection.into_event(), attribution, revision).encode_raw(&mut self.buf);
        self.split();
    }

    /// Makes room for the next event.
    fn reserve(&mut self) {
        let done = self.events.len();
        let mean = self.written.checked_div(done).unwrap_or(FIRST_EVENT_BYTES).max(64);
        if self.buf.capacity() < mean * 2 {
            // Room for the rest of the batch at the mean size so far, so a batch takes few buffers.
            // An event larger than what is left grows the buffer as it is written.
            let left = self.expected.saturating_sub(done).max(1);
            let want = mean.saturating_mul(left) + mean / 4;
            self.buf.reserve(want.min(MAX_BUFFER_BYTES));
        }
    }

    /// Takes the event just written as the next of the batch.
    fn split(&mut self) {
        self.written += self.buf.len();
        self.events.push(self.buf.split().freeze());
    }

    /// The encoded events, in the order pushed.
    pub fn finish(self) -> Vec<Bytes> {
        self.events
    }
}

/// An `AttributeRequest` to send, each event's encoded length computed once, when the batch is
/// made, and received detections sent as they arrived (see [`Detection`]). Prost's encoding of
/// the request walks every event (and its attributes map) once for the room tonic reserves,
/// again for each event's length prefix, and a third time to write it; on real Suricata
/// detections that was an eighth of enrichment's CPU. Here the request's other fields are
/// encoded by prost as the batch is made, and the events follow them: a decoder takes fields in
/// any order, so this is the same `AttributeRequest`. Encode only: decoding one is not
/// supported.
#[derive(Debug)]
pub struct AttributeBatch {
    /// The encoded `AttributeRequest` without its events.
    head: Vec<u8>,
    events: Vec<Detection>,
    /// The encoded length of each event, in order.
    lengths: Vec<usize>,
    /// The encoded length of the whole request.
    len: usize,
}

impl AttributeBatch {
    /// The batch of `request`'s fields and `detections`, after any events `request` holds.
    pub fn new(mut request: AttributeRequest, detections: Vec<Detection>) -> Self {
        let events: Vec<Detection> = if request.events.is_empty() {
            detections
        } else {
            std::mem::take(&mut request.events)
                .into_iter()
                .map(Detection::from)
                .chain(detections)
                .collect()
        };
        let head = request.encode_to_vec();
        let lengths: Vec<usize> = events.iter().map(Detection::encoded_len).collect();
        let len = head.len()
            + lengths
                .iter()
                .map(|&n| encoding::key_len(2) + encoding::encoded_len_varint(n as u64) + n)
                .sum::<usize>();
        Self {
            head,
            events,
            lengths,
            len,
        }
    }

    /// The detections, taken back.
    pub fn into_detections(self) -> Vec<Detection> {
        self.events
    }

    /// The detections.
    pub fn detections(&self) -> &[Detection] {
        &self.events
    }
}

impl Message for AttributeBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.head);
        for (event, &len) in self.events.iter().zip(&self.lengths) {
            encoding::encode_key(2, WireType::LengthDelimited, buf);
            encoding::encode_varint(len as u64, buf);
            event.encode_raw(buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded: skip whatever arrives.
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.head.clear();
        self.events.clear();
        self.lengths.clear();
        self.len = 0;
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
