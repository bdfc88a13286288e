//! Dead letters: events a sink refused for good (or that exhausted their retries), and damaged
//! queue bytes, kept on disk as NDJSON under `<data_dir>/dlq/<sink>/` so an operator can
//! inspect and replay them (`attackmesh dlq list|show|replay`).
//!
//! Replay never edits the dead-letter files the service appends to: it writes the chosen
//! entries to `dlq/<sink>/replay/`, which the running service (or the next start) appends to
//! the sink's queue and then moves to `dlq/<sink>/replayed/`. An entry whose id appears there
//! is shown as replayed. Nothing here ever deletes an entry.
//!
//! The files may have been written by someone else: a sink name, whether from an entry or from
//! the operator, is checked against the known sinks before it names a directory, an entry is
//! replayed only into the directory it was found in (and only when it names that sink), and
//! lines that do not parse are reported with their file and line number, never skipped quietly.
//!
//! A sink's dead-letter directory carries a `FORMAT` file ([`FORMAT`]): dead letters written by
//! a newer release are neither appended to nor listed, and a directory without the file (written
//! before formats were versioned) is version 1.

use std::{
    collections::{BTreeMap, HashSet},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use attackmesh::proto::EnrichedEvent;
use serde::{Deserialize, Serialize};

use crate::{error::Error, queue::lock};

/// The layout of dead-letter directories: version 1 is NDJSON [`DeadLetter`] lines in
/// `dead-*.ndjson`, with `replay/` and `replayed/` beside them.
pub const FORMAT: attackmesh_runtime::format::Format = attackmesh_runtime::format::Format {
    name: "attackmesh-dead-letters",
    current: 1,
};
/// Dead-letter file size at which a new file is started.
const ROTATE_BYTES: u64 = 64 << 20;
const REPLAY: &str = "replay";
const REPLAYED: &str = "replayed";

/// Location of damaged queue bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedRegion {
    /// Segment file.
    pub segment: String,
    /// Byte offset in it.
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Unique id of this entry (UUID).
    pub id: String,
    /// Sink that refused it.
    pub sink: String,
    /// When it was dead-lettered (RFC 3339).
    pub at: String,
    /// Why (sink answer or retry exhaustion), without credentials.
    pub reason: String,
    /// The event's id, when the entry holds an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event in canonical JSON, when the entry holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// Damaged queue bytes, for entries that hold no event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<DamagedRegion>,
}

impl DeadLetter {
    /// An entry for an event.
    pub fn for_event(sink: &str, event: &EnrichedEvent, reason: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            sink: sink.to_owned(),
            at: now(),
            reason: reason.to_owned(),
            event_id: Some(event.event_id.clone()),
            event: serde_json::to_value(event).ok(),
            damaged: None,
        }
    }

    /// An entry for damaged queue bytes.
    pub fn for_damage(sink: &str, region: DamagedRegion, reason: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            sink: sink.to_owned(),
            at: now(),
            reason: reason.to_owned(),
            event_id: None,
            event: None,
            damaged: Some(region),
        }
    }

    /// The event, decoded from canonical JSON.
    pub fn decode_event(&self) -> Option<EnrichedEvent> {
        let value = self.event.as_ref()?;
        attackmesh::json::from_json(&value.to_string()).ok()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where a sink's dead letters live.
pub fn sink_dir(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("dlq").join(sink)
}

/// The appending side, used by a sink's driver.
#[derive(Debug)]
pub struct DeadLetterQueue {
    sink: String,
    dir: PathBuf,
    current: Mutex<Option<(File, PathBuf, u64)>>,
}

impl DeadLetterQueue {
    /// Opens the dead-letter directory of `sink` under `data_dir`.
    pub fn open(data_dir: &Path, sink: &str) -> Result<Self, Error> {
        let dir = sink_dir(data_dir, sink);
        std::fs::create_dir_all(dir.join(REPLAY)).map_err(|e| Error::io("create", &dir, e))?;
        FORMAT.open(&dir)?;
        Ok(Self {
            sink: sink.to_owned(),
            dir,
            current: Mutex::new(None),
        })
    }

    /// Appends entries and syncs them (blocking I/O).
    pub fn append(&self, entries: &[DeadLetter]) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut buf, entry).map_err(|e| Error::DeadLetter(e.to_string()))?;
            buf.push(b'\n');
        }
        let mut cur = lock(&self.current);
        if cur.as_ref().is_none_or(|(_, _, len)| *len >= ROTATE_BYTES) {
            let path = self.dir.join(format!(
                "dead-{}.ndjson",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
            ));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io("create", &path, e))?;
            *cur = Some((file, path, 0));
        }
        let Some((file, path, len)) = cur.as_mut() else {
            return Ok(());
        };
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // The retry goes to a fresh file: appended after a torn line, its first entry
            // would be glued to the torn bytes and lost.
            let err = Error::io("append to", path, e);
            *cur = None;
            return Err(err);
        }
        *len += buf.len() as u64;
        tracing::warn!(sink = %self.sink, entries = entries.len(), reason = %entries[0].reason, "dead-lettered");
        Ok(())
    }

    /// Replay files waiting to be queued, oldest first, with their events.
    pub fn pending_replays(&self) -> Result<Vec<(PathBuf, Vec<EnrichedEvent>)>, Error> {
        let dir = self.dir.join(REPLAY);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let (entries, unreadable) = read_entries(&path)?;
            if !unreadable.is_empty() {
                tracing::warn!(sink = %self.sink, path = %path.display(), lines = unreadable.len(), "unreadable lines in a replay file");
            }
            let events = entries.iter().filter_map(DeadLetter::decode_event).collect();
            out.push((path, events));
        }
        Ok(out)
    }

    /// Marks a replay file as queued.
    pub fn finish_replay(&self, path: &Path) -> Result<(), Error> {
        let done = self.dir.join(REPLAYED);
        std::fs::create_dir_all(&done).map_err(|e| Error::io("create", &done, e))?;
        let target = done.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &target).map_err(|e| Error::io("move replay file", path, e))
    }
}

