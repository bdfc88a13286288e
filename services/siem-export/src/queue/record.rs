//! On-disk record format of the sink queues.
//!
//! A record is `magic (u32 LE) | length (u32 LE) | crc32c(length ‖ payload) (u32 LE) | payload`.
//! The payload is a protobuf [`QueueEntry`]: sequence number, enqueue time, the batch's W3C trace
//! context, the protobuf-encoded `EnrichedEvent` and, for a compact event, the ATT&CK release
//! its details are to be filled in from. The magic lets a reader find the next record
//! after a damaged region; the checksum covers the length so a torn or flipped length is caught.
//! This module only frames and parses bytes: it never opens files.

use std::{collections::HashMap, sync::Arc};

use attackmesh::proto::EnrichedEvent;
use bytes::{Buf, Bytes};
use prost::{
    DecodeError, Message,
    encoding::{self, DecodeContext, WireType},
};

use crate::sinks::QueuedEvent;

/// Marks the start of every record ("AMQ1").
pub(crate) const MAGIC: u32 = 0x3151_4d41;
/// Bytes before the payload.
pub(crate) const HEADER: usize = 12;
/// Largest payload a record may have (an event is far smaller; a bigger length is damage).
pub(crate) const MAX_PAYLOAD: usize = 80 << 20;

/// The payload of one queue record.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct QueueEntry {
    /// Position in the queue.
    #[prost(uint64, tag = "1")]
    pub(crate) seq: u64,
    /// Enqueue time, microseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub(crate) enqueued_at_micros: i64,
    /// W3C trace context of the Export batch.
    #[prost(map = "string, string", tag = "3")]
    pub(crate) trace_context: HashMap<String, String>,
    /// The event.
    #[prost(message, optional, tag = "4")]
    pub(crate) event: Option<EnrichedEvent>,
    /// For a compact event (one of an `Export` batch marked `compact_for_attack_version`), that
    /// release: its techniques and threat actors without a name are filled in from the
    /// knowledge base when written. Empty for a full event (and in records of earlier releases,
    /// which held full events only).
    #[prost(string, tag = "5")]
    pub(crate) compact_for_attack_version: String,
}

/// Field number of `EnrichedEvent.attributes`.
const ATTRIBUTES: u32 = 16;

/// One event as an Export batch carried it: decoded (for validation and the sinks) beside the
/// bytes it arrived as (for the queue), so it is decoded once and never encoded again.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// On the heap from the start: an `EnrichedEvent` is over a kilobyte, and a received event
    /// moves through a few collections before it is queued.
    event: Arc<EnrichedEvent>,
    bytes: Bytes,
    /// Whether `bytes` carry nothing beyond `event` as this release encodes it (as long as its
    /// encoding, every attribute entry as prost writes one, no key repeated; attributes may come
    /// in another order), found while decoding.
    exact: bool,
}

impl ReceivedEvent {
    /// Decodes `bytes` as an `EnrichedEvent`, keeping them.
    ///
    /// The attributes are read into a list and built into their map at the end: an encoder
    /// writes them in key order, which the map's bulk build takes without a search per entry.
    /// Repeated keys keep their last value, as a map field's merge does. While reading, it
    /// tells whether the bytes are exactly what this release would encode: every attribute
    /// entry written as prost writes it, no key repeated, and the rest of the event as long as
    /// its own encoding (longer bytes carry fields this release does not know).
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, &mut Vec::new())
    }

    /// [`Self::decode`], reading the attributes into `attributes` (empty on return, whatever
    /// the outcome). A caller decoding a batch passes the same list for every event, so it
    /// grows to the batch's largest attribute count once instead of doubling its way there for
    /// every event.
    pub fn decode_with(bytes: Bytes, attributes: &mut Vec<(String, String)>) -> Result<Self, DecodeError> {
        attributes.clear();
        let result = Self::decode_into(bytes, attributes);
        attributes.clear();
        result
    }

    fn decode_into(bytes: Bytes, attributes: &mut Vec<(String, String)>) -> Result<Self, DecodeError> {
        let mut event = EnrichedEvent::default();
        // Bytes of the attribute fields as received, and as this release encodes their entries.
        let (mut received_len, mut encoded_len) = (0, 0);
        let mut buf = bytes.clone();
        while buf.has_remaining() {
            let start = buf.remaining();
            let (tag, wire_type) = encoding::decode_key(&mut buf)?;
            if tag == ATTRIBUTES {
                let (key, value) = attribute(wire_type, &mut buf).map_err(|mut e| {
                    e.push("EnrichedEvent", "attributes");
                    e
                })?;
                received_len += start - buf.remaining();
                encoded_len += attribute_encoded_len(&key, &value);
                attributes.push((key, value));
            } else {
                event.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
            }
        }
        let entries = attributes.len();
        let rest_len = event.encoded_len();
        event.attributes = attributes.drain(..).collect();
        let exact =
            received_len == encoded_len && event.attributes.len() == entries && bytes.len() == rest_len + received_len;
        Ok(Self {
            event: Arc::new(event),
            bytes,
            exact,
        })
    }

    /// The decoded event.
    pub fn event(&self) -> &EnrichedEvent {
        &self.event
    }
}

