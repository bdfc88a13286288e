//! The replica's durable state: a snapshot — the engine's state, the findings not yet
//! acknowledged by enrichment, the campaign builder's state and the campaign alerts not yet
//! acknowledged by siem-export, in one checksummed file (`<data_dir>/state.bin`) replaced
//! atomically (write a temporary file, sync, rename, sync the directory) — and a write-ahead log
//! (`wal.log`) of the batches applied since, each appended and synced before `Observe` answers.
//! Restoring is the snapshot plus the log replayed through the engine, which is deterministic, so
//! the state and the findings come back as they were. A snapshot empties the log. A torn record
//! at the log's end (a crash mid-append: that batch was never acknowledged) is cut off; a corrupt
//! snapshot is refused with a clear error rather than silently starting empty.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use attackmesh::proto::{DetectionEvent, EnrichedEvent};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Snapshots with campaigns; [`OLD_MAGIC`] ones (engine and findings only) still load.
const MAGIC: &[u8; 8] = b"AMCORR02";
const OLD_MAGIC: &[u8; 8] = b"AMCORR01";
const FILE: &str = "state.bin";
const WAL: &str = "wal.log";

/// One logged batch: the shard it was applied as and the events, protobuf-encoded.
#[derive(Serialize, Deserialize)]
struct Logged {
    index: u32,
    count: u32,
    events: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct OldBody {
    engine: Vec<u8>,
    outbox: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    engine: Vec<u8>,
    outbox: Vec<Vec<u8>>,
    campaigns: Vec<u8>,
    alerts: Vec<Vec<u8>>,
}

/// What a snapshot saves.
#[derive(Debug, Default)]
pub struct Snapshot<'a> {
    /// The engine's snapshot.
    pub engine: Vec<u8>,
    /// Findings not yet delivered, oldest first.
    pub outbox: Vec<&'a DetectionEvent>,
    /// The campaign builder's snapshot (empty: campaigns are not built).
    pub campaigns: Vec<u8>,
    /// Campaign alerts not yet delivered, oldest first.
    pub alerts: Vec<&'a EnrichedEvent>,
}

/// What a state file holds.
#[derive(Debug, Default)]
pub struct Saved {
    /// The engine's snapshot (empty: none yet).
    pub engine: Vec<u8>,
    /// Findings not yet delivered, oldest first.
    pub outbox: Vec<DetectionEvent>,
    /// The campaign builder's snapshot (empty: none).
    pub campaigns: Vec<u8>,
    /// Campaign alerts not yet delivered, oldest first.
    pub alerts: Vec<EnrichedEvent>,
    /// Batches applied after the snapshot, in order: (replica index, replica count, events).
    pub log: Vec<(u32, u32, Vec<EnrichedEvent>)>,
}

/// The state file of one replica.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under `dir` (created on first save).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    /// Reads the saved state; nothing saved yet is an empty state.
    pub fn load(&self) -> Result<Saved, Error> {
        let mut saved = self.load_snapshot()?;
        saved.log = self.load_log()?;
        Ok(saved)
    }

    fn load_log(&self) -> Result<Vec<(u32, u32, Vec<EnrichedEvent>)>, Error> {
        let path = self.dir.join(WAL);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Io(e)),
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            let Some(body) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok(logged) = postcard::from_bytes::<Logged>(body) else {
                break;
            };
            let events = logged
                .events
                .iter()
                .map(|b| EnrichedEvent::decode(b.as_slice()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            out.push((logged.index, logged.count, events));
            at += 8 + len;
        }
        if at < bytes.len() {
            tracing::warn!(path = %path.display(), bytes = bytes.len() - at, "cut a torn record off the correlation log");
            fs::OpenOptions::new().write(true).open(&path)?.set_len(at as u64)?;
        }
        Ok(out)
    }

    /// Appends one applied batch to the log; when this returns Ok, a crash cannot lose it.
    pub fn append(&self, index: u32, count: u32, events: &[EnrichedEvent]) -> Result<usize, Error> {
        fs::create_dir_all(&self.dir)?;
        let logged = Logged {
            index,
            count,
            events: events.iter().map(|e| e.encode_to_vec()).collect(),
        };
        let body = postcard::to_stdvec(&logged).map_err(|e| Error::Unavailable(e.to_string()))?;
        let mut record = Vec::with_capacity(body.len() + 8);
        record.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        record.extend_from_slice(&body);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(WAL))?;
        file.write_all(&record)?;
        file.sync_data()?;
        Ok(record.len())
    }

    fn load_snapshot(&self) -> Result<Saved, Error> {
        let path = self.dir.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(e) => return Err(Error::Io(e)),
        };
        let corrupt = |why: &str| Error::Config(format!("{}: {why}; move it away to start empty", path.display()));
        if bytes.len() < 12 || (&bytes[..8] != MAGIC && &bytes[..8] != OLD_MAGIC) {
            return Err(corrupt("not a correlation state file"));
        }
        let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let body = &bytes[12..];
        if crc32c::crc32c(body) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let body: Body = if &bytes[..8] == OLD_MAGIC {
            let old: OldBody = postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))?;
            Body {
                engine: old.engine,
                outbox: old.outbox,
                campaigns: Vec::new(),
                alerts: Vec::new(),
            }
        } else {
            postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))?
        };
        let alerts = body
            .alerts
            .iter()
            .map(|b| EnrichedEvent::decode(b.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(&e.to_string()))?;
        let outbox = body
            .outbox
            .iter()
            .map(|b| DetectionEvent::decode(b.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(&e.to_string()))?;
        Ok(Saved {
            engine: body.engine,
            outbox,
            campaigns: body.campaigns,
            alerts,
            log: Vec::new(),
        })
    }

    /// Replaces the snapshot and empties the log; when this returns Ok, a crash cannot lose it.
    pub fn save(&self, snapshot: Snapshot<'_>) -> Result<(), Error> {
        fs::create_dir_all(&self.dir)?;
        let body = Body {
            engine: snapshot.engine,
            outbox: snapshot.outbox.iter().map(|e| e.encode_to_vec()).collect(),
            campaigns: snapshot.campaigns,
            alerts: snapshot.alerts.iter().map(|e| e.encode_to_vec()).collect(),
        };
        let body = postcard::to_stdvec(&body).map_err(|e| Error::Unavailable(e.to_string()))?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&crc32c::crc32c(&body).to_le_bytes())?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join(FILE))?;
        fs::File::open(&self.dir)?.sync_all()?;
        // The snapshot holds everything logged so far. A crash before this truncation replays
        // the log over a snapshot that already counted it: the engine ignores those event ids.
        match fs::OpenOptions::new().write(true).open(self.dir.join(WAL)) {
            Ok(wal) => {
                wal.set_len(0)?;
                wal.sync_all()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        Ok(())
    }
}
