//! Crash recovery of a queue directory: find the segments, read the cursor, drop delivered
//! segments, cut a torn tail off the active segment and locate the reader's start.
//!
//! Damage in the middle of a segment is left in place: the reader reports it as a damaged
//! region (dead-lettered by the driver) and resumes at the next valid record.

use std::{collections::BTreeMap, fs::OpenOptions, path::Path};

use super::{QueueSettings, SEGMENT_EXT, read_cursor, record, segment_path, sync_dir, write_cursor};
use crate::error::Error;

/// The state recovered from disk.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) sealed: BTreeMap<u64, u64>,
    pub(super) active: u64,
    pub(super) active_len: u64,
    pub(super) head: u64,
    pub(super) acked: u64,
    pub(super) truncated: u64,
    pub(super) oldest_micros: Option<i64>,
    /// Segment and seq where the reader starts.
    pub(super) reader_start: (u64, u64),
}

/// Summary of one scanned segment.
struct Scan {
    /// Offset just past the last valid record.
    valid_end: u64,
    /// Seq after the last valid record, if any record was valid.
    next_seq: Option<u64>,
    /// Enqueue time of the first record with seq ≥ the cursor.
    oldest_at_or_after: Option<i64>,
}

pub(super) fn recover(dir: &Path, settings: QueueSettings) -> Result<Found, Error> {
    let mut firsts = list_segments(dir)?;
    let cursor = read_cursor(dir);
    let mut acked = cursor.unwrap_or_else(|| firsts.first().copied().unwrap_or(0));
    // Delivered segments are deleted before the cursor is written: one behind the first
    // segment lags a deletion (everything before that segment was delivered).
    if let Some(&first) = firsts.first() {
        acked = acked.max(first);
    }
    // Segments wholly below the cursor were delivered; a crash may have left them behind.
    while firsts.len() > 1 && firsts[1] <= acked {
        let path = segment_path(dir, firsts[0]);
        std::fs::remove_file(&path).map_err(|e| Error::io("delete segment", &path, e))?;
        firsts.remove(0);
    }
    let Some(&active) = firsts.last() else {
        write_cursor(dir, acked, settings.fsync)?;
        return Ok(Found {
            sealed: BTreeMap::new(),
            active: acked,
            active_len: 0,
            head: acked,
            acked,
            truncated: 0,
            oldest_micros: None,
            reader_start: (acked, acked),
        });
    };
    let mut sealed = BTreeMap::new();
    for &first in &firsts[..firsts.len() - 1] {
        let path = segment_path(dir, first);
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io("stat segment", &path, e))?
            .len();
        sealed.insert(first, len);
    }
    let active_path = segment_path(dir, active);
    let scan = scan(&active_path, acked)?;
    let file_len = std::fs::metadata(&active_path)
        .map_err(|e| Error::io("stat segment", &active_path, e))?
        .len();
    let mut truncated = 0;
    if scan.valid_end < file_len {
        truncated = file_len - scan.valid_end;
        let file = OpenOptions::new()
            .write(true)
            .open(&active_path)
            .map_err(|e| Error::io("open segment", &active_path, e))?;
        file.set_len(scan.valid_end)
            .map_err(|e| Error::io("truncate segment", &active_path, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &active_path, e))?;
        tracing::warn!(segment = %active_path.display(), bytes = truncated, "cut a torn tail off the queue");
    }
    let head = scan.next_seq.unwrap_or(active).max(active);
    if acked > head {
        // The cursor ran ahead of what survived (appends not synced before a crash).
        acked = head;
    }
    if cursor != Some(acked) {
        write_cursor(dir, acked, settings.fsync)?;
        sync_dir(dir)?;
    }
    let start_segment = firsts.iter().rev().find(|f| **f <= acked).copied().unwrap_or(firsts[0]);
    let oldest_micros = if start_segment == active {
        scan.oldest_at_or_after
    } else {
        self::scan(&segment_path(dir, start_segment), acked)?.oldest_at_or_after
    };
    Ok(Found {
        sealed,
        active,
        active_len: scan.valid_end,
        head,
        acked,
        truncated,
        oldest_micros,
        reader_start: (start_segment, acked),
    })
}

/// First seqs of the segment files in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(&format!(".{SEGMENT_EXT}"))
            && let Ok(first) = stem.parse::<u64>()
        {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Scans a whole segment. Bytes after the last valid record that contain no valid record are a
/// torn tail (`valid_end` stops before them); damaged regions followed by valid records are
/// skipped here and reported later by the reader.
fn scan(path: &Path, cursor: u64) -> Result<Scan, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read segment", path, e))?;
    let mut pos = 0;
    let mut out = Scan {
        valid_end: 0,
        next_seq: None,
        oldest_at_or_after: None,
    };
    while pos < bytes.len() {
        match record::parse(&bytes[pos..]) {
            record::Frame::Record { end } => {
                if let Ok(entry) = record::decode(&bytes[pos + record::HEADER..pos + end]) {
                    out.next_seq = Some(entry.seq + 1);
                    if entry.seq >= cursor && out.oldest_at_or_after.is_none() {
                        out.oldest_at_or_after = Some(entry.enqueued_at_micros);
                    }
                }
                pos += end;
                out.valid_end = pos as u64;
            }
            record::Frame::Incomplete | record::Frame::Corrupt(_) => match record::resync(&bytes[pos..]) {
                Some(skip) => pos += skip,
                None => break,
            },
        }
    }
    Ok(out)
}
