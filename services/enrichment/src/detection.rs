//! Detections as enrichment holds them: [`Detection`], an event with the bytes it arrived as, and
//! [`IngestBatch`], the `Ingest` request decoded so that each event keeps its bytes.
//!
//! An `IngestBatch` decodes exactly as prost decodes an `IngestRequest` (the same recursion
//! depths, the same errors, naming `IngestRequest` and the field, the same events), and keeps
//! each event's bytes as a slice of the received message, without a copy; an event's
//! attributes stay in those bytes, undecoded ([`Held`]), while they are as a map encoder writes
//! them. Its encoded length, which admission counts, is that of the bytes that arrived (and of
//! the two fields enrichment stamps on each event), not a walk over every decoded event.

use attackmesh::{
    held::{BatchEvent, DetectionBatch, EventView, Held, Ingest},
    proto::DetectionEvent,
};
use prost::{
    Message,
    bytes::{BufMut, Bytes},
    encoding,
};

/// `DetectionEvent.event_id`, which `Detection::prepare` fills when missing.
const EVENT_ID: u32 = 1;
/// `DetectionEvent.submitted_by`, which `Detection::prepare` always sets.
const SUBMITTED_BY: u32 = 16;
/// The fields `Detection::prepare` sets: of a received detection, taken from the event, never
/// from the bytes it arrived as.
pub(crate) const PREPARED_FIELDS: [u32; 2] = [EVENT_ID, SUBMITTED_BY];

/// A detection on its way through enrichment: the event and, when it arrived whole in a
/// detector's `Ingest` batch, the bytes it arrived as. Enrichment changes a detection only in
/// `Detection::prepare`, which sets `event_id` (when missing) and `submitted_by`; a received
/// detection is sent on for attribution as its bytes followed by those two fields, instead of
/// being encoded again: for a singular field the last value on the wire wins, so attribution
/// decodes the prepared event.
///
/// A received detection's attributes stay in its bytes ([`Held`]): enrichment only checks them,
/// and sends them on as bytes. They are decoded only for the whole event ([`Detection::whole`],
/// [`Detection::into_event`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    held: Held<DetectionEvent>,
}

impl Detection {
    /// The event's id.
    pub fn event_id(&self) -> &str {
        &self.held.event().event_id
    }

    /// The whole event, its attributes decoded if they were not.
    pub fn whole(&mut self) -> &DetectionEvent {
        self.held.whole()
    }

    /// The whole event, a copy.
    pub fn to_event(&self) -> DetectionEvent {
        self.held.to_event()
    }

    /// The whole event, letting its bytes go.
    pub fn into_event(self) -> DetectionEvent {
        self.held.into_event()
    }

    /// The attributes, in key order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.held.attributes()
    }

    /// Checks the detection as [`attackmesh::validate::detection_event`] checks its event.
    pub fn validate(&self) -> Result<(), Vec<attackmesh::proto::FieldViolation>> {
        attackmesh::validate::detection_event(&self.held)
    }

    /// The bytes the detection arrived as, if it did.
    pub(crate) fn received(&self) -> Option<&Bytes> {
        self.held.bytes()
    }

    /// The event with only the fields `prepare` sets (moved out, not copied), letting the rest go.
    pub(crate) fn into_prepared(mut self) -> DetectionEvent {
        let event = self.held.event_mut();
        DetectionEvent {
            event_id: std::mem::take(&mut event.event_id),
            submitted_by: std::mem::take(&mut event.submitted_by),
            ..Default::default()
        }
    }

    /// Stamps the detection as received from `caller` (see [`crate::pipeline::prepare`]).
    pub(crate) fn prepare(&mut self, caller: &str) {
        crate::pipeline::prepare(caller, self.held.event_mut());
    }

    /// The length of the detection as sent.
    pub(crate) fn encoded_len(&self) -> usize {
        let event = self.held.event();
        match self.held.bytes() {
            Some(bytes) => {
                bytes.len()
                    + encoding::string::encoded_len(EVENT_ID, &event.event_id)
                    + encoding::string::encoded_len(SUBMITTED_BY, &event.submitted_by)
            }
            None => event.encoded_len(),
        }
    }

    /// Writes the detection as sent.
    pub(crate) fn encode_raw(&self, buf: &mut impl BufMut) {
        let event = self.held.event();
        match self.held.bytes() {
            Some(bytes) => {
                buf.put_slice(bytes);
                // The fields prepare() sets, after whatever the detector sent in them.
                encoding::string::encode(EVENT_ID, &event.event_id, buf);
                encoding::string::encode(SUBMITTED_BY, &event.submitted_by, buf);
            }
            None => event.encode_raw(buf),
        }
    }
}

impl From<DetectionEvent> for Detection {
    /// A detection that did not arrive as bytes of its own (HTTP, OTLP, `Enrich`, the
    /// re-attribution log): encoded when sent.
    fn from(event: DetectionEvent) -> Self {
        Self { held: event.into() }
    }
}

impl From<Held<DetectionEvent>> for Detection {
    /// A detection read from an `Ingest` batch.
    fn from(held: Held<DetectionEvent>) -> Self {
        Self { held }
    }
}

impl BatchEvent for Detection {
    fn encoded_len(&self) -> usize {
        Detection::encoded_len(self)
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        Detection::encode_raw(self, buf);
    }
}

/// `attackmesh.v1.IngestRequest` as enrichment reads it: the same fields, each event a
/// [`Detection`] that keeps the bytes it arrived as (see [`DetectionBatch`]). Its encoded
/// length, which admission counts, is that of the detections as sent on.
pub type IngestBatch = DetectionBatch<Detection, Ingest>;

#[cfg(test)]
#[path = "detection_tests.rs"]
mod tests;
