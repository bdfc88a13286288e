//! The file sink: appends lines, syncs, rotates by size and prunes old rotations; skips events
//! it already wrote (same `event_id` and `revision`, among the last `dedup_ids`).
//!
//! Writes run on the blocking pool. A failed write or sync is retried by the driver (after the
//! file is reopened). What was written is recorded before the lines go out (see
//! [`super::delivered`]), so a resend after a crash, or after a lost acknowledgement upstream,
//! is recognised and not written twice.
//!
//! A batch is encoded before it takes the file, so with two batches in flight one is encoded
//! while the other waits for its syncs (two per batch: the record, then the lines), and the
//! sink keeps up with a stream it would otherwise fall behind. Batches still reach the file
//! in the order they were sent.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

use attackmesh::held::EventView;
use attackmesh_attack::Kb;
use foldhash::{HashMap, HashMapExt};
use futures::future::BoxFuture;

use super::{
    FileSinkConfig, PageCache,
    delivered::{Delivered, Line},
    encode,
};
use crate::{
    error::Error,
    queue::lock,
    sinks::{ItemOutcome, QueuedEvent, Sink},
};

/// The file sink.
pub struct FileSink {
    config: FileSinkConfig,
    path: PathBuf,
    delivered_log: PathBuf,
    state: Arc<Mutex<State>>,
    /// Buffers batches are encoded in, kept between batches (up to [`KEEP_BUFFER_BYTES`]
    /// each): a fresh buffer for every batch grew by reallocation and page faults, each batch
    /// again.
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Dropped when the last batch sent has been written (or has failed): the next batch
    /// waits for it before it takes the file.
    last: Mutex<Option<oneshot::Receiver<()>>>,
    /// Writes compact events' details from here.
    kb: Option<Arc<Kb>>,
}

/// The open file (with its length) and the record of what was written, both opened on the
/// first write.
#[derive(Default)]
struct State {
    file: Option<(File, u64)>,
    delivered: Option<Delivered>,
}

/// Largest encoding buffer kept for the next batch; one grown past it by a batch of very
/// large events is given back.
const KEEP_BUFFER_BYTES: usize = 8 << 20;
/// Most encoding buffers kept: one per batch in flight, as the driver sends them.
const KEEP_BUFFERS: usize = 4;

impl FileSink {
    /// Builds the sink; the file and `delivered_log` (the record of written event ids) are
    /// opened on first write.
    pub fn new(config: &FileSinkConfig, delivered_log: PathBuf) -> Result<Self, Error> {
        let path = config
            .path
            .clone()
            .ok_or_else(|| Error::Config("file.path is not set".into()))?;
        Ok(Self {
            config: config.clone(),
            path,
            delivered_log,
            state: Arc::default(),
            buffers: Arc::default(),
            last: Mutex::default(),
            kb: None,
        })
    }

    /// Writes compact events by reference to `kb`: their details are looked up as the lines are
    /// written, never filled into the event.
    pub fn with_kb(mut self, kb: Arc<Kb>) -> Self {
        self.kb = Some(kb);
        self
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(path: &Path) -> Result<(File, u64), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let mut len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    // A line torn by a crash is ended, so the next line stands on its own.
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(|e| Error::io("read", path, e))?;
        if last[0] != b'\n' {
            file.write_all(b"\n").map_err(|e| Error::io("write", path, e))?;
            len += 1;
        }
    }
    Ok((file, len))
}

/// What one batch needs on the blocking pool.
struct Batch<'a> {
    config: &'a FileSinkConfig,
    path: &'a Path,
    delivered_log: &'a Path,
    kb: Option<&'a Kb>,
}

/// A batch encoded: its lines one after the other, and for each, the index of its event and
/// its length. Events resent within the batch (an id at a revision it already has) have none.
struct Encoded {
    buf: Vec<u8>,
    lines: Vec<(usize, usize)>,
}