/// A line of a dead-letter file that is not an entry: a torn last line after a crash, or bytes
/// someone else wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// The file.
    pub path: PathBuf,
    /// Its line number, from 1.
    pub line: usize,
}

fn read_entries(path: &Path) -> Result<(Vec<DeadLetter>, Vec<Unreadable>), Error> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io("read", path, e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<DeadLetter>(&line) {
            Ok(entry) => entries.push(entry),
            Err(_) => unreadable.push(Unreadable {
                path: path.to_owned(),
                line: i + 1,
            }),
        }
    }
    Ok((entries, unreadable))
}

/// Whether `name` can be a sink's name: a sink kind, or `file-<name>` of `siem_export.files`.
/// Such a name is one path component, never `..`.
pub fn is_sink_name(name: &str) -> bool {
    use crate::sinks::{elasticsearch, file, intel, splunk_hec};
    [elasticsearch::KIND, splunk_hec::KIND, file::KIND, intel::KIND].contains(&name)
        || name.strip_prefix("file-").is_some_and(|n| file::check_name(n).is_ok())
}

/// Sinks this data directory has served: those with a queue under `<data_dir>/queues/`.
pub fn served_sinks(data_dir: &Path) -> Result<Vec<String>, Error> {
    let root = data_dir.join("queues");
    let mut names: Vec<String> = match std::fs::read_dir(&root) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| is_sink_name(n))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", &root, e)),
    };
    names.sort();
    Ok(names)
}

/// Checks a sink name given by the operator against the `known` sinks.
pub fn check_sink<'a>(known: &[String], sink: &'a str) -> Result<&'a str, Error> {
    if is_sink_name(sink) && known.iter().any(|k| k == sink) {
        return Ok(sink);
    }
    Err(Error::DeadLetter(format!(
        "`{sink}` is not a configured sink (configured: {})",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )))
}

/// Replay state of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    /// Still only in the dead-letter queue.
    Dead,
    /// Written for replay; the service has not queued it yet.
    Pending,
    /// Queued again for delivery.
    Replayed,
}

/// A dead letter as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// The entry.
    pub entry: DeadLetter,
    /// Whether it was replayed.
    pub state: ReplayState,
    /// The sink whose dead-letter directory holds it (the entry's `sink` should say the same).
    pub found_in: String,
}

/// What [`list`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Listing {
    /// The entries, oldest first.
    pub entries: Vec<Listed>,
    /// Lines that are not entries.
    pub unreadable: Vec<Unreadable>,
}

