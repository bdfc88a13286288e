//! [`DetectionBatch`]: an `IngestRequest` or an `AttributeRequest` read so that each detection
//! keeps the bytes it arrived as, its attributes left in them ([`Held`]).

use std::{collections::HashMap, fmt, marker::PhantomData};

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut},
    encoding::{self, DecodeContext, WireType},
};

use super::{EventView, Held};
use crate::proto::{AttributeRequest, DetectionEvent, IngestRequest};

/// The request a [`DetectionBatch`] stands for. Both have `uint64 batch_id = 1`,
/// `repeated DetectionEvent events = 2` and `map<string, string> trace_context = 3`.
pub trait DetectionRequest: Send + Sync + 'static {
    /// The contract's message, named in decoding errors.
    const NAME: &'static str;
    /// Whether the request has `string compact_for_attack_version = 4`.
    const COMPACT: bool;
}

/// `attackmesh.v1.IngestRequest`.
#[derive(Debug)]
pub enum Ingest {}

impl DetectionRequest for Ingest {
    const NAME: &'static str = "IngestRequest";
    const COMPACT: bool = false;
}

/// `attackmesh.v1.AttributeRequest`.
#[derive(Debug)]
pub enum Attribute {}

impl DetectionRequest for Attribute {
    const NAME: &'static str = "AttributeRequest";
    const COMPACT: bool = true;
}

/// A detection as a [`DetectionBatch`] holds it: made from a [`Held`] one as it is read, and
/// written back as it is sent.
pub trait BatchEvent: From<Held<DetectionEvent>> + fmt::Debug + Send + Sync {
    /// The length of the detection as written.
    fn encoded_len(&self) -> usize;
    /// Writes the detection.
    fn encode_raw(&self, buf: &mut impl BufMut);
}

impl BatchEvent for Held<DetectionEvent> {
    /// Its bytes when it arrived as bytes (they decode to it), else its encoding.
    fn encoded_len(&self) -> usize {
        self.bytes()
            .map_or_else(|| self.event().encoded_len(), |bytes| bytes.len())
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self.bytes() {
            Some(bytes) => buf.put_slice(bytes),
            None => self.event().encode_raw(buf),
        }
    }
}

/// An `IngestRequest` or `AttributeRequest` (`R`) whose events are `E`s made from [`Held`]
/// detections. It decodes exactly as prost decodes the request (the same recursion depths, the
/// same errors, naming the request and the field, the same events), and keeps each event's
/// bytes as a slice of the received message, without a copy, when the buffer holds it in one
/// piece, as the codec's always does.
pub struct DetectionBatch<E, R> {
    /// Sender-chosen batch number, echoed in the answer.
    pub batch_id: u64,
    /// The detections, in order.
    pub events: Vec<E>,
    /// W3C trace context of the batch.
    pub trace_context: HashMap<String, String>,
    /// The ATT&CK release the caller holds when it asks for compact attributions (an
    /// `AttributeRequest`'s field); always empty for an `IngestRequest`.
    pub compact_for_attack_version: String,
    request: PhantomData<fn() -> R>,
}

impl<E, R> Default for DetectionBatch<E, R> {
    fn default() -> Self {
        Self {
            batch_id: 0,
            events: Vec::new(),
            trace_context: HashMap::new(),
            compact_for_attack_version: String::new(),
            request: PhantomData,
        }
    }
}

impl<E: fmt::Debug, R: DetectionRequest> fmt::Debug for DetectionBatch<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(R::NAME)
            .field("batch_id", &self.batch_id)
            .field("events", &self.events)
            .field("trace_context", &self.trace_context)
            .field("compact_for_attack_version", &self.compact_for_attack_version)
            .finish()
    }
}

impl<E: Clone, R> Clone for DetectionBatch<E, R> {
    fn clone(&self) -> Self {
        Self {
            batch_id: self.batch_id,
            events: self.events.clone(),
            trace_context: self.trace_context.clone(),
            compact_for_attack_version: self.compact_for_attack_version.clone(),
            request: PhantomData,
        }
    }
}

impl<E: PartialEq, R> PartialEq for DetectionBatch<E, R> {
    fn eq(&self, other: &Self) -> bool {
        self.batch_id == other.batch_id
            && self.events == other.events
            && self.trace_context == other.trace_context
            && self.compact_for_attack_version == other.compact_for_attack_version
    }
}

impl<E: From<DetectionEvent>> From<IngestRequest> for DetectionBatch<E, Ingest> {
    fn from(request: IngestRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            events: request.events.into_iter().map(E::from).collect(),
            trace_context: request.trace_context,
            ..Self::default()
        }
    }
}

impl<E: From<DetectionEvent>> From<AttributeRequest> for DetectionBatch<E, Attribute> {
    fn from(request: AttributeRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            events: request.events.into_iter().map(E::from).collect(),
            trace_context: request.trace_context,
            compact_for_attack_version: request.compact_for_attack_version,
            request: PhantomData,
        }
    }
}

impl<E: BatchEvent, R: DetectionRequest> Message for DetectionBatch<E, R> {
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
        if R::COMPACT && !self.compact_for_attack_version.is_empty() {
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
                Held::<DetectionEvent>::merge(wire_type, buf, ctx).map(|event| self.events.push(E::from(event))),
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
            4 if R::COMPACT => (
                encoding::string::merge(wire_type, &mut self.compact_for_attack_version, buf, ctx),
                "compact_for_attack_version",
            ),
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        result.map_err(|mut error| {
            error.push(R::NAME, field);
            error
        })
    }

    fn encoded_len(&self) -> usize {
        let batch_id = if self.batch_id == 0 {
            0
        } else {
            encoding::uint64::encoded_len(1, &self.batch_id)
        };
        let events: usize = self
            .events
            .iter()
            .map(|event| {
                let len = event.encoded_len();
                encoding::key_len(2) + encoding::encoded_len_varint(len as u64) + len
            })
            .sum();
        let trace_context = encoding::hash_map::encoded_len(
            encoding::string::encoded_len,
            encoding::string::encoded_len,
            3,
            &self.trace_context,
        );
        let compact = if R::COMPACT && !self.compact_for_attack_version.is_empty() {
            encoding::string::encoded_len(4, &self.compact_for_attack_version)
        } else {
            0
        };
        batch_id + events + trace_context + compact
    }

    fn clear(&mut self) {
        self.batch_id = 0;
        self.events.clear();
        self.trace_context.clear();
        self.compact_for_attack_version.clear();
    }
}
