//! The record of what a file sink has written: the `(event_id, revision)` of its last
//! `dedup_ids` distinct events, so a resent event is not written twice while a higher revision
//! (a re-attribution) is.
//!
//! Kept in memory and in an append-only log, `<data_dir>/delivered/<sink>.log`, that survives a
//! crash at any point. A batch is logged before its lines are written: a header with the file
//! offset it starts at, one record per line with the line's length, and (after the lines are
//! synced) a mark that it is complete. On open, a batch without that mark counts only the lines
//! that reached the file whole, judged by the file's length, so a crash between the two writes
//! neither forgets written lines nor claims unwritten ones. The log is rewritten (compacted) at
//! open and whenever it holds twice the bound. Event ids that could break the log's line format
//! are never recorded (such events are always written).
//!
//! Log lines: `attackmesh-delivered 1 <output path as JSON>` (header), `s <rev> <id>` (written,
//! from a compaction), `b <offset>` (batch starts), `w <rev> <len> <id>` (one line of it),
//! `@ <len>` (batch complete, file length after it).

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    hash::BuildHasher,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use foldhash::fast::RandomState;
use hashbrown::{HashTable, hash_table::Entry};

use crate::error::Error;

const HEADER: &str = "attackmesh-delivered 1";

/// One line a batch writes whose id the record can hold: event id, revision and the line's
/// length in bytes. Only [`Line::new`] makes one, so nothing reaches the log or a compaction
/// with an id that could break the log's line format.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'a> {
    id: &'a str,
    revision: u32,
    len: usize,
}

impl<'a> Line<'a> {
    /// The line, when `id` can be recorded ([`recordable`]); other ids are never recorded (such
    /// events are always written).
    pub(super) fn new(id: &'a str, revision: u32, len: usize) -> Option<Self> {
        recordable(id).then_some(Self { id, revision, len })
    }
}

/// Whether `id` can be recorded: printable ASCII without spaces, as every valid event id is.
fn recordable(id: &str) -> bool {
    !id.is_empty() && id.len() <= attackmesh::limits::MAX_EVENT_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The last `capacity` distinct event ids written, with their highest revision.
#[derive(Debug, Default)]
struct Recent {
    capacity: usize,
    /// One entry per id. Each write looks its id up once, and evicting the oldest id finds it
    /// by hash and stamp alone: every lookup in a table this size is a cache miss or two.
    ids: HashTable<Written>,
    hasher: RandomState,
    /// Writes in order, as their id's hash and the write's stamp; an entry whose stamp is not
    /// its id's current one is stale.
    order: VecDeque<(u64, u64)>,
    stamp: u64,
}

/// An id in [`Recent`]: its highest revision and the stamp of its last write (unique).
#[derive(Debug)]
struct Written {
    id: Box<str>,
    revision: u32,
    stamp: u64,
}

impl Recent {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Default::default()
        }
    }

    fn holds(&self, id: &str, revision: u32) -> bool {
        let hash = self.hasher.hash_one(id);
        self.ids
            .find(hash, |w| &*w.id == id)
            .is_some_and(|w| w.revision >= revision)
    }

    fn insert(&mut self, id: &str, revision: u32) {
        self.stamp += 1;
        let stamp = self.stamp;
        let Self { ids, hasher, order, .. } = self;
        let hash = hasher.hash_one(id);
        match ids.entry(hash, |w| &*w.id == id, |w| hasher.hash_one(&*w.id)) {
            Entry::Occupied(mut entry) => {
                let w = entry.get_mut();
                w.revision = w.revision.max(revision);
                w.stamp = stamp;
            }
            Entry::Vacant(entry) => {
                entry.insert(Written {
                    id: id.into(),
                    revision,
                    stamp,
                });
            }
        }
        order.push_back((hash, stamp));
        while ids.len() > self.capacity {
            let Some((hash, at)) = order.pop_front() else {
                break;
            };
            if let Ok(entry) = ids.find_entry(hash, |w| w.stamp == at) {
                entry.remove();
            }
        }
        if order.len() > 2 * self.capacity.max(64) {
            order.retain(|&(hash, at)| ids.find(hash, |w| w.stamp == at).is_some());
        }
    }

    /// The current entries, oldest first.
    fn entries(&self) -> impl Iterator<Item = (&str, u32)> {
        self.order.iter().filter_map(|&(hash, at)| {
            let w = self.ids.find(hash, |w| w.stamp == at)?;
            Some((&*w.id, w.revision))
        })
    }
}

/// The delivered record of one file sink.
#[derive(Debug)]
pub(super) struct Delivered {
    recent: Recent,
    path: PathBuf,
    output: PathBuf,
    log: File,
    records: usize,
}

