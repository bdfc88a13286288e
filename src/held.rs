//! Events whose attributes stay in the bytes they arrived as.
//!
//! A detector record's attributes are tens of short keys and values. Decoded, each is two
//! `String`s and a B-tree entry, allocated and freed again by a service that only checks them,
//! looks a few up, or writes them out as they are. [`Held`] decodes every other field of a
//! [`DetectionEvent`] or an [`EnrichedEvent`] with prost, and leaves the attributes in the
//! received bytes while they are as every map encoder writes them: each entry a key and a value
//! only, both UTF-8, each key after the one before. The first entry that is not (a key repeated
//! or out of order, another field in the entry, a wrong wire type, bad UTF-8, a length past the
//! end) turns the reading into prost's for the rest of the event: the entries found so far go
//! into the event's map and prost decodes the others, so the event and every error are prost's.
//!
//! Readers take an [`EventView`]: the event's fields and its attributes, wherever they are. A
//! plain event is one, and so is a `Held` event.
//!
//! A [`DetectionBatch`] is an `IngestRequest` or `AttributeRequest` read with each detection
//! held.

use std::collections::BTreeMap;

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{self, DecodeContext, WireType},
};

use crate::proto::{DetectionEvent, EnrichedEvent};

#[path = "held_batch.rs"]
mod batch;

pub use batch::{Attribute, BatchEvent, DetectionBatch, DetectionRequest, Ingest};

/// A message with a `map<string, string> attributes` field.
pub trait Attributed: Message + Default {
    /// The number of the `attributes` field.
    const ATTRIBUTES: u32;

    /// The decoded attributes.
    fn attribute_map(&self) -> &BTreeMap<String, String>;

    /// The decoded attributes, to change.
    fn attribute_map_mut(&mut self) -> &mut BTreeMap<String, String>;
}

impl Attributed for DetectionEvent {
    const ATTRIBUTES: u32 = 13;

    fn attribute_map(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }

    fn attribute_map_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.attributes
    }
}

impl Attributed for EnrichedEvent {
    const ATTRIBUTES: u32 = 16;

    fn attribute_map(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }

    fn attribute_map_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.attributes
    }
}

/// An event as its readers see it: its fields, and its attributes wherever they are held.
pub trait EventView<M> {
    /// The event's fields. Its own `attributes` are empty while they are held elsewhere: read
    /// them through [`Self::attributes`].
    fn event(&self) -> &M;

    /// The attributes, in key order, each key once.
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)>;

    /// The attributes as [`Self::attributes`] gives them, as bytes (UTF-8, checked when they
    /// were read): for a reader of their lengths, which need not check them again.
    fn attribute_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The value of attribute `key`.
    fn attribute(&self, key: &str) -> Option<&str>;

    /// How many attributes there are.
    fn attribute_count(&self) -> usize;
}

impl<M: Attributed> EventView<M> for M {
    fn event(&self) -> &M {
        self
    }

    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attribute_map().iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn attribute_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.attribute_map().iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }

    fn attribute(&self, key: &str) -> Option<&str> {
        self.attribute_map().get(key).map(String::as_str)
    }

    fn attribute_count(&self) -> usize {
        self.attribute_map().len()
    }
}

/// An event and, when it arrived as bytes of its own, those bytes, its attributes left in them
/// (see the [module](self)). Built from a plain event ([`From`]), it is that event.
#[derive(Debug, Clone)]
pub struct Held<M> {
    /// The event; while `entries` is `Some`, without its attributes.
    event: M,
    bytes: Option<Bytes>,
    /// The attributes not decoded: each entry's key and value as ranges of `bytes`, keys
    /// strictly ascending.
    entries: Option<Vec<Entry>>,
    /// The bytes of the attribute fields in `entries`, as received.
    entries_len: usize,
}

/// One attribute left in the received bytes: where its key and value are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: (u32, u32),
    value: (u32, u32),
}

