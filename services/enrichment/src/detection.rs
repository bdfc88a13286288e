//! Detections as enrichment holds them: [`Detection`], an event with the bytes it arrived as, and
//! [`IngestBatch`], the `Ingest` request decoded so that each event keeps its bytes.
//!
//! An `IngestBatch` decodes exactly as prost decodes an `IngestRequest` (the same recursion
//! depths, the same errors, naming `IngestRequest` and the field, the same events), and keeps
//! each event's bytes as a slice of the received message, without a copy; an event's
//! attributes stay in those bytes, undecoded, while they are as a map encoder writes them. Its
//! encoded length, which admission counts, is that of the bytes that arrived (and of the two
//! fields enrichment stamps on each event), not a walk over every decoded event.

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

/// `DetectionEvent.attributes`.
const ATTRIBUTES: u32 = 13;

/// A detection on its way through enrichment: the event and, when it arrived whole in a
/// detector's `Ingest` batch, the bytes it arrived as. Enrichment changes a detection only in
/// `Detection::prepare`, which sets `event_id` (when missing) and `submitted_by`; a received
/// detection is sent on for attribution as its bytes followed by those two fields, instead of
/// being encoded again: for a singular field the last value on the wire wins, so attribution
/// decodes the prepared event.
///
/// A received detection's attributes are not decoded into strings of their own while they
/// arrived in key order, each key once (as every encoder of a map writes them): enrichment
/// only checks them, and sends them on as bytes. They are read from the received bytes
/// ([`Detection::attributes`]) and decoded only for the whole event ([`Detection::whole`],
/// [`Detection::into_event`]).
#[derive(Debug, Clone)]
pub struct Detection {
    /// The event; while `entries` is `Some`, without its attributes.
    event: DetectionEvent,
    received: Option<Bytes>,
    /// The attributes, not yet decoded: each entry's key and value as ranges of `received`,
    /// keys strictly ascending.
    entries: Option<Vec<Entry>>,
}

/// One attribute of a received detection: where its key and value are in the received bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: (u32, u32),
    value: (u32, u32),
}

impl Detection {
    /// The event's id.
    pub fn event_id(&self) -> &str {
        &self.event.event_id
    }

    /// The whole event, its attributes decoded if they were not.
    pub fn whole(&mut self) -> &DetectionEvent {
        if let Some(entries) = self.entries.take() {
            self.event.attributes = self.read(&entries).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        }
        &self.event
    }

    /// The whole event, a copy.
    pub fn to_event(&self) -> DetectionEvent {
        self.clone().into_event()
    }

    /// The whole event, letting its bytes go.
    pub fn into_event(mut self) -> DetectionEvent {
        self.whole();
        self.event
    }

    /// The attributes, in key order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        let (decoded, entries) = match &self.entries {
            Some(entries) => (None, Some(self.read(entries))),
            None => (
                Some(self.event.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                None,
            ),
        };
        decoded.into_iter().flatten().chain(entries.into_iter().flatten())
    }

    /// Checks the detection as [`attackmesh::validate::detection_event`] checks its event.
    pub fn validate(&self) -> Result<(), Vec<attackmesh::proto::FieldViolation>> {
        let count = match &self.entries {
            Some(entries) => entries.len(),
            None => self.event.attributes.len(),
        };
        attackmesh::validate::detection_event_with_attributes(&self.event, count, self.attributes())
    }

    /// The attributes not yet decoded, read from the received bytes (checked as UTF-8 when the
    /// detection was read).
    fn read<'a>(&'a self, entries: &'a [Entry]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let bytes = self.received.as_deref().unwrap_or_default();
        let text = move |range| std::str::from_utf8(at(bytes, range)).unwrap_or_default();
        entries.iter().map(move |e| (text(e.key), text(e.value)))
    }

    /// The bytes the detection arrived as, if it did.
    pub(crate) fn received(&self) -> Option<&Bytes> {
        self.received.as_ref()
    }

    /// The event with only the fields `prepare` sets, letting the rest go.
    pub(crate) fn into_prepared(self) -> DetectionEvent {
        DetectionEvent {
            event_id: self.event.event_id,
            submitted_by: self.event.submitted_by,
            ..Default::default()
        }
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
        Self {
            event,
            received: None,
            entries: None,
        }
    }
}

impl PartialEq for Detection {
    /// The same event, however it arrived.
    fn eq(&self, other: &Self) -> bool {
        match (&self.entries, &other.entries) {
            (None, None) => self.event == other.event,
            // Both without their attributes: the rest, then the attributes.
            (Some(_), Some(_)) => self.event == other.event && self.attributes().eq(other.attributes()),
            _ => self.to_event() == other.to_event(),
        }
    }
}

