//! The re-attribution log: an append-only file of degraded batches plus a cursor file.
//!
//! Each record is `[length: u32 LE][crc32: u32 LE][AttributeRequest]` (events and trace
//! context). An append is fsynced before the detector's batch is acknowledged, so an
//! acknowledged degraded event survives a crash. The cursor (offset of the first record not yet
//! re-attributed) is replaced atomically (write, fsync, rename). On open, a torn or corrupt
//! tail, which only a crash during an append can leave, is cut off: those batches were never
//! acknowledged and their detectors resend them. When the cursor reaches the end the file is
//! truncated, so the log only grows while attribution is away. Its size is bounded by
//! `max_bytes`; what happens beyond is the caller's policy.
//!
//! The directory's `FORMAT` file names this layout ([`FORMAT`]): a log written by a newer
//! release is refused, not misread; one without the file (written before formats were
//! versioned) is version 1, this layout.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use attackmesh::proto::AttributeRequest;
use prost::Message;
use tokio::sync::Notify;

use crate::{error::Error, metrics::METRICS};

/// The layout of the re-attribution log directory: version 1 is the record format above, in
/// `reattribute.log`, with the `reattribute.cursor` file.
pub(crate) const FORMAT: attackmesh_runtime::format::Format = attackmesh_runtime::format::Format {
    name: "attackmesh-reattribution-log",
    current: 1,
};
const LOG_FILE: &str = "reattribute.log";
const CURSOR_FILE: &str = "reattribute.cursor";
const HEADER: u64 = 8;
/// Largest record accepted when reading back (a corrupt length must not allocate gigabytes).
const MAX_RECORD: u64 = 512 * 1024 * 1024;

/// One record read back from the log.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Offset just after the record: the cursor once it is handled.
    pub(crate) next: u64,
    /// The degraded batch.
    pub(crate) batch: AttributeRequest,
}

struct State {
    dir: PathBuf,
    file: File,
    len: u64,
    cursor: u64,
}

/// Shared handle to the log.
#[derive(Clone)]
pub(crate) struct ReattributeLog {
    state: Arc<Mutex<State>>,
    max_bytes: u64,
    notify: Arc<Notify>,
}

