//! Reading one file on a blocking thread: parse records from a start point, report each as an
//! [`Item`] with its offsets, and in follow mode wait for more data, noticing rotation and
//! truncation. The channel it sends on is bounded, so a slow ingest service slows the reading
//! down instead of filling memory.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use attackmesh::{
    formats::{Format, ParseState, Reader, open_path, open_path_at, recycle},
    proto::DetectionEvent,
};
use prost::{
    Message as _,
    bytes::{Bytes, BytesMut},
};
use tokio::sync::mpsc;

use super::checkpoint::{Checkpoint, Checkpoints};
use crate::error::Error;

/// What the reader of file `file` found.
#[derive(Debug)]
pub(crate) enum Item {
    /// A record that parsed to an event, encoded here so the event is built, encoded and freed
    /// on the reading thread and only its bytes cross to the sender.
    Event {
        file: usize,
        line: u64,
        end_offset: u64,
        event: Bytes,
    },
    /// A record that did not parse.
    Rejected {
        file: usize,
        line: u64,
        end_offset: u64,
        reason: String,
    },
    /// A line without an event (blank, header); `state` is the parser state after it (Zeek).
    Skip {
        file: usize,
        line: u64,
        end_offset: u64,
        state: Option<ParseState>,
    },
    /// No more data for now (follow mode): flush what is pending.
    Idle { file: usize },
    /// The file was replaced or truncated; records from here on belong to `inode` from offset 0.
    Reset { file: usize, inode: u64 },
    /// The file is finished (or could not be read further).
    Done { file: usize, error: Option<String> },
}

/// Where shipping of `path` starts: its checkpoint when it still matches the file, else the start.
pub(crate) fn start_point(path: &Path, checkpoints: Option<&Checkpoints>) -> Result<Checkpoint, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let fresh = Checkpoint {
        path: path.to_owned(),
        inode: meta.ino(),
        offset: 0,
        line: 0,
        state: ParseState::new(path.to_string_lossy()),
    };
    let Some(saved) = checkpoints.map(|c| c.load(path)).transpose()?.flatten() else {
        return Ok(fresh);
    };
    if saved.inode != meta.ino() {
        tracing::info!(path = %path.display(), "file was replaced since its checkpoint; shipping it from the start");
        return Ok(fresh);
    }
    Ok(saved)
}

/// A file to read.
pub(crate) struct Source {
    pub(crate) index: usize,
    pub(crate) path: PathBuf,
    pub(crate) start: Checkpoint,
}

/// Items sent at once: a send per record cost more than the shipper's taking the record in.
/// A chunk goes out when full and whenever the reader is about to wait or stop.
pub(crate) const CHUNK_ITEMS: usize = 64;

/// Reads `source` on a blocking thread until done, `stop` is set, or the receiver is gone.
pub(crate) fn spawn(
    format: Format,
    source: Source,
    follow: bool,
    poll: Duration,
    tx: mpsc::Sender<Vec<Item>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let file = source.index;
        let mut out = Chunks::new(&tx);
        let error = read(format, &source, follow, poll, &mut out, &stop).err();
        out.push(Item::Done { file, error });
        out.flush();
    })
}

/// Items on their way to the shipper, a chunk at a time.
struct Chunks<'a> {
    tx: &'a mpsc::Sender<Vec<Item>>,
    pending: Vec<Item>,
}

impl<'a> Chunks<'a> {
    fn new(tx: &'a mpsc::Sender<Vec<Item>>) -> Self {
        Self {
            tx,
            pending: Vec::with_capacity(CHUNK_ITEMS),
        }
    }

    /// Adds `item`, sending the chunk once full; `false` when the receiver is gone.
    fn push(&mut self, item: Item) -> bool {
        self.pending.push(item);
        self.pending.len() < CHUNK_ITEMS || self.flush()
    }

    /// Sends what is pending (waiting for room); `false` when the receiver is gone.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK_ITEMS));
        self.tx.blocking_send(chunk).is_ok()
    }
}

