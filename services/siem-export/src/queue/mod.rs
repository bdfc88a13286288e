//! One sink's durable queue: append-only segment files of checksummed records in
//! `<data_dir>/queues/<sink>/`, and a persisted consumer cursor.
//!
//! - Appends go to the active segment (`<first seq>.seg`, zero-padded); a full segment is sealed
//!   and a new one started. With [`FsyncPolicy::Batch`] each append is `fsync`ed before it
//!   returns, so a caller may acknowledge what it appended.
//! - The consumer ([`QueueReader`]) sees only appended-and-synced records, reads ahead of the
//!   cursor, and [`Queue::ack`]s in order; fully delivered segments are deleted.
//! - Records this process appended are also kept decoded, up to 16 MiB of records per queue, so
//!   a reader that keeps up takes them from memory instead of reading and decoding them back; a
//!   reader that falls behind, or starts after a restart, reads the segment files. Both give the
//!   same events in the same order.
//! - Recovery on open truncates a torn tail (a crash mid-append), keeps damaged records in the
//!   middle for the reader to report and skip, and never panics on bad bytes.
//!
//! - The directory's `FORMAT` file names the layout ([`FORMAT`]); a queue written by a newer
//!   release is refused, not misread, and one without the file (written before formats were
//!   versioned) is version 1, which version 2 (the layout described here) reads as it stands.
//!
//! This module knows nothing of sinks or gRPC; it never drops a record silently (the reader
//! reports damaged regions so the caller can dead-letter them).

mod reader;
pub(crate) mod record;
mod recover;

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;

pub use reader::{QueueReader, ReadItem};
pub use record::{EncodedEvent, ReceivedEvent};

use crate::{config::FsyncPolicy, error::Error, sinks::QueuedEvent};

/// The layout of queue directories this release reads and writes: version 1 is checksummed
/// records (`AMQ1` marker, length, CRC-32C, protobuf entry) in `.seg` files with a `cursor`
/// file; version 2 is the same, its entries possibly marked compact (`QueueEntry` field 5), so
/// version 1 data is version 2 data as it stands and is marked 2 on open. A release that reads
/// only version 1 would write a compact event without its ATT&CK details, so it must refuse
/// version 2.
pub const FORMAT: attackmesh_runtime::format::Format = attackmesh_runtime::format::Format {
    name: "attackmesh-queue",
    current: 2,
};
/// Name of the cursor file in a queue directory.
const CURSOR: &str = "cursor";
/// Extension of segment files.
const SEGMENT_EXT: &str = "seg";
/// Most framed bytes of appended records kept decoded for the reader: about 5,000 real detector
/// events, enough that a sink writing batches of 1,000 behind a stream of 500-event Export
/// batches takes them from memory; at 4 MiB it fell behind at full load and read and decoded
/// most events a second time from disk (siem-export 37.6 → 27.1 µs per real Suricata event).
/// The bound counts framed bytes; held decoded, events take more, up to about four times as
/// much for small ones (an `EnrichedEvent` is over a kilobyte before its strings): with the
/// benchmark's generated events a full window added 25–70 MiB to siem-export's peak resident
/// memory. While a sink is down its window stays full: that much memory is held per queue.
const RECENT_MAX_BYTES: u64 = 16 << 20;

/// Size bounds and durability of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Most bytes on disk.
    pub max_bytes: u64,
    /// Segment roll size.
    pub segment_bytes: u64,
    /// When appends are synced.
    pub fsync: FsyncPolicy,
}

/// Counters of one queue, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records appended and not yet acknowledged.
    pub depth: u64,
    /// Bytes of segment files on disk.
    pub bytes: u64,
    /// Enqueue time (µs since the epoch) of the oldest unacknowledged record, when known.
    pub oldest_micros: Option<i64>,
}

struct Writer {
    file: File,
    path: PathBuf,
    first_seq: u64,
    len: u64,
    next_seq: u64,
}