/// One `map<string, string>` entry: a message of key (1) and value (2), either left out when
/// empty, unknown fields skipped.
fn attribute(wire_type: WireType, buf: &mut Bytes) -> Result<(String, String), DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let mut entry = (String::new(), String::new());
    encoding::merge_loop(&mut entry, buf, DecodeContext::default(), |(key, value), buf, ctx| {
        let (tag, wire_type) = encoding::decode_key(buf)?;
        match tag {
            1 => encoding::string::merge(wire_type, key, buf, ctx),
            2 => encoding::string::merge(wire_type, value, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    })?;
    Ok(entry)
}

/// Bytes of the attribute field prost writes for one entry (empty key or value left out).
fn attribute_encoded_len(key: &str, value: &str) -> usize {
    let part = |tag: u32, s: &str| {
        if s.is_empty() {
            0
        } else {
            encoding::key_len(tag) + encoding::encoded_len_varint(s.len() as u64) + s.len()
        }
    };
    let entry = part(1, key) + part(2, value);
    encoding::key_len(ATTRIBUTES) + encoding::encoded_len_varint(entry as u64) + entry
}

/// The part of a queue entry that is the same in every sink's queue: the event's encoding and
/// the trace context, built once per event and framed once per queue with its own sequence
/// number. It keeps the decoded event too, so a queue can hand it to its reader without reading
/// it back.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// Fields 2–3 (and 5) of the entry.
    head: Vec<u8>,
    /// The encoded event, the content of field 4.
    event_bytes: Bytes,
    event: Arc<EnrichedEvent>,
    trace_context: Arc<HashMap<String, String>>,
    enqueued_at_micros: i64,
    compact_for: Option<Arc<str>>,
}

impl EncodedEvent {
    /// Encodes `event` for the queue.
    pub fn new(
        event: Arc<EnrichedEvent>,
        trace_context: Arc<HashMap<String, String>>,
        enqueued_at_micros: i64,
    ) -> Self {
        let event_bytes = Bytes::from(event.encode_to_vec());
        Self::with_bytes(event, event_bytes, trace_context, enqueued_at_micros)
    }

    /// Queues a received event as the bytes it arrived as. Bytes that are not exactly the
    /// event's own encoding carry more than this release decodes (fields of a newer contract, or
    /// a repeated or non-minimal encoding) and are encoded afresh instead, so the queue holds
    /// only what was validated.
    pub fn received(
        received: ReceivedEvent,
        trace_context: Arc<HashMap<String, String>>,
        enqueued_at_micros: i64,
    ) -> Self {
        let ReceivedEvent { event, bytes, exact } = received;
        if exact {
            Self::with_bytes(event, bytes, trace_context, enqueued_at_micros)
        } else {
            Self::new(event, trace_context, enqueued_at_micros)
        }
    }

    fn with_bytes(
        event: Arc<EnrichedEvent>,
        event_bytes: Bytes,
        trace_context: Arc<HashMap<String, String>>,
        enqueued_at_micros: i64,
    ) -> Self {
        let mut head = Vec::new();
        if enqueued_at_micros != 0 {
            prost::encoding::int64::encode(2, &enqueued_at_micros, &mut head);
        }
        prost::encoding::hash_map::encode(
            prost::encoding::string::encode,
            prost::encoding::string::encoded_len,
            prost::encoding::string::encode,
            prost::encoding::string::encoded_len,
            3,
            &trace_context,
            &mut head,
        );
        Self {
            head,
            event_bytes,
            event,
            trace_context,
            enqueued_at_micros,
            compact_for: None,
        }
    }

