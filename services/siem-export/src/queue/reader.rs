//! The consumer side of a queue: reads synced records in order from the cursor on, reporting
//! damaged regions instead of failing, and waits for appends when it has caught up.
//!
//! The reader reads ahead of the cursor (several batches may be in flight); it never moves the
//! cursor itself — the driver acknowledges with [`super::Queue::ack`] once a sink took a batch.

use std::{fs::File, os::unix::fs::FileExt, path::PathBuf, sync::Arc};

use super::{Queue, record, segment_path};
use crate::{error::Error, sinks::QueuedEvent};

/// Bytes read from a segment file at once when records are read back: one read serves hundreds
/// of records, where reading each record's header and then the record cost two reads apiece.
const READ_CHUNK: usize = 256 << 10;

/// One item read from a queue.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadItem {
    /// A record.
    Event(Arc<QueuedEvent>),
    /// Bytes that are not a valid record; the reader continues after them.
    Damaged {
        /// Segment file.
        segment: PathBuf,
        /// Offset of the damaged bytes in it.
        offset: u64,
        /// How many bytes were skipped.
        len: u64,
        /// What was wrong.
        reason: String,
    },
}

/// The single consumer of a [`Queue`].
#[derive(Debug)]
pub struct QueueReader {
    queue: Arc<Queue>,
    segment: u64,
    file: Option<(File, std::path::PathBuf)>,
    offset: u64,
    skip_below: u64,
    read_back: u64,
    /// Bytes of the current segment read ahead, from offset `chunk_at`.
    chunk: Vec<u8>,
    chunk_at: u64,
}

impl QueueReader {
    pub(super) fn new(queue: Arc<Queue>, segment: u64, skip_below: u64) -> Self {
        Self {
            queue,
            segment,
            file: None,
            offset: 0,
            skip_below,
            read_back: 0,
            chunk: Vec::new(),
            chunk_at: 0,
        }
    }

    /// Events this reader has read back from the segment files, in all, rather than taken as
    /// they were appended: those of an earlier process, and those appended while it was further
    /// behind than the queue keeps in memory (each is decoded a second time).
    pub fn read_back(&self) -> u64 {
        self.read_back
    }

    /// The queue read from.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Reads what is available now, at most `max_events` events and about `max_bytes` bytes
    /// (blocking file I/O). Empty when the reader has caught up.
    pub fn read_available(&mut self, max_events: usize, max_bytes: usize) -> Result<Vec<ReadItem>, Error> {
        let mut out = Vec::new();
        let mut events = 0;
        let mut bytes = 0;
        while events < max_events && bytes < max_bytes {
            let (limit, sealed, next) = {
                let s = self.queue.shared();
                match s.limit(self.segment) {
                    Some((limit, sealed)) => (limit, sealed, s.next_segment(self.segment)),
                    None => (0, true, s.next_segment(self.segment)),
                }
            };
            if self.offset >= limit {
                match (sealed, next) {
                    (true, Some(next)) => {
                        self.segment = next;
                        self.file = None;
                        self.offset = 0;
                        self.chunk.clear();
                        self.chunk_at = 0;
                        continue;
                    }
                    _ => break,
                }
            }
            if let Some((event, len)) = self.queue.take_recent(self.segment, self.offset) {
                self.offset += len;
                if event.seq >= self.skip_below {
                    events += 1;
                    bytes += len as usize;
                    out.push(ReadItem::Event(event));
                }
                continue;
            }
            match self.read_one(limit)? {
                Some(ReadItemRaw::Event(raw)) => {
                    events += 1;
                    self.read_back += 1;
                    bytes += raw.event_len;
                    out.push(ReadItem::Event(raw.into_event()));
                }
                Some(ReadItemRaw::Damaged(damaged)) => out.push(damaged),
                None => {}
            }
        }
        Ok(out)
    }

    /// Waits until something is appended (returns at once if an append happened since the last wait).
    pub async fn wait(&self) {
        self.queue.notified().await;
    }

    fn read_one(&mut self, limit: u64) -> Result<Option<ReadItemRaw>, Error> {
        // The segment's path is built once when it is opened, not formatted for every record.
        let (file, path) = match self.file.take() {
            Some(open) => open,
            None => {
                let path = segment_path(self.queue.dir(), self.segment);
                let file = File::open(&path).map_err(|e| Error::io("open segment", &path, e))?;
                (file, path)
            }
        };
        let result = self.read_record(&file, &path, limit);
        self.file = Some((file, path));
        result
    }

