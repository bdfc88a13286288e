//! The replica's durable state: the engine's snapshot and the findings not yet acknowledged by
//! enrichment, in one checksummed file (`<data_dir>/state.bin`) replaced atomically (write a
//! temporary file, sync, rename, sync the directory). A torn or corrupt file is refused with a
//! clear error rather than silently starting empty.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use attackmesh::proto::DetectionEvent;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::Error;

const MAGIC: &[u8; 8] = b"AMCORR01";
const FILE: &str = "state.bin";

#[derive(Serialize, Deserialize)]
struct Body {
    engine: Vec<u8>,
    outbox: Vec<Vec<u8>>,
}

/// What a state file holds.
#[derive(Debug, Default)]
pub struct Saved {
    /// The engine's snapshot (empty: none yet).
    pub engine: Vec<u8>,
    /// Findings not yet delivered, oldest first.
    pub outbox: Vec<DetectionEvent>,
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
        let path = self.dir.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(e) => return Err(Error::Io(e)),
        };
        let corrupt = |why: &str| Error::Config(format!("{}: {why}; move it away to start empty", path.display()));
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(corrupt("not a correlation state file"));
        }
        let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let body = &bytes[12..];
        if crc32c::crc32c(body) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let body: Body = postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))?;
        let outbox = body
            .outbox
            .iter()
            .map(|b| DetectionEvent::decode(b.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(&e.to_string()))?;
        Ok(Saved {
            engine: body.engine,
            outbox,
        })
    }

    /// Replaces the saved state; when this returns Ok, a crash cannot lose it.
    pub fn save(&self, engine: Vec<u8>, outbox: &[&DetectionEvent]) -> Result<(), Error> {
        fs::create_dir_all(&self.dir)?;
        let body = Body {
            engine,
            outbox: outbox.iter().map(|e| e.encode_to_vec()).collect(),
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
        Ok(())
    }
}