/// The `(offset, length)` range of `bytes`; empty when out of them.
fn at(bytes: &[u8], (offset, len): (u32, u32)) -> &[u8] {
    bytes
        .get(offset as usize..offset as usize + len as usize)
        .unwrap_or_default()
}

/// A received detection being read: the event's fields decoded by prost but for the
/// attributes, which are found in the bytes and left there while each is an entry of key and
/// value only whose key follows the one before. The first that is not (an entry with another
/// field, a key repeated or out of order, anything prost would refuse) turns the reading into
/// prost's: the entries found so far, then the rest, are decoded into the event's map, so the
/// event and any error are prost's.
struct Reading {
    event: DetectionEvent,
    entries: Option<Vec<Entry>>,
    /// The event's bytes; the buffer being read ends where they end.
    received: Bytes,
}

impl Reading {
    /// The entry at the start of `buf` and its length with the length prefix, when it is an
    /// entry of key and value only, both UTF-8, whose key follows the last one found; `buf` is
    /// not advanced.
    fn entry(&self, entries: &[Entry], wire_type: WireType, buf: &impl Buf) -> Option<(Entry, usize)> {
        if wire_type != WireType::LengthDelimited {
            return None;
        }
        let chunk = buf.chunk();
        if chunk.len() != buf.remaining() {
            return None;
        }
        // Offset in the received bytes of the start of `chunk`.
        let base = self.received.len().checked_sub(chunk.len())?;
        let mut rest = chunk;
        let len = usize::try_from(encoding::decode_varint(&mut rest).ok()?).ok()?;
        let mut body = rest.get(..len)?;
        let mut entry = Entry {
            key: (0, 0),
            value: (0, 0),
        };
        while !body.is_empty() {
            let (tag, wire_type) = encoding::decode_key(&mut body).ok()?;
            if wire_type != WireType::LengthDelimited || !(tag == 1 || tag == 2) {
                return None;
            }
            let n = usize::try_from(encoding::decode_varint(&mut body).ok()?).ok()?;
            let text = body.get(..n)?;
            std::str::from_utf8(text).ok()?;
            // The text's offset: the entry's length prefix, then what of the entry is read.
            let at = base + (chunk.len() - rest.len()) + (len - body.len());
            let range = (u32::try_from(at).ok()?, u32::try_from(n).ok()?);
            if tag == 1 {
                entry.key = range;
            } else {
                entry.value = range;
            }
            body = &body[n..];
        }
        if let Some(last) = entries.last()
            && at(&self.received, last.key) >= at(&self.received, entry.key)
        {
            return None;
        }
        Some((entry, chunk.len() - rest.len() + len))
    }
}

impl Message for Reading {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // Never encoded; the event as read so far, should it be.
        self.event.encode_raw(buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == ATTRIBUTES
            && let Some(mut entries) = self.entries.take()
        {
            if let Some((entry, len)) = self.entry(&entries, wire_type, buf) {
                entries.push(entry);
                buf.advance(len);
                self.entries = Some(entries);
                return Ok(());
            }
            // From here on, prost's reading.
            for entry in &entries {
                let key = String::from_utf8_lossy(at(&self.received, entry.key)).into_owned();
                let value = String::from_utf8_lossy(at(&self.received, entry.value)).into_owned();
                self.event.attributes.insert(key, value);
            }
        }
        self.event.merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.event.encoded_len()
    }

    fn clear(&mut self) {
        self.event.clear();
        self.entries = Some(Vec::new());
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
        let detection = match encoding::decode_varint(&mut peek) {
            Ok(len) if whole && len <= peek.len() as u64 => {
                let prefix = buf.remaining() - peek.len();
                // The length prefix and the event, taken from the buffer together (without a
                // copy when it is `Bytes`); the event is decoded from them as prost would.
                let field = buf.copy_to_bytes(prefix + len as usize);
                let mut reading = Reading {
                    event: DetectionEvent::default(),
                    entries: Some(Vec::new()),
                    received: field.slice(prefix..),
                };
                encoding::message::merge(wire_type, &mut reading, &mut field.clone(), ctx)?;
                Detection {
                    event: reading.event,
                    received: Some(reading.received),
                    entries: reading.entries,
                }
            }
            _ => {
                let mut event = DetectionEvent::default();
                encoding::message::merge(wire_type, &mut event, buf, ctx)?;
                Detection::from(event)
            }
        };
        self.events.push(detection);
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
