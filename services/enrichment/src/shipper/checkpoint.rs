//! Per-file checkpoints: where shipping of a file stands, replaced atomically after every
//! acknowledged batch.
//!
//! A checkpoint holds the `end_offset` of the last record whose batch was acknowledged (and of
//! every record before it), the line number there, the parser state in force (the Zeek header),
//! and the file's inode, so a rotated or truncated file is read again from its start instead of
//! being resumed in the middle of unrelated data.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use attackmesh::formats::ParseState;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Where a file stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file, as given on the command line (made absolute).
    pub path: PathBuf,
    /// Inode of the file the offset belongs to.
    pub inode: u64,
    /// Byte offset after the last acknowledged record (of the decompressed data for gzip).
    pub offset: u64,
    /// Number of the line ending at `offset` (0 at the start).
    pub line: u64,
    /// Parser state in force at `offset`.
    pub state: ParseState,
}

/// The checkpoint files of one directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// The checkpoint file of `path`: its file name plus a digest of the absolute path, so two
    /// files with the same name in different directories never share one.
    pub fn file_for(&self, path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stream".into());
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, path.to_string_lossy().as_bytes());
        self.dir.join(format!("{name}.{}.checkpoint.json", id.simple()))
    }

    /// The saved checkpoint of `path`, if any.
    pub fn load(&self, path: &Path) -> Result<Option<Checkpoint>, Error> {
        let file = self.file_for(path);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::io(
                    &file,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a checkpoint: {e}")),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&file, e)),
        }
    }

    /// Replaces the checkpoint of `checkpoint.path` atomically (write, fsync, rename).
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let file = self.file_for(&checkpoint.path);
        let tmp = file.with_extension("tmp");
        let io = |e| Error::io(&file, e);
        let bytes = serde_json::to_vec_pretty(checkpoint).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &file).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_names_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let cps = Checkpoints::open(&dir.path().join("cp")).unwrap();
        let a = Path::new("/var/log/a/eve.json");
        let b = Path::new("/var/log/b/eve.json");
        assert_ne!(cps.file_for(a), cps.file_for(b));
        assert!(cps.load(a).unwrap().is_none());
        let cp = Checkpoint {
            path: a.to_owned(),
            inode: 42,
            offset: 1234,
            line: 7,
            state: ParseState::new("/var/log/a/eve.json"),
        };
        cps.save(&cp).unwrap();
        assert_eq!(cps.load(a).unwrap(), Some(cp));
        assert!(cps.load(b).unwrap().is_none());
    }
}
