//! Dead letters: events a sink refused for good (or that exhausted their retries), and damaged
//! queue bytes, kept on disk as NDJSON under `<data_dir>/dlq/<sink>/` so an operator can
//! inspect and replay them (`attackmesh dlq list|show|replay`).
//!
//! Replay never edits the dead-letter files the service appends to: it writes the chosen
//! entries to `dlq/<sink>/replay/`, which the running service (or the next start) appends to
//! the sink's queue and then moves to `dlq/<sink>/replayed/`. An entry whose id appears there
//! is shown as replayed. Nothing here ever deletes an entry.

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
        file.write_all(&buf).map_err(|e| Error::io("append to", path, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", path, e))?;
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
            let events = read_entries(&path)?
                .iter()
                .filter_map(DeadLetter::decode_event)
                .collect();
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

fn read_entries(path: &Path) -> Result<Vec<DeadLetter>, Error> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io("read", path, e))?;
        // A torn last line (crash mid-append) is not an entry.
        if let Ok(entry) = serde_json::from_str::<DeadLetter>(&line) {
            out.push(entry);
        }
    }
    Ok(out)
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
}

/// Every dead letter under `data_dir` (of one sink, or all), oldest first.
pub fn list(data_dir: &Path, sink: Option<&str>) -> Result<Vec<Listed>, Error> {
    let root = data_dir.join("dlq");
    let sinks: Vec<String> = match sink {
        Some(s) => vec![s.to_owned()],
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
    let mut out = Vec::new();
    for sink in sinks {
        let dir = sink_dir(data_dir, &sink);
        let states = replay_states(&dir)?;
        for path in ndjson_files(&dir)? {
            for entry in read_entries(&path)? {
                let state = states.get(&entry.id).copied().unwrap_or(ReplayState::Dead);
                out.push(Listed { entry, state });
            }
        }
    }
    Ok(out)
}

/// One entry by id.
pub fn show(data_dir: &Path, id: &str) -> Result<Listed, Error> {
    list(data_dir, None)?
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
}

/// Hands dead letters back to their sinks: those with the given ids, or every not-yet-replayed
/// one (of `sink`, or all sinks) when `ids` is empty.
pub fn replay(data_dir: &Path, sink: Option<&str>, ids: &[String]) -> Result<ReplayReport, Error> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut by_sink: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
    let mut report = ReplayReport::default();
    for listed in list(data_dir, sink)? {
        let chosen = if wanted.is_empty() {
            listed.state == ReplayState::Dead
        } else {
            wanted.contains(listed.entry.id.as_str())
        };
        if !chosen {
            continue;
        }
        if listed.entry.event.is_none() {
            report.not_replayable += 1;
            continue;
        }
        by_sink.entry(listed.entry.sink.clone()).or_default().push(listed.entry);
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

fn replay_states(dir: &Path) -> Result<BTreeMap<String, ReplayState>, Error> {
    let mut out = BTreeMap::new();
    for (sub, state) in [(REPLAY, ReplayState::Pending), (REPLAYED, ReplayState::Replayed)] {
        for path in ndjson_files(&dir.join(sub))? {
            for entry in read_entries(&path)? {
                out.insert(entry.id, state);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "dlq_tests.rs"]
mod tests;