impl Delivered {
    /// Opens (or starts) the record at `path` for the sink writing `output`, whose current
    /// length is `output_len`; remembers at most `capacity` ids.
    pub(super) fn open(path: &Path, output: &Path, output_len: u64, capacity: usize) -> Result<Self, Error> {
        let mut recent = Recent::new(capacity);
        match File::open(path) {
            Ok(file) => replay(BufReader::new(file), path, output, output_len, &mut recent)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("open", path, e)),
        }
        let (log, records) = rewrite(path, output, &recent)?;
        Ok(Self {
            recent,
            path: path.to_owned(),
            output: output.to_owned(),
            log,
            records,
        })
    }

    /// Whether the sink already wrote `id` at `revision` or later.
    pub(super) fn holds(&self, id: &str, revision: u32) -> bool {
        self.recent.holds(id, revision)
    }

    /// Logs (and syncs) a batch about to be written at `offset` of the output file.
    pub(super) fn begin(&mut self, offset: u64, lines: &[Line<'_>]) -> Result<(), Error> {
        use std::fmt::Write as _;
        let mut buf = String::with_capacity(16 + lines.len() * 64);
        // Writing into a String cannot fail.
        let _ = writeln!(buf, "b {offset}");
        for Line { id, revision, len } in lines {
            let _ = writeln!(buf, "w {revision} {len} {id}");
        }
        self.log
            .write_all(buf.as_bytes())
            .and_then(|()| self.log.sync_data())
            .map_err(|e| Error::io("append to", &self.path, e))?;
        self.records += lines.len() + 1;
        Ok(())
    }

    /// Records that the batch is in the output file, now `len` bytes long. The mark is not
    /// synced: a lost mark is re-derived from the file's length.
    pub(super) fn complete(&mut self, len: u64, lines: &[Line<'_>]) -> Result<(), Error> {
        for line in lines {
            self.recent.insert(line.id, line.revision);
        }
        self.log
            .write_all(format!("@ {len}\n").as_bytes())
            .map_err(|e| Error::io("append to", &self.path, e))?;
        self.records += 1;
        if self.records > 2 * self.recent.capacity + 1024 {
            (self.log, self.records) = rewrite(&self.path, &self.output, &self.recent)?;
        }
        Ok(())
    }

    /// Syncs the log (before the output file is rotated: a mark lost then could not be
    /// re-derived from the new file's length).
    pub(super) fn sync(&self) -> Result<(), Error> {
        self.log.sync_data().map_err(|e| Error::io("fsync", &self.path, e))
    }
}

/// A batch logged but not marked complete.
struct Pending {
    offset: u64,
    lines: Vec<(String, u32, u64)>,
}

impl Pending {
    /// Records the lines that fit whole in the output file up to `len`.
    fn settle(self, len: u64, recent: &mut Recent) {
        let mut end = self.offset;
        for (id, revision, line_len) in self.lines {
            end += line_len;
            if end > len {
                break;
            }
            recent.insert(&id, revision);
        }
    }
}

fn replay(
    mut reader: impl BufRead,
    path: &Path,
    output: &Path,
    output_len: u64,
    recent: &mut Recent,
) -> Result<(), Error> {
    let mut line = Vec::new();
    let mut next = |line: &mut Vec<u8>| -> Result<bool, Error> {
        line.clear();
        reader.read_until(b'\n', line).map_err(|e| Error::io("read", path, e))?;
        // A last line without its newline was torn by a crash mid-append: not a record.
        Ok(line.pop() == Some(b'\n'))
    };
    if !next(&mut line)? {
        return Ok(());
    }
    let header = String::from_utf8_lossy(&line);
    let Some(logged_output) = header.strip_prefix(HEADER).map(str::trim) else {
        tracing::warn!(path = %path.display(), "not a delivered-ids log; starting a new one");
        return Ok(());
    };
    // Offsets only mean something for the file they were taken in.
    let same_output = serde_json::from_str::<String>(logged_output).is_ok_and(|p| p == output.to_string_lossy());
    let mut pending: Option<Pending> = None;
    while next(&mut line)? {
        let text = String::from_utf8_lossy(&line);
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        match fields.as_slice() {
            ["s", revision, id] => {
                if let Ok(revision) = revision.parse() {
                    recent.insert(id, revision);
                }
            }
            ["b", offset] => {
                // A batch that failed to write is followed by its retry: what of it reached
                // the file ends where the retry starts (nothing, if the file was replaced).
                let offset = offset.parse().unwrap_or(u64::MAX);
                if let Some(p) = pending.take() {
                    let end = offset.max(p.offset);
                    p.settle(end, recent);
                }
                pending = Some(Pending {
                    offset,
                    lines: Vec::new(),
                });
            }
            ["w", revision, len, id] => {
                if let (Some(p), Ok(revision), Ok(len)) = (pending.as_mut(), revision.parse(), len.parse()) {
                    p.lines.push(((*id).to_owned(), revision, len));
                }
            }
            ["@", _] => {
                if let Some(p) = pending.take() {
                    p.settle(u64::MAX, recent);
                }
            }
            _ => {}
        }
    }
    if let Some(p) = pending
        && same_output
    {
        p.settle(output_len, recent);
    }
    Ok(())
}

/// Writes the log afresh from `recent` (temporary file, sync, rename, directory sync) and
/// returns it open for appending, with its record count.
fn rewrite(path: &Path, output: &Path, recent: &Recent) -> Result<(File, usize), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let output = serde_json::Value::String(output.to_string_lossy().into_owned());
    let tmp = path.with_extension("log.tmp");
    let file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    // Streamed: the whole log (`dedup_ids` records, 5.5 MiB at the default) was built in memory
    // first, while the sink was at its busiest.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, file);
    let mut records = 0;
    let written = writeln!(out, "{HEADER} {output}").and_then(|()| {
        for (id, revision) in recent.entries() {
            writeln!(out, "s {revision} {id}")?;
            records += 1;
        }
        out.into_inner().map_err(std::io::IntoInnerError::into_error)
    });
    written
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    let log = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    Ok((log, records))
}

#[cfg(test)]
#[path = "delivered_tests.rs"]
mod tests;