/// A record appended by this process, decoded, at its place in the segment files.
struct RecentRecord {
    segment: u64,
    offset: u64,
    len: u64,
    event: Arc<QueuedEvent>,
}

/// Appended records the reader has not reached yet, oldest first.
#[derive(Default)]
struct Recent {
    records: VecDeque<RecentRecord>,
    bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// Segment first seq → bytes (the active segment's entry is its synced length).
    segments: BTreeMap<u64, u64>,
    /// First seq of the active segment.
    active: u64,
    /// Next seq to be appended (everything below is synced).
    head: u64,
    /// Next seq to deliver (everything below is acknowledged).
    acked: u64,
    bytes: u64,
    oldest_micros: Option<i64>,
}

/// A sink's durable queue; cheap to share behind an `Arc`.
pub struct Queue {
    name: String,
    dir: PathBuf,
    settings: QueueSettings,
    writer: Mutex<Writer>,
    shared: Mutex<Shared>,
    notify: Notify,
    reader_taken: Mutex<Option<(u64, u64)>>,
    syncs: std::sync::atomic::AtomicU64,
    recent: Mutex<Recent>,
    /// Tests: the error every append fails with, as a file system would answer.
    #[cfg(test)]
    pub(crate) fail_appends: Mutex<Option<std::io::ErrorKind>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What recovery found when a queue was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the active segment (a torn append).
    pub truncated_bytes: u64,
    /// Records waiting for delivery.
    pub depth: u64,
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir`, recovering from a crash.
    pub fn open(name: &str, dir: &Path, settings: QueueSettings) -> Result<(Arc<Queue>, Recovery), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create queue directory", dir, e))?;
        if FORMAT.open(dir)? < FORMAT.current {
            FORMAT.mark_current(dir)?;
        }
        let found = recover::recover(dir, settings)?;
        let path = segment_path(dir, found.active);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("open segment", &path, e))?;
        let writer = Writer {
            file,
            path,
            first_seq: found.active,
            len: found.active_len,
            next_seq: found.head,
        };
        let mut segments = found.sealed;
        segments.insert(found.active, found.active_len);
        let bytes = segments.values().sum();
        let recovery = Recovery {
            truncated_bytes: found.truncated,
            depth: found.head.saturating_sub(found.acked),
        };
        let shared = Shared {
            segments,
            active: found.active,
            head: found.head,
            acked: found.acked,
            bytes,
            oldest_micros: found.oldest_micros,
        };
        let start = found.reader_start;
        let queue = Queue {
            name: name.to_owned(),
            dir: dir.to_owned(),
            settings,
            writer: Mutex::new(writer),
            shared: Mutex::new(shared),
            notify: Notify::new(),
            reader_taken: Mutex::new(Some(start)),
            syncs: Default::default(),
            recent: Mutex::default(),
            #[cfg(test)]
            fail_appends: Mutex::default(),
        };
        Ok((Arc::new(queue), recovery))
    }

    /// The sink this queue belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The one consumer of this queue, positioned at the cursor; `None` after the first call.
    pub fn reader(self: &Arc<Self>) -> Option<QueueReader> {
        let start = lock(&self.reader_taken).take()?;
        Some(QueueReader::new(self.clone(), start.0, start.1))
    }

    /// The size bound.
    pub fn max_bytes(&self) -> u64 {
        self.settings.max_bytes
    }

    /// Whether `bytes` more fit within the size bound.
    pub fn fits(&self, bytes: u64) -> bool {
        let s = lock(&self.shared);
        s.bytes + bytes <= self.settings.max_bytes
    }

    /// How many times appends were synced to disk since the queue was opened.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Current counters.
    pub fn stats(&self) -> QueueStats {
        let s = lock(&self.shared);
        let depth = s.head.saturating_sub(s.acked);
        QueueStats {
            depth,
            bytes: s.bytes,
            oldest_micros: if depth == 0 { None } else { s.oldest_micros },
        }
    }

    /// Appends events (blocking I/O; call from a blocking thread) and, with the batch fsync
    /// policy, syncs them before returning. Returns the sequence numbers taken.
    pub fn append(&self, events: &[EncodedEvent], now_micros: i64) -> Result<std::ops::Range<u64>, Error> {
        let mut w = lock(&self.writer);
        let was_empty = {
            let s = lock(&self.shared);
            s.head <= s.acked
        };
        let first = w.next_seq;
        let mut buf_first = w.next_seq;
        let mut buf = Vec::with_capacity(events.iter().map(EncodedEvent::framed_len).sum());
        let mut placed = Vec::with_capacity(events.len());
        let result = (|| {
            for ev in events {
                let mut before = buf.len();
                ev.frame_into(w.next_seq, &mut buf);
                let used = w.len + before as u64;
                if used > 0 && used + (buf.len() - before) as u64 > self.settings.segment_bytes {
                    // Roll before this record: write what precedes it, seal, start a new segment.
                    let tail = buf.split_off(before);
                    self.write_out(&mut w, &buf)?;
                    self.roll(&mut w)?;
                    buf = tail;
                    buf_first = w.next_seq;
                    before = 0;
                }
                // `buf` is written at the segment's current end.
                placed.push(RecentRecord {
                    segment: w.first_seq,
                    offset: w.len + before as u64,
                    len: (buf.len() - before) as u64,
                    event: ev.queued(w.next_seq),
                });
                w.next_seq += 1;
            }
            self.write_out(&mut w, &buf)
        })();
        if let Err(e) = result {
            // Leave no half-written record behind and give the unwritten numbers back.
            let len = w.len;
            let _ = w.file.set_len(len);
            w.next_seq = buf_first;
            return Err(e);
        }
        self.remember(placed);
        self.publish(&w, was_empty, now_micros);
        Ok(first..w.next_seq)
    }

    /// Keeps appended records for the reader while they fit in [`RECENT_MAX_BYTES`]; the rest it
    /// reads from disk.
    fn remember(&self, placed: Vec<RecentRecord>) {
        let mut recent = lock(&self.recent);
        for record in placed {
            if recent.bytes + record.len > RECENT_MAX_BYTES {
                break;
            }
            recent.bytes += record.len;
            recent.records.push_back(record);
        }
    }

    /// The record at `offset` of segment `segment`, with its framed length, if it is still held
    /// decoded. Records before that position were read from disk instead and are dropped.
    pub(crate) fn take_recent(&self, segment: u64, offset: u64) -> Option<(Arc<QueuedEvent>, u64)> {
        let mut recent = lock(&self.recent);
        while let Some(front) = recent.records.front() {
            if (front.segment, front.offset) > (segment, offset) {
                return None;
            }
            let front = recent.records.pop_front()?;
            recent.bytes -= front.len;
            if (front.segment, front.offset) == (segment, offset) {
                return Some((front.event, front.len));
            }
        }
        None
    }

    fn write_out(&self, w: &mut Writer, buf: &[u8]) -> Result<(), Error> {
        if buf.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if let Some(kind) = *lock(&self.fail_appends) {
            return Err(Error::io("append to", &w.path, kind.into()));
        }
        w.file.write_all(buf).map_err(|e| Error::io("append to", &w.path, e))?;
        if self.settings.fsync == FsyncPolicy::Batch {
            w.file.sync_data().map_err(|e| Error::io("fsync", &w.path, e))?;
            self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        w.len += buf.len() as u64;
        Ok(())
    }

    fn roll(&self, w: &mut Writer) -> Result<(), Error> {
        let path = segment_path(&self.dir, w.next_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("create segment", &path, e))?;
        if self.settings.fsync == FsyncPolicy::Batch {
            sync_dir(&self.dir)?;
        }
        {
            let mut s = lock(&self.shared);
            s.segments.insert(w.first_seq, w.len);
            s.segments.insert(w.next_seq, 0);
            s.active = w.next_seq;
            s.head = w.next_seq;
            s.bytes = s.segments.values().sum();
        }
        *w = Writer {
            file,
            path,
            first_seq: w.next_seq,
            len: 0,
            next_seq: w.next_seq,
        };
        Ok(())
    }

    fn publish(&self, w: &Writer, was_empty: bool, now_micros: i64) {
        let mut s = lock(&self.shared);
        if was_empty {
            s.oldest_micros = Some(now_micros);
        }
        s.head = w.next_seq;
        s.active = w.first_seq;
        s.segments.insert(w.first_seq, w.len);
        s.bytes = s.segments.values().sum();
        drop(s);
        self.notify.notify_one();
    }

    /// Acknowledges delivery of everything below `next` (blocking I/O): persists the cursor and
    /// deletes segments that hold nothing undelivered. `oldest_micros` is the enqueue time of the
    /// record at `next` when the caller knows it.
    pub fn ack(&self, next: u64, oldest_micros: Option<i64>) -> Result<(), Error> {
        let doomed = {
            let mut s = lock(&self.shared);
            if next <= s.acked {
                return Ok(());
            }
            s.acked = next.min(s.head);
            s.oldest_micros = oldest_micros;
            let firsts: Vec<u64> = s.segments.keys().copied().collect();
            let mut doomed = Vec::new();
            for pair in firsts.windows(2) {
                if pair[1] <= s.acked && pair[0] != s.active {
                    doomed.push(pair[0]);
                }
            }
            (s.acked, doomed)
        };
        // Delivered segments go first: on a full disk that is what makes room for the cursor.
        // A cursor left behind them is moved up to the first segment on open.
        for first in doomed.1 {
            let path = segment_path(&self.dir, first);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io("delete segment", &path, e));
            }
            let mut s = lock(&self.shared);
            s.segments.remove(&first);
            s.bytes = s.segments.values().sum();
        }
        write_cursor(&self.dir, doomed.0, self.settings.fsync)
    }

    /// Sets the oldest-record time when the consumer learns it (e.g. on reading at the cursor).
    pub(crate) fn note_oldest(&self, seq: u64, micros: i64) {
        let mut s = lock(&self.shared);
        if seq == s.acked && s.oldest_micros.is_none() {
            s.oldest_micros = Some(micros);
        }
    }

    pub(crate) fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Shared {
    /// `(limit, sealed)` of the segment starting at `first`: bytes readable and whether it
    /// will grow; `None` if the segment is gone.
    pub(crate) fn limit(&self, first: u64) -> Option<(u64, bool)> {
        self.segments.get(&first).map(|len| (*len, first != self.active))
    }

    /// First seq of the segment after `first`.
    pub(crate) fn next_segment(&self, first: u64) -> Option<u64> {
        self.segments.range(first + 1..).next().map(|(k, _)| *k)
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the queue state is
/// only changed in whole steps, so it is consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{SEGMENT_EXT}"))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Writes the cursor atomically: a temporary file renamed over the old one. It is not synced:
/// a cursor lost to a power cut only means redelivery from an older position (sinks dedup by
/// event id), while syncing it after every acknowledged batch would cap delivery at the disk's
/// sync rate. A process crash never loses it (the rename is in the page cache).
fn write_cursor(dir: &Path, next: u64, _fsync: FsyncPolicy) -> Result<(), Error> {
    let tmp = dir.join(format!("{CURSOR}.tmp"));
    let path = dir.join(CURSOR);
    let mut bytes = next.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&next.to_le_bytes()).to_le_bytes());
    let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(&bytes).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename cursor", &path, e))
}

/// Reads the cursor; `None` when missing or damaged (delivery then restarts at the oldest record).
fn read_cursor(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join(CURSOR)).ok()?;
    if bytes.len() != 12 {
        return None;
    }
    let next = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    (crc32c::crc32c(&next.to_le_bytes()) == crc).then_some(next)
}

#[cfg(test)]
mod tests;