    /// Fills the decoded event in from `kb` (see [`QueuedEvent::filled_in`]), for queues whose
    /// sinks do not all write compact events themselves: filled once here, not once per sink.
    /// The record keeps the bytes and mark it arrived with; a reader of the segment files gets
    /// the event compact again, and its driver fills it in.
    pub fn filled_in(mut self, kb: &attackmesh_attack::Kb) -> Self {
        if self.compact_for.take().is_some()
            && let Some(metadata) = Arc::make_mut(&mut self.event).metadata.as_mut()
        {
            attackmesh_attack::compact::fill_in(kb, metadata);
        }
        self
    }

    /// Marks the event compact for ATT&CK release `release`: the record says so (its
    /// `compact_for_attack_version`), and the sinks are given it compact until it is
    /// [filled in](Self::filled_in).
    pub fn compact_for(mut self, release: Arc<str>) -> Self {
        prost::encoding::encode_key(5, prost::encoding::WireType::LengthDelimited, &mut self.head);
        prost::encoding::encode_varint(release.len() as u64, &mut self.head);
        self.head.extend_from_slice(release.as_bytes());
        self.compact_for = Some(release);
        self
    }

    /// The event as queue position `seq` hands it to a sink.
    pub(crate) fn queued(&self, seq: u64) -> Arc<QueuedEvent> {
        Arc::new(QueuedEvent {
            seq,
            event: self.event.clone(),
            trace_context: self.trace_context.clone(),
            enqueued_at_micros: self.enqueued_at_micros,
            compact_for: self.compact_for.clone(),
        })
    }

    /// Framed record size for this event (an upper bound: the sequence number counted at its
    /// longest).
    pub fn framed_len(&self) -> usize {
        let len = self.event_bytes.len();
        HEADER + 11 + self.head.len() + 1 + prost::encoding::encoded_len_varint(len as u64) + len
    }

    /// Appends the framed record with sequence number `seq` to `out`, writing the payload in
    /// place.
    pub(crate) fn frame_into(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(self.framed_len());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        // Length and checksum, known once the payload is written.
        out.extend_from_slice(&[0; HEADER - 4]);
        if seq != 0 {
            prost::encoding::uint64::encode(1, &seq, out);
        }
        // Protobuf merges concatenated encodings, so the shared fields follow the sequence field.
        out.extend_from_slice(&self.head);
        prost::encoding::encode_key(4, prost::encoding::WireType::LengthDelimited, out);
        prost::encoding::encode_varint(self.event_bytes.len() as u64, out);
        out.extend_from_slice(&self.event_bytes);
        let len = u32::try_from(out.len() - start - HEADER)
            .unwrap_or(u32::MAX)
            .to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &out[start + HEADER..]);
        out[start + 4..start + 8].copy_from_slice(&len);
        out[start + 8..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What the bytes at a position hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole record: payload at `HEADER..end`.
    Record {
        /// Offset just past the record, relative to the start of the input.
        end: usize,
    },
    /// Too few bytes to decide.
    Incomplete,
    /// Not a valid record.
    Corrupt(&'static str),
}

/// Parses the record at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Frame {
    if buf.len() < 4 {
        return Frame::Incomplete;
    }
    if buf[..4] != MAGIC.to_le_bytes() {
        return Frame::Corrupt("bad record marker");
    }
    if buf.len() < HEADER {
        return Frame::Incomplete;
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if len > MAX_PAYLOAD {
        return Frame::Corrupt("implausible record length");
    }
    if buf.len() < HEADER + len {
        return Frame::Incomplete;
    }
    let mut want = crc32c::crc32c(&buf[4..8]);
    want = crc32c::crc32c_append(want, &buf[HEADER..HEADER + len]);
    if want != crc {
        return Frame::Corrupt("checksum mismatch");
    }
    Frame::Record { end: HEADER + len }
}

/// Offset of the first valid record strictly after position 0 of `buf`, if any.
pub(crate) fn resync(buf: &[u8]) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut from = 1;
    while from + 4 <= buf.len() {
        let hit = buf[from..].windows(4).position(|w| w == magic)?;
        let at = from + hit;
        if let Frame::Record { .. } = parse(&buf[at..]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Decodes a record payload.
pub(crate) fn decode(payload: &[u8]) -> Result<QueueEntry, prost::DecodeError> {
    QueueEntry::decode(payload)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