impl Batch<'_> {
    /// Encodes the lines of `events` into `out`, each id at most once at each revision.
    fn encode(&self, events: &[Arc<QueuedEvent>], out: &mut Encoded) {
        let Encoded { buf, lines } = out;
        buf.reserve(events.len() * 1024);
        lines.reserve(events.len());
        let dedup = self.config.dedup_ids > 0;
        // Revisions encoded by this batch so far: a copy inside the batch is a resend too.
        let mut in_batch: HashMap<&str, u32> = HashMap::with_capacity(if dedup { events.len() } else { 0 });
        for (i, ev) in crate::sinks::util::warm::warmed(events).enumerate() {
            if dedup {
                let (id, revision) = (ev.event.event().event_id.as_str(), ev.event.event().revision);
                if in_batch.get(id).is_some_and(|r| *r >= revision) {
                    continue;
                }
                in_batch.insert(id, revision);
            }
            let start = buf.len();
            let (ev, compact) = ev.by_reference(self.kb);
            encode::write_line(&*ev.event, self.config.shape, self.config.original, compact, buf);
            lines.push((i, buf.len() - start));
        }
    }

    /// Writes the lines `encoded` holds of `events` (less those of events the record shows
    /// written, a resend) and syncs them, recording them first.
    fn write(&self, state: &Mutex<State>, events: &[Arc<QueuedEvent>], encoded: &mut Encoded) -> Result<(), Error> {
        let mut state = lock(state);
        let State { file: slot, delivered } = &mut *state;
        if slot.is_none() {
            *slot = Some(open(self.path)?);
        }
        let Some((file, len)) = slot.as_mut() else {
            return Ok(());
        };
        if delivered.is_none() && self.config.dedup_ids > 0 {
            *delivered = Some(Delivered::open(
                self.delivered_log,
                self.path,
                *len,
                self.config.dedup_ids,
            )?);
        }
        // The lines to record, when the sink keeps a record.
        let mut record: Vec<Line<'_>> = Vec::new();
        if let Some(d) = delivered.as_ref() {
            record.reserve(encoded.lines.len());
            // The buffer without the lines of events already written, once one is found.
            let mut kept: Option<Vec<u8>> = None;
            let mut at = 0;
            for &(i, line_len) in &encoded.lines {
                let (id, revision) = (
                    events[i].event.event().event_id.as_str(),
                    events[i].event.event().revision,
                );
                let line = &encoded.buf[at..at + line_len];
                at += line_len;
                if d.holds(id, revision) {
                    kept.get_or_insert_with(|| encoded.buf[..at - line_len].to_vec());
                    continue;
                }
                if let Some(kept) = kept.as_mut() {
                    kept.extend_from_slice(line);
                }
                record.extend(Line::new(id, revision, line_len));
            }
            if let Some(kept) = kept {
                encoded.buf = kept;
            }
        }
        let buf = &encoded.buf;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(d) = delivered.as_mut() {
            d.begin(*len, &record)?;
        }
        let result = file.write_all(buf).and_then(|()| file.sync_data());
        if let Err(e) = result {
            // Reopen next time; a partial line is completed by nothing, so start a fresh line.
            let _ = file.write_all(b"\n");
            *slot = None;
            return Err(Error::io("write", self.path, e));
        }
        if self.config.page_cache == PageCache::Drop {
            drop_cached(file, *len, buf.len());
        }
        *len += buf.len() as u64;
        let rotate = *len >= self.config.rotate_bytes;
        if let Some(d) = delivered.as_mut() {
            d.complete(*len, &record)?;
            if rotate {
                d.sync()?;
            }
        }
        if rotate {
            *slot = None;
            rotate_file(self.config, self.path)?;
        }
        Ok(())
    }
}

/// Asks the kernel to drop from its page cache the `len` bytes just written at `at` and synced,
/// with the page they start in (its head was synced with the batch before). The page the
/// batch ends in stays, as the kernel keeps partial pages: the next batch writes into it, and
/// had it been dropped, would read it back from disk first. Advice only: an error (a pipe or
/// a device given as the path) changes nothing.
#[cfg(target_os = "linux")]
fn drop_cached(file: &File, at: u64, len: usize) {
    let page = rustix::param::page_size() as u64;
    let start = at - at % page;
    let _ = rustix::fs::fadvise(
        file,
        start,
        std::num::NonZeroU64::new(at + len as u64 - start),
        rustix::fs::Advice::DontNeed,
    );
}

#[cfg(not(target_os = "linux"))]
fn drop_cached(_file: &File, _at: u64, _len: usize) {}

fn rotate_file(config: &FileSinkConfig, path: &Path) -> Result<(), Error> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let target = PathBuf::from(format!("{}.{stamp}", path.display()));
    std::fs::rename(path, &target).map_err(|e| Error::io("rotate", path, e))?;
    if config.keep_files == 0 {
        return Ok(());
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{name}.");
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .map(|e| e.path())
        .collect();
    rotated.sort();
    let excess = rotated.len().saturating_sub(config.keep_files);
    for old in &rotated[..excess] {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

impl Sink for FileSink {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let batch: Vec<Arc<QueuedEvent>> = events.to_vec();
            let (config, path, log, state, buffers, kb) = (
                self.config.clone(),
                self.path.clone(),
                self.delivered_log.clone(),
                self.state.clone(),
                self.buffers.clone(),
                self.kb.clone(),
            );
            // This batch's turn at the file comes when the one sent before it is done; dropping
            // `done` (written, failed, or the task gone) gives the next batch its turn.
            let (done, turn) = oneshot::channel::<()>();
            let before = lock(&self.last).replace(turn);
            let result = tokio::task::spawn_blocking(move || {
                let batch_io = Batch {
                    config: &config,
                    path: &path,
                    delivered_log: &log,
                    kb: kb.as_deref(),
                };
                let mut encoded = Encoded {
                    buf: lock(&buffers).pop().unwrap_or_default(),
                    lines: Vec::new(),
                };
                batch_io.encode(&batch, &mut encoded);
                if let Some(before) = before {
                    // An error only says the sender is gone: the batch before is done either way.
                    let _ = before.blocking_recv();
                }
                let result = batch_io.write(&state, &batch, &mut encoded);
                drop(done);
                let mut buf = encoded.buf;
                let mut kept = lock(&buffers);
                if buf.capacity() <= KEEP_BUFFER_BYTES && kept.len() < KEEP_BUFFERS {
                    buf.clear();
                    kept.push(buf);
                }
                result
            })
            .await;
            let outcome = match result {
                Ok(Ok(())) => ItemOutcome::Delivered,
                Ok(Err(e)) => ItemOutcome::Retry(e.to_string()),
                Err(e) => ItemOutcome::Retry(format!("file write task failed: {e}")),
            };
            vec![outcome; events.len()]
        })
    }

    fn writes_compact(&self) -> bool {
        self.kb.is_some()
    }
}
