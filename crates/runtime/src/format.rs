//! Format versions of the data attackmesh keeps on disk (sink queues, dead letters, the
//! re-attribution log): each such directory carries a `FORMAT` file naming what it holds and
//! the version of its layout, e.g. `attackmesh-queue 1`.
//!
//! A release reads every version up to its own and refuses a newer one with a message that says
//! so, instead of misreading bytes it does not understand. A directory without the file was
//! written by a release from before formats were versioned: that layout is version 1, and the
//! file is added when the directory is opened. This module only reads and writes the marker; what
//! a version means is up to the owner of the data.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

/// Name of the marker file in a versioned directory.
pub const MARKER: &str = "FORMAT";
/// The version of data written before formats were versioned.
pub const UNVERSIONED: u32 = 1;

/// One kind of on-disk data and the version this release writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// What the directory holds (`attackmesh-queue`), the first word of the marker.
    pub name: &'static str,
    /// The newest version this release reads, and the one it writes.
    pub current: u32,
}

/// Why a directory's data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The data was written by a newer release in a layout this one does not know.
    #[error(
        "{dir} holds {name} format version {found}, written by a newer attackmesh; this release reads versions up to {current}: run the newer release, or move the directory away (its data is kept, not read)"
    )]
    Newer {
        /// The directory.
        dir: PathBuf,
        /// The format's name.
        name: &'static str,
        /// The version found.
        found: u32,
        /// The newest version this release reads.
        current: u32,
    },
    /// The marker names another kind of data, or cannot be parsed.
    #[error("{path}: not an {name} format marker (found {found:?}); refusing to read the directory")]
    Foreign {
        /// The marker file.
        path: PathBuf,
        /// The format expected.
        name: &'static str,
        /// What the marker holds (at most 64 characters).
        found: String,
    },
    /// The marker could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Format {
    /// The version of the data in `dir` (without changing anything): `None` when the directory
    /// has no marker (no data yet, or data of an unversioned release); an error when the data is
    /// of a newer version or the marker is not one of this format's.
    pub fn check(&self, dir: &Path) -> Result<Option<u32>, FormatError> {
        let path = dir.join(MARKER);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FormatError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let mut words = text.split_whitespace();
        let version = match (words.next(), words.next().map(str::parse::<u32>), words.next()) {
            (Some(name), Some(Ok(version)), None) if name == self.name && version >= UNVERSIONED => version,
            _ => {
                return Err(FormatError::Foreign {
                    path,
                    name: self.name,
                    found: text.chars().take(64).collect(),
                });
            }
        };
        if version > self.current {
            return Err(FormatError::Newer {
                dir: dir.to_owned(),
                name: self.name,
                found: version,
                current: self.current,
            });
        }
        Ok(Some(version))
    }

    /// Checks the data in `dir` as [`Format::check`] does and, when it has no marker yet, writes
    /// one (atomically: a synced temporary file renamed into place). Returns the version the
    /// data was found in ([`UNVERSIONED`] for data without a marker, the current one for a new
    /// directory). The caller upgrades data of an older version before writing.
    pub fn open(&self, dir: &Path) -> Result<u32, FormatError> {
        if let Some(version) = self.check(dir)? {
            return Ok(version);
        }
        let found = if dir_has_data(dir)? { UNVERSIONED } else { self.current };
        self.write(dir, found)?;
        Ok(found)
    }

    /// Marks the data in `dir` as of the current version, once its owner has upgraded it (or
    /// found that data of the older version is valid data of the current one as it stands): from
    /// then on an older release refuses it instead of misreading what the current one adds.
    pub fn mark_current(&self, dir: &Path) -> Result<(), FormatError> {
        self.write(dir, self.current)
    }

    /// Writes the marker for `version` (a directory upgraded from an older version stays at
    /// that version until its owner rewrote it).
    fn write(&self, dir: &Path, version: u32) -> Result<(), FormatError> {
        let path = dir.join(MARKER);
        let tmp = dir.join(format!("{MARKER}.tmp"));
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| FormatError::Io { op, path, source }
        };
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(format!("{} {version}\n", self.name).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename to", &path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
    }
}

/// Whether `dir` holds anything besides a marker (or its temporary file).
fn dir_has_data(dir: &Path) -> Result<bool, FormatError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FormatError::Io {
        op: "list",
        path: dir.to_owned(),
        source,
    })?;
    Ok(entries
        .filter_map(Result::ok)
        .any(|e| !e.file_name().to_str().is_some_and(|n| n.starts_with(MARKER))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: Format = Format {
        name: "attackmesh-queue",
        current: 1,
    };

    #[test]
    fn a_new_directory_is_stamped_with_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(QUEUE.open(dir.path()).unwrap(), 1);
        let marker = std::fs::read_to_string(dir.path().join(MARKER)).unwrap();
        assert_eq!(marker, "attackmesh-queue 1\n");
        assert_eq!(QUEUE.check(dir.path()).unwrap(), Some(1));
    }

    #[test]
    fn data_marked_current_is_refused_by_an_older_release() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000000.seg"), b"x").unwrap();
        let newer = Format {
            name: "attackmesh-queue",
            current: 2,
        };
        assert_eq!(newer.open(dir.path()).unwrap(), 1);
        newer.mark_current(dir.path()).unwrap();
        assert_eq!(newer.check(dir.path()).unwrap(), Some(2));
        assert!(matches!(
            QUEUE.check(dir.path()),
            Err(FormatError::Newer { found: 2, .. })
        ));
    }

    #[test]
    fn unversioned_data_is_version_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000000.seg"), b"x").unwrap();
        let newer = Format {
            name: "attackmesh-queue",
            current: 2,
        };
        assert_eq!(newer.check(dir.path()).unwrap(), None);
        assert_eq!(newer.open(dir.path()).unwrap(), UNVERSIONED);
        assert_eq!(newer.check(dir.path()).unwrap(), Some(UNVERSIONED));
    }

    #[test]
    fn a_newer_version_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARKER), "attackmesh-queue 7\n").unwrap();
        let err = QUEUE.open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version 7"), "{err}");
        assert!(err.contains("written by a newer attackmesh"), "{err}");
        assert!(err.contains("reads versions up to 1"), "{err}");
        let marker = std::fs::read_to_string(dir.path().join(MARKER)).unwrap();
        assert_eq!(marker, "attackmesh-queue 7\n", "the newer marker is left alone");
    }

    #[test]
    fn another_kind_of_data_or_a_garbled_marker_is_refused() {
        for text in [
            "attackmesh-dead-letters 1\n",
            "attackmesh-queue x\n",
            "attackmesh-queue 0\n",
            "",
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(MARKER), text).unwrap();
            let err = QUEUE.open(dir.path()).unwrap_err().to_string();
            assert!(err.contains("not an attackmesh-queue format marker"), "{text:?}: {err}");
        }
    }
}
