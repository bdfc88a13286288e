//! On-disk record format of the sink queues.
//!
//! A record is `magic (u32 LE) | length (u32 LE) | crc32c(length ‖ payload) (u32 LE) | payload`.
//! The payload is a protobuf [`QueueEntry`]: sequence number, enqueue time, the batch's W3C trace
//! context and the protobuf-encoded `EnrichedEvent`. The magic lets a reader find the next record
//! after a damaged region; the checksum covers the length so a torn or flipped length is caught.
//! This module only frames and parses bytes: it never opens files.

use std::{collections::HashMap, sync::Arc};

use attackmesh::proto::EnrichedEvent;
use prost::Message;

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
}

/// The part of a queue entry that is the same in every sink's queue: the encoded event field
/// and trace context, built once per event and framed once per queue with its own sequence number.
/// It keeps the decoded event too, so a queue can hand it to its reader without reading it back.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    body: Vec<u8>,
    event: Arc<EnrichedEvent>,
    trace_context: Arc<HashMap<String, String>>,
    enqueued_at_micros: i64,
}

impl EncodedEvent {
    /// Encodes fields 2–4 of the entry (the event is encoded in place, not copied).
    pub fn new(
        event: Arc<EnrichedEvent>,
        trace_context: Arc<HashMap<String, String>>,
        enqueued_at_micros: i64,
    ) -> Self {
        let mut body = Vec::new();
        if enqueued_at_micros != 0 {
            prost::encoding::int64::encode(2, &enqueued_at_micros, &mut body);
        }
        prost::encoding::hash_map::encode(
            prost::encoding::string::encode,
            prost::encoding::string::encoded_len,
            prost::encoding::string::encode,
            prost::encoding::string::encoded_len,
            3,
            &trace_context,
            &mut body,
        );
        body.reserve(event.encoded_len() + 8);
        prost::encoding::message::encode(4, &*event, &mut body);
        Self {
            body,
            event,
            trace_context,
            enqueued_at_micros,
        }
    }

    /// The event as queue position `seq` hands it to a sink.
    pub(crate) fn queued(&self, seq: u64) -> Arc<QueuedEvent> {
        Arc::new(QueuedEvent {
            seq,
            event: self.event.clone(),
            trace_context: self.trace_context.clone(),
            enqueued_at_micros: self.enqueued_at_micros,
        })
    }

    /// Framed record size for this event (an upper bound).
    pub fn framed_len(&self) -> usize {
        HEADER + 11 + self.body.len()
    }

    /// Appends the framed record with sequence number `seq` to `out`.
    pub(crate) fn frame_into(&self, seq: u64, out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(11 + self.body.len());
        if seq != 0 {
            prost::encoding::uint64::encode(1, &seq, &mut payload);
        }
        // Protobuf merges concatenated encodings, so the shared body follows the sequence field.
        payload.extend_from_slice(&self.body);
        frame(&payload, out);
    }
}

/// Appends `payload` as one framed record.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
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