/// Every dead letter under `data_dir` (of one sink, or all), oldest first. `sink` must be one of
/// the `known` sinks; without it, every sink directory present is read.
pub fn list(data_dir: &Path, known: &[String], sink: Option<&str>) -> Result<Listing, Error> {
    let root = data_dir.join("dlq");
    let sinks: Vec<String> = match sink {
        Some(s) => vec![check_sink(known, s)?.to_owned()],
        None => match std::fs::read_dir(&root) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect();
                v.sort();
                v
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("list", &root, e)),
        },
    };
    let mut out = Listing::default();
    for sink in sinks {
        let dir = sink_dir(data_dir, &sink);
        FORMAT.check(&dir)?;
        let states = replay_states(&dir, &mut out.unreadable)?;
        for path in ndjson_files(&dir)? {
            let (entries, unreadable) = read_entries(&path)?;
            out.unreadable.extend(unreadable);
            for entry in entries {
                let state = states.get(&entry.id).copied().unwrap_or(ReplayState::Dead);
                out.entries.push(Listed {
                    entry,
                    state,
                    found_in: sink.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// One entry by id.
pub fn show(data_dir: &Path, id: &str) -> Result<Listed, Error> {
    list(data_dir, &[], None)?
        .entries
        .into_iter()
        .find(|l| l.entry.id == id)
        .ok_or_else(|| Error::DeadLetter(format!("no dead letter with id {id}")))
}

/// What [`replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Entries handed back for delivery, per sink.
    pub replayed: BTreeMap<String, usize>,
    /// Entries that hold no event (damaged bytes) and cannot be replayed.
    pub not_replayable: usize,
    /// Lines that are not entries (so not replayed either).
    pub unreadable: Vec<Unreadable>,
}

/// Hands dead letters back to the `known` sinks: those with the given ids, or every
/// not-yet-replayed one (of `sink`, or all sinks) when `ids` is empty. Nothing is handed back
/// when a chosen entry sits in the directory of a sink that is not known or names another sink.
pub fn replay(data_dir: &Path, known: &[String], sink: Option<&str>, ids: &[String]) -> Result<ReplayReport, Error> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut by_sink: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
    let listing = list(data_dir, known, sink)?;
    let mut report = ReplayReport {
        unreadable: listing.unreadable,
        ..Default::default()
    };
    let mut refused = Vec::new();
    for listed in listing.entries {
        let chosen = if wanted.is_empty() {
            listed.state == ReplayState::Dead
        } else {
            wanted.contains(listed.entry.id.as_str())
        };
        if !chosen {
            continue;
        }
        if listed.entry.sink != listed.found_in || check_sink(known, &listed.found_in).is_err() {
            refused.push(format!(
                "{} (sink `{}` under dlq/{})",
                listed.entry.id, listed.entry.sink, listed.found_in
            ));
            continue;
        }
        if listed.entry.event.is_none() {
            report.not_replayable += 1;
            continue;
        }
        by_sink.entry(listed.found_in).or_default().push(listed.entry);
    }
    if !refused.is_empty() {
        return Err(Error::DeadLetter(format!(
            "nothing replayed: {} entr(y/ies) do not belong to a configured sink ({}): {}",
            refused.len(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
            refused.join("; ")
        )));
    }
    if !wanted.is_empty() {
        let found: usize = by_sink.values().map(Vec::len).sum::<usize>() + report.not_replayable;
        if found < wanted.len() {
            return Err(Error::DeadLetter(format!(
                "{} of the given ids were not found",
                wanted.len() - found
            )));
        }
    }
    for (sink, entries) in by_sink {
        let dir = sink_dir(data_dir, &sink).join(REPLAY);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let name = format!(
            "replay-{}-{}.ndjson",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::new_v4()
        );
        let tmp = dir.join(format!("{name}.tmp"));
        let mut buf = Vec::new();
        for entry in &entries {
            serde_json::to_writer(&mut buf, entry).map_err(|e| Error::DeadLetter(e.to_string()))?;
            buf.push(b'\n');
        }
        let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| Error::io("rename", &tmp, e))?;
        report.replayed.insert(sink, entries.len());
    }
    Ok(report)
}

fn ndjson_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "ndjson"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    files.sort();
    Ok(files)
}

fn replay_states(dir: &Path, unreadable: &mut Vec<Unreadable>) -> Result<BTreeMap<String, ReplayState>, Error> {
    let mut out = BTreeMap::new();
    for (sub, state) in [(REPLAY, ReplayState::Pending), (REPLAYED, ReplayState::Replayed)] {
        for path in ndjson_files(&dir.join(sub))? {
            let (entries, bad) = read_entries(&path)?;
            unreadable.extend(bad);
            for entry in entries {
                out.insert(entry.id, state);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "dlq_tests.rs"]
mod tests;
