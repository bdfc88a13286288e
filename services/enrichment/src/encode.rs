//! Enriched events encoded once, as they are made, into the bytes export receives.
//!
//! An `ExportRequest`'s `repeated EnrichedEvent events = 2` and a `repeated bytes` field 2 are
//! the same on the wire (both length-delimited), so a batch of events encoded one by one and sent
//! as [`EncodedExport`](attackmesh::codec::EncodedExport) is, byte for byte, the `ExportRequest` of those events. Encoding each
//! event right after it is made lets it go while its memory is still warm, and spares prost's
//! re-walking of every event (and its attributes map) for each length prefix of a whole batch.
//! This module decides nothing about what an event holds; [`attackmesh::enriched_event`] does.

use attackmesh::proto::EnrichedEvent;
use prost::{
    Message,
    bytes::{Bytes, BytesMut},
};

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
        let done = self.events.len();
        let mean = self.written.checked_div(done).unwrap_or(FIRST_EVENT_BYTES).max(64);
        if self.buf.capacity() < mean * 2 {
            // Room for the rest of the batch at the mean size so far, so a batch takes few buffers.
            // An event larger than what is left grows the buffer as it is written.
            let left = self.expected.saturating_sub(done).max(1);
            let want = mean.saturating_mul(left) + mean / 4;
            self.buf.reserve(want.min(MAX_BUFFER_BYTES));
        }
        event.encode_raw(&mut self.buf);
        self.written += self.buf.len();
        self.events.push(self.buf.split().freeze());
    }

    /// The encoded events, in the order pushed.
    pub fn finish(self) -> Vec<Bytes> {
        self.events
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
