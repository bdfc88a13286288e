//! On-disk record format of the sink queues.
//!
//! A record is `magic (u32 LE) | length (u32 LE) | crc32c(length ‖ payload) (u32 LE) | payload`.
//! The payload is a protobuf [`QueueEntry`]: sequence number, enqueue time, the batch's W3C trace
//! context, the protobuf-encoded `EnrichedEvent` and, for a compact event, the ATT&CK release
//! its details are to be filled in from. The magic lets a reader find the next record
//! after a damaged region; the checksum covers the length so a torn or flipped length is caught.
//! This module only frames and parses bytes: it never opens files.

use std::{collections::HashMap, sync::Arc};

use attackmesh::{held::Held, proto::EnrichedEvent};
use bytes::Bytes;
use prost::{DecodeError, Message};

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

/// One event as an Export batch carried it: decoded (for validation and the sinks) with the
/// bytes it arrived as (for the queue), so it is decoded once and never encoded again. Its
/// attributes stay in those bytes ([`Held`]).
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// On the heap from the start: an `EnrichedEvent` is over a kilobyte, and a received event
    /// moves through a few collections before it is queued.
    event: Arc<Held<EnrichedEvent>>,
}

impl ReceivedEvent {
    /// Decodes `bytes` as an `EnrichedEvent`, keeping them.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        Ok(Self {
            event: Arc::new(Held::decode(bytes)?),
        })
    }

    /// The decoded event.
    pub fn event(&self) -> &Held<EnrichedEvent> {
        &self.event
    }
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
    event: Arc<Held<EnrichedEvent>>,
    trace_context: Arc<HashMap<String, String>>,
    enqueued_at_micros: i64,
    compact_for: Option<Arc<str>>,
}

impl EncodedEvent {
    /// Encodes `event` for the queue.
    pub fn new(event: EnrichedEvent, trace_context: Arc<HashMap<String, String>>, enqueued_at_micros: i64) -> Self {
        let event_bytes = Bytes::from(event.encode_to_vec());
        Self::with_bytes(Arc::new(event.into()), event_bytes, trace_context, enqueued_at_micros)
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
        let event = received.event;
        let event_bytes = match event.bytes() {
            Some(bytes) if event.is_as_encoded() => bytes.clone(),
            _ => Bytes::from(event.to_event().encode_to_vec()),
        };
        Self::with_bytes(event, event_bytes, trace_context, enqueued_at_micros)
    }

    fn with_bytes(
        event: Arc<Held<EnrichedEvent>>,
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
            && let Some(metadata) = Arc::make_mut(&mut self.event).event_mut().metadata.as_mut()
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