impl<M: Attributed> Held<M> {
    /// Decodes `bytes` as an `M`, as prost does, keeping them.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut reading = Reading::new(bytes.clone());
        reading.merge(bytes)?;
        Ok(reading.into_held())
    }

    /// Decodes the length-delimited `M` at the start of `buf` as prost's nested decoding does (at
    /// the same depth, with the same errors). Its bytes are kept, without a copy, when `buf`
    /// holds the rest of the message in one piece, as a `Bytes` does.
    pub fn merge(wire_type: WireType, buf: &mut impl Buf, ctx: DecodeContext) -> Result<Self, DecodeError> {
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let mut peek = buf.chunk();
        let whole = peek.len() == buf.remaining();
        match encoding::decode_varint(&mut peek) {
            Ok(len) if whole && len <= peek.len() as u64 => {
                let prefix = buf.remaining() - peek.len();
                // The length prefix and the event, taken from the buffer together (without a
                // copy when it is `Bytes`); the event is decoded from them as prost would.
                let field = buf.copy_to_bytes(prefix + len as usize);
                let mut reading = Reading::new(field.slice(prefix..));
                encoding::message::merge(wire_type, &mut reading, &mut field.clone(), ctx)?;
                Ok(reading.into_held())
            }
            _ => {
                let mut event = M::default();
                encoding::message::merge(wire_type, &mut event, buf, ctx)?;
                Ok(Self::from(event))
            }
        }
    }

    /// The event, its attributes decoded if they were not.
    pub fn whole(&mut self) -> &M {
        if let Some(entries) = self.entries.take() {
            let decoded: Vec<(String, String)> =
                self.read(&entries).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            self.event.attribute_map_mut().extend(decoded);
        }
        &self.event
    }

    /// The whole event, letting its bytes go.
    pub fn into_event(mut self) -> M {
        self.whole();
        self.event
    }

    /// The whole event, a copy.
    pub fn to_event(&self) -> M
    where
        M: Clone,
    {
        self.clone().into_event()
    }

    /// The event, to change fields other than its attributes (which are empty in it while they
    /// are held: change them through [`Self::whole`] and this).
    pub fn event_mut(&mut self) -> &mut M {
        &mut self.event
    }

    /// The bytes the event arrived as, if it did.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.bytes.as_ref()
    }

    /// Whether the attributes are still in the bytes, undecoded.
    pub fn is_held(&self) -> bool {
        self.entries.is_some()
    }

    /// Whether the bytes the event arrived as are exactly as long as its encoding by prost: every
    /// field as prost writes it (an attribute entry with its key and value, each left out when
    /// empty), no attribute key repeated. Longer bytes carry fields this release does not know,
    /// or a repeated or non-minimal encoding. False for an event that did not arrive as bytes.
    pub fn is_as_encoded(&self) -> bool {
        let Some(bytes) = &self.bytes else {
            return false;
        };
        let rest = self.event.encoded_len();
        match &self.entries {
            None => bytes.len() == rest,
            Some(entries) => {
                let text = |(_, len): (u32, u32)| {
                    let len = len as usize;
                    if len == 0 {
                        0
                    } else {
                        1 + encoding::encoded_len_varint(len as u64) + len
                    }
                };
                let encoded: usize = entries
                    .iter()
                    .map(|e| {
                        let entry = text(e.key) + text(e.value);
                        encoding::key_len(M::ATTRIBUTES) + encoding::encoded_len_varint(entry as u64) + entry
                    })
                    .sum();
                encoded == self.entries_len && bytes.len() == rest + encoded
            }
        }
    }

    /// The attributes not yet decoded, read from the bytes (checked as UTF-8 when read).
    fn read<'a>(&'a self, entries: &'a [Entry]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let bytes = self.bytes.as_deref().unwrap_or_default();
        entries.iter().map(move |e| (text(bytes, e.key), text(bytes, e.value)))
    }
}