    /// Where the bytes at the reader's offset start in `chunk`, having read at least `want` of
    /// them (fewer where the readable part of the segment, up to `limit`, ends first). Synced
    /// bytes below the limit never change, so what was read ahead stays valid.
    fn read_ahead(&mut self, file: &File, path: &std::path::Path, limit: u64, want: usize) -> Result<usize, Error> {
        let avail = usize::try_from(limit - self.offset).unwrap_or(usize::MAX);
        let want = want.min(avail);
        let end = self.chunk_at + self.chunk.len() as u64;
        if self.chunk_at <= self.offset && self.offset + want as u64 <= end {
            return Ok((self.offset - self.chunk_at) as usize);
        }
        let len = want.max(READ_CHUNK).min(avail);
        if self.chunk.capacity() > 4 * READ_CHUNK && len <= READ_CHUNK {
            // Give back the room a single large record took.
            self.chunk = Vec::new();
        }
        self.chunk.clear();
        self.chunk.resize(len, 0);
        self.chunk_at = self.offset;
        if let Err(e) = file.read_exact_at(&mut self.chunk, self.offset) {
            self.chunk.clear();
            return Err(Error::io("read segment", path, e));
        }
        Ok(0)
    }

    fn read_record(&mut self, file: &File, path: &std::path::Path, limit: u64) -> Result<Option<ReadItemRaw>, Error> {
        let avail = limit - self.offset;
        let start = self.read_ahead(file, path, limit, record::HEADER)?;
        let header = &self.chunk[start..(start + record::HEADER).min(self.chunk.len())];
        let len = match record::parse(header) {
            record::Frame::Corrupt(reason) => return self.damaged(file, path, limit, reason).map(Some),
            _ if header.len() < record::HEADER => {
                return self.damaged(file, path, limit, "truncated record").map(Some);
            }
            _ => u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize,
        };
        if (record::HEADER + len) as u64 > avail {
            return self
                .damaged(file, path, limit, "record runs past the segment end")
                .map(Some);
        }
        let start = self.read_ahead(file, path, limit, record::HEADER + len)?;
        let whole = &self.chunk[start..start + record::HEADER + len];
        match record::parse(whole) {
            record::Frame::Record { end } => {
                let entry = record::decode(&whole[record::HEADER..end]);
                let at = self.offset;
                self.offset += end as u64;
                match entry {
                    Ok(entry) if entry.event.is_some() => {
                        if entry.seq < self.skip_below {
                            return Ok(None);
                        }
                        Ok(Some(ReadItemRaw::Event(Box::new(RawEvent { entry, event_len: end }))))
                    }
                    _ => Ok(Some(ReadItemRaw::Damaged(ReadItem::Damaged {
                        segment: path.to_owned(),
                        offset: at,
                        len: end as u64,
                        reason: "record does not decode as a queue entry".into(),
                    }))),
                }
            }
            record::Frame::Corrupt(reason) => self.damaged(file, path, limit, reason).map(Some),
            record::Frame::Incomplete => self.damaged(file, path, limit, "truncated record").map(Some),
        }
    }

    /// Skips to the next valid record (or the segment's readable end) and describes what was skipped.
    fn damaged(&mut self, file: &File, path: &std::path::Path, limit: u64, reason: &str) -> Result<ReadItemRaw, Error> {
        let mut rest = vec![0u8; (limit - self.offset) as usize];
        file.read_exact_at(&mut rest, self.offset)
            .map_err(|e| Error::io("read segment", path, e))?;
        let skip = record::resync(&rest).unwrap_or(rest.len()) as u64;
        let at = self.offset;
        self.offset += skip;
        tracing::warn!(
            sink = self.queue.name(),
            segment = %path.display(),
            offset = at,
            bytes = skip,
            reason,
            "skipped damaged queue bytes"
        );
        Ok(ReadItemRaw::Damaged(ReadItem::Damaged {
            segment: path.to_owned(),
            offset: at,
            len: skip,
            reason: reason.to_owned(),
        }))
    }
}

struct RawEvent {
    entry: record::QueueEntry,
    event_len: usize,
}

impl RawEvent {
    fn into_event(self) -> Arc<QueuedEvent> {
        let e = self.entry;
        Arc::new(QueuedEvent {
            seq: e.seq,
            event: Arc::new(e.event.unwrap_or_default().into()),
            trace_context: Arc::new(e.trace_context),
            enqueued_at_micros: e.enqueued_at_micros,
            compact_for: (!e.compact_for_attack_version.is_empty()).then(|| e.compact_for_attack_version.into()),
        })
    }
}

enum ReadItemRaw {
    Event(Box<RawEvent>),
    Damaged(ReadItem),
}