impl ReattributeLog {
    /// Opens (or creates) the log in `dir`, cutting off a damaged tail.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        FORMAT.open(dir)?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let cursor = read_cursor(dir)?.min(len);
        let mut state = State {
            dir: dir.to_owned(),
            file,
            len,
            cursor,
        };
        let valid_end = scan(&state.file, cursor, len);
        if valid_end < len {
            tracing::warn!(path = %path.display(), offset = valid_end, dropped_bytes = len - valid_end, "cutting a damaged tail off the re-attribution log");
            state.file.set_len(valid_end).map_err(|e| Error::io(&path, e))?;
            state.file.sync_all().map_err(|e| Error::io(&path, e))?;
            state.len = valid_end;
        }
        METRICS.reattribute_backlog.set((state.len - state.cursor) as i64);
        if state.len > state.cursor {
            tracing::info!(backlog_bytes = state.len - state.cursor, "re-attribution backlog found");
        }
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            max_bytes,
            notify: Arc::new(Notify::new()),
        })
    }

    /// True when `bytes` more still fit under `max_bytes`.
    pub(crate) fn has_room(&self, bytes: u64) -> bool {
        self.state
            .lock()
            .map(|s| s.len + bytes + HEADER <= self.max_bytes)
            .unwrap_or(false)
    }

    /// Bytes waiting to be re-attributed.
    pub(crate) fn backlog(&self) -> u64 {
        self.state.lock().map(|s| s.len - s.cursor).unwrap_or(0)
    }

    /// Appends a batch and forces it to disk.
    pub(crate) async fn append(&self, batch: AttributeRequest) -> Result<(), Error> {
        let state = self.state.clone();
        let payload = batch.encode_to_vec();
        tokio::task::spawn_blocking(move || {
            let mut record = Vec::with_capacity(payload.len() + HEADER as usize);
            record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            record.extend_from_slice(&crc32(&payload).to_le_bytes());
            record.extend_from_slice(&payload);
            let mut s = state.lock().map_err(|_| poisoned())?;
            let path = s.dir.join(LOG_FILE);
            let result = s.file.write_all(&record).and_then(|()| s.file.sync_data());
            if let Err(e) = result {
                // Leave no partial record behind for the next append to follow.
                let len = s.len;
                let _ = s.file.set_len(len);
                return Err(Error::io(&path, e));
            }
            s.len += record.len() as u64;
            METRICS.reattribute_backlog.set((s.len - s.cursor) as i64);
            Ok(())
        })
        .await
        .map_err(|e| Error::Rpc(format!("re-attribution log task failed: {e}")))??;
        self.notify.notify_one();
        Ok(())
    }

    /// The first record not yet handled, waiting until there is one.
    pub(crate) async fn next(&self) -> Result<Entry, Error> {
        loop {
            let notified = self.notify.notified();
            if let Some(entry) = self.read_next().await? {
                return Ok(entry);
            }
            notified.await;
        }
    }

    async fn read_next(&self) -> Result<Option<Entry>, Error> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let s = state.lock().map_err(|_| poisoned())?;
            if s.cursor >= s.len {
                return Ok(None);
            }
            let path = s.dir.join(LOG_FILE);
            match read_record(&s.file, s.cursor, s.len) {
                Some((payload, next)) => {
                    let batch = AttributeRequest::decode(payload.as_slice())
                        .map_err(|e| Error::io(&path, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
                    Ok(Some(Entry { next, batch }))
                }
                None => Err(Error::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "damaged record"),
                )),
            }
        })
        .await
        .map_err(|e| Error::Rpc(format!("re-attribution log task failed: {e}")))?
    }

    /// Marks everything before `next` handled; empties the file once all is handled.
    pub(crate) async fn commit(&self, next: u64) -> Result<(), Error> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = state.lock().map_err(|_| poisoned())?;
            s.cursor = next.min(s.len);
            if s.cursor == s.len && s.len > 0 {
                // Truncate first: a crash before the cursor is rewritten leaves a cursor past the
                // end, which `open` clamps to the (now empty) file.
                let path = s.dir.join(LOG_FILE);
                s.file.set_len(0).map_err(|e| Error::io(&path, e))?;
                s.file.sync_all().map_err(|e| Error::io(&path, e))?;
                s.len = 0;
                s.cursor = 0;
            }
            write_cursor(&s.dir, s.cursor)?;
            METRICS.reattribute_backlog.set((s.len - s.cursor) as i64);
            Ok(())
        })
        .await
        .map_err(|e| Error::Rpc(format!("re-attribution log task failed: {e}")))?
    }
}

fn poisoned() -> Error {
    Error::Rpc("re-attribution log lock poisoned".into())
}

fn read_cursor(dir: &Path) -> Result<u64, Error> {
    let path = dir.join(CURSOR_FILE);
    match File::open(&path) {
        Ok(mut f) => {
            let mut buf = [0u8; 8];
            match f.read_exact(&mut buf) {
                Ok(()) => Ok(u64::from_le_bytes(buf)),
                Err(_) => Ok(0),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn write_cursor(dir: &Path, cursor: u64) -> Result<(), Error> {
    let path = dir.join(CURSOR_FILE);
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    let io = |e| Error::io(&path, e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&cursor.to_le_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Reads the record at `offset`; `None` when it is torn or corrupt.
fn read_record(file: &File, offset: u64, len: u64) -> Option<(Vec<u8>, u64)> {
    if offset + HEADER > len {
        return None;
    }
    let mut header = [0u8; 8];
    file.read_exact_at(&mut header, offset).ok()?;
    let size = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = offset + HEADER + size;
    if size > MAX_RECORD || end > len {
        return None;
    }
    let mut payload = vec![0u8; size as usize];
    file.read_exact_at(&mut payload, offset + HEADER).ok()?;
    (crc32(&payload) == crc).then_some((payload, end))
}

/// Offset where the valid records starting at `from` end.
fn scan(file: &File, from: u64, len: u64) -> u64 {
    let mut at = from;
    while at < len {
        match read_record(file, at, len) {
            Some((_, next)) => at = next,
            None => break,
        }
    }
    at
}

/// CRC-32 (IEEE 802.3), bitwise over a 256-entry table built at compile time.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