impl<M: Attributed> EventView<M> for Held<M> {
    fn event(&self) -> &M {
        &self.event
    }

    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        let decoded = self.event.attributes();
        let held = self.entries.as_deref().map(|entries| self.read(entries));
        decoded.chain(held.into_iter().flatten())
    }

    fn attribute_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let decoded = self.event.attribute_bytes();
        let bytes = self.bytes.as_deref().unwrap_or_default();
        let held = self
            .entries
            .iter()
            .flatten()
            .map(move |e| (at(bytes, e.key), at(bytes, e.value)));
        decoded.chain(held)
    }

    fn attribute(&self, key: &str) -> Option<&str> {
        if let Some(value) = self.event.attribute(key) {
            return Some(value);
        }
        let entries = self.entries.as_deref()?;
        let bytes = self.bytes.as_deref().unwrap_or_default();
        let i = entries
            .binary_search_by(|e| at(bytes, e.key).cmp(key.as_bytes()))
            .ok()?;
        Some(text(bytes, entries[i].value))
    }

    fn attribute_count(&self) -> usize {
        self.event.attribute_count() + self.entries.as_ref().map_or(0, Vec::len)
    }
}

impl<M> From<M> for Held<M> {
    fn from(event: M) -> Self {
        Self {
            event,
            bytes: None,
            entries: None,
            entries_len: 0,
        }
    }
}

impl<M: Attributed + Clone + PartialEq> PartialEq for Held<M> {
    /// The same event, however it is held.
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

/// The text at a range checked as UTF-8 when it was found.
fn text(bytes: &[u8], range: (u32, u32)) -> &str {
    std::str::from_utf8(at(bytes, range)).unwrap_or_default()
}

/// An event being read: its fields decoded by prost but for the attributes, which are found in
/// the bytes and left there while each is an entry of key and value only whose key follows the
/// one before (see the [module](self)).
#[derive(Debug)]
struct Reading<M> {
    event: M,
    entries: Option<Vec<Entry>>,
    entries_len: usize,
    /// The event's bytes; the buffer being read ends where they end.
    received: Bytes,
}

impl<M: Attributed> Reading<M> {
    fn new(received: Bytes) -> Self {
        Self {
            event: M::default(),
            entries: Some(Vec::new()),
            entries_len: 0,
            received,
        }
    }

    fn into_held(self) -> Held<M> {
        Held {
            event: self.event,
            bytes: Some(self.received),
            entries: self.entries,
            entries_len: self.entries_len,
        }
    }

    /// The entry at the start of `buf` and its length with the length prefix, when it is an
    /// entry of key and value only, both UTF-8, whose key follows the last one found; `buf` is
    /// not advanced.
    fn entry(received: &[u8], last: Option<&Entry>, wire_type: WireType, buf: &impl Buf) -> Option<(Entry, usize)> {
        if wire_type != WireType::LengthDelimited {
            return None;
        }
        let chunk = buf.chunk();
        if chunk.len() != buf.remaining() {
            return None;
        }
        // Offset in the received bytes of the start of `chunk`.
        let base = received.len().checked_sub(chunk.len())?;
        let mut rest = chunk;
        let len = usize::try_from(encoding::decode_varint(&mut rest).ok()?).ok()?;
        let mut body = rest.get(..len)?;
        // Keys and values are nearly always short ASCII, and then so is the whole entry (its
        // tags and lengths are single bytes below 0x80): one check of it covers both texts.
        let ascii = body.is_ascii();
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
            if !ascii {
                std::str::from_utf8(text).ok()?;
            }
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
        if let Some(last) = last
            && at(received, last.key) >= at(received, entry.key)
        {
            return None;
        }
        Some((entry, chunk.len() - rest.len() + len))
    }
}

impl<M: Attributed> Message for Reading<M> {
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
        if tag == M::ATTRIBUTES
            && let Some(entries) = self.entries.as_mut()
        {
            // In place: taking the list out and putting it back for every entry costs more
            // than the entry's own reading.
            if let Some((entry, len)) = Self::entry(&self.received, entries.last(), wire_type, buf) {
                entries.push(entry);
                buf.advance(len);
                self.entries_len += encoding::key_len(tag) + len;
                return Ok(());
            }
            // From here on, prost's reading.
            let entries = self.entries.take().unwrap_or_default();
            let map = self.event.attribute_map_mut();
            for entry in &entries {
                let key = String::from_utf8_lossy(at(&self.received, entry.key)).into_owned();
                let value = String::from_utf8_lossy(at(&self.received, entry.value)).into_owned();
                map.insert(key, value);
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
        self.entries_len = 0;
    }
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