fn read(
    format: Format,
    source: &Source,
    follow: bool,
    poll: Duration,
    out: &mut Chunks<'_>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let file = source.index;
    let path = &source.path;
    let name = path.to_string_lossy().into_owned();
    let mut start = source.start.clone();
    'open: loop {
        let input = if start.offset == 0 {
            open_path(path)
        } else {
            open_path_at(path, start.offset)
        };
        let input = match input {
            Ok(input) => input,
            Err(e) if start.offset > 0 => {
                tracing::warn!(path = %name, error = %e, "cannot resume at the checkpoint; shipping the file from the start");
                start = Checkpoint {
                    offset: 0,
                    line: 0,
                    state: ParseState::new(&name),
                    ..start
                };
                out.push(Item::Reset {
                    file,
                    inode: start.inode,
                });
                continue 'open;
            }
            Err(e) => return Err(format!("cannot open: {e}")),
        };
        let mut reader = Reader::resume(format, input, &name, start.offset, start.state.clone())
            .with_first_line(start.line + 1)
            .follow(follow);
        let mut encoder = Encoder::default();
        let mut idle_sent = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(record) = reader.next() else {
                if !follow {
                    return Ok(());
                }
                if !idle_sent {
                    idle_sent = true;
                    if !(out.push(Item::Idle { file }) && out.flush()) {
                        return Ok(());
                    }
                }
                std::thread::sleep(poll);
                if let Some(inode) = replaced(path, start.inode, reader.offset()) {
                    tracing::info!(path = %name, "file rotated or truncated; following the new one from its start");
                    start = Checkpoint {
                        path: path.clone(),
                        inode,
                        offset: 0,
                        line: 0,
                        state: ParseState::new(&name),
                    };
                    if !(out.push(Item::Reset { file, inode }) && out.flush()) {
                        return Ok(());
                    }
                    continue 'open;
                }
                continue;
            };
            idle_sent = false;
            let (line, end_offset) = (record.line, record.end_offset);
            let item = match record.result {
                Ok(Some(event)) => {
                    let encoded = encoder.encode(&event);
                    // The parser on this thread writes the next records' attributes into its texts.
                    recycle(event);
                    Item::Event {
                        file,
                        line,
                        end_offset,
                        event: encoded,
                    }
                }
                Ok(None) => Item::Skip {
                    file,
                    line,
                    end_offset,
                    state: (format == Format::Zeek).then(|| reader.state().clone()),
                },
                // A read error ends the stream.
                Err(error) if matches!(error.kind(), attackmesh::formats::ParseError::Io(_)) => {
                    return Err(error.kind().to_string());
                }
                Err(error) => Item::Rejected {
                    file,
                    line,
                    end_offset,
                    reason: error.kind().to_string(),
                },
            };
            if !out.push(item) {
                return Ok(());
            }
        }
    }
}

/// Room taken at once for encoded events: below the allocator's mmap threshold, and enough for
/// dozens of records, so most events cost no allocation of their own.
const BUFFER_BYTES: usize = 64 * 1024;

/// Room left below which a fresh buffer is taken before an event is encoded: more than a real
/// detector event usually takes. A bigger one grows the buffer as it is written.
const MIN_ROOM_BYTES: usize = 16 * 1024;

/// Encodes events into slices of shared buffers; a buffer is freed once the last batch holding
/// one of its events is acknowledged.
#[derive(Default)]
struct Encoder {
    buf: BytesMut,
}

impl Encoder {
    /// The event's length is not worked out beforehand (a second walk over every attribute): a
    /// `BytesMut` grows as it is written to.
    fn encode(&mut self, event: &DetectionEvent) -> Bytes {
        if self.buf.capacity() < MIN_ROOM_BYTES {
            self.buf.reserve(BUFFER_BYTES);
        }
        event.encode_raw(&mut self.buf);
        self.buf.split().freeze()
    }
}

/// The new inode when `path` now names another file, or the same inode when it shrank below
/// `offset` (truncated in place); `None` when it is the same file.
fn replaced(path: &Path, inode: u64, offset: u64) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.ino() != inode {
        return Some(meta.ino());
    }
    // Gzip offsets count decompressed bytes and cannot be compared with the file size.
    let gzip = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut magic = [0u8; 2];
            std::io::Read::read_exact(&mut f, &mut magic).map(|()| magic == [0x1f, 0x8b])
        })
        .unwrap_or(false);
    (!gzip && meta.len() < offset).then_some(inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events small and far bigger than the buffer's room each come out as their own encoding,
    /// whatever was encoded before them.
    #[test]
    fn every_event_is_encoded_whole_whatever_its_size() {
        let event = |n: usize| DetectionEvent {
            event_id: format!("id-{n}"),
            original: "x".repeat(n),
            attributes: (0..n / 1000).map(|i| (format!("k{i}"), "v".repeat(n % 997))).collect(),
            ..DetectionEvent::default()
        };
        let sizes = [
            0,
            10,
            1_500,
            15_000,
            70_000,
            300,
            200_000,
            5,
            BUFFER_BYTES,
            MIN_ROOM_BYTES,
        ];
        let mut encoder = Encoder::default();
        let encoded: Vec<Bytes> = sizes.iter().map(|&n| encoder.encode(&event(n))).collect();
        for (n, bytes) in sizes.iter().zip(&encoded) {
            assert_eq!(
                bytes.as_ref(),
                event(*n).encode_to_vec().as_slice(),
                "event of size {n}"
            );
        }
    }
}
