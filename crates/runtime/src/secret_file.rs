//! Files that hold secrets — token files, token digest files, TLS certificates and keys,
//! password and API key files: permission checks, and [`Watched`], which notices when such
//! files change so they rotate without a restart.
//!
//! A secret file that other users may read or write is reported, never refused (the
//! operator decides). The rule is PostgreSQL's for its key files: the owner alone may read
//! and write (`0600` or less); a file owned by root may also be readable by its group (`0640`),
//! which is how Kubernetes mounts Secrets for a pod's `fsGroup`. This module only looks at
//! metadata: it never reads a secret and never logs one. A file that cannot be examined is left
//! to the code that reads it to report.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest as _, Sha256};

/// A secret file that users other than its owner can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// The setting that names the file (`auth.token_files[0]`, `tls.key_file`).
    pub setting: String,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits (`0o644`).
    pub mode: u32,
}

impl std::fmt::Display for Exposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.mode & 0o006 != 0 {
            "other users"
        } else {
            "its group"
        };
        write!(
            f,
            "{} {} can be read or written by {who} (mode {:04o}); restrict it to its owner: chmod 600 {}",
            self.setting,
            self.path.display(),
            self.mode,
            self.path.display()
        )
    }
}

/// Checks one secret file named by `setting`; `None` when it is private enough, missing or
/// not on a Unix file system.
pub fn check(setting: &str, path: &Path) -> Option<Exposed> {
    let (mode, owner) = mode_and_owner(path)?;
    let allowed = if owner == 0 { 0o640 } else { 0o600 };
    // Execute bits grant nothing on a regular file's contents.
    (mode & 0o666 & !allowed != 0).then(|| Exposed {
        setting: setting.to_owned(),
        path: path.to_owned(),
        mode,
    })
}

/// Checks every `(setting, path)` pair, in order.
pub fn check_all<'a>(files: impl IntoIterator<Item = (String, &'a Path)>) -> Vec<Exposed> {
    files
        .into_iter()
        .filter_map(|(setting, path)| check(&setting, path))
        .collect()
}

/// Logs a warning for each exposed file.
pub fn warn_all(exposed: &[Exposed]) {
    for e in exposed {
        tracing::warn!(
            setting = %e.setting,
            path = %e.path.display(),
            mode = %format_args!("{:04o}", e.mode),
            "secret file can be read or written by other users; restrict it to its owner (chmod 600)"
        );
    }
}

/// Metric: changed secret files (credentials, TLS certificates and keys) that could not be loaded.
pub const RELOAD_FAILURES_METRIC: &str = "secret_reload_failures";

static RELOAD_FAILURES: LazyLock<Counter> = LazyLock::new(|| {
    let counter = Counter::default();
    crate::metrics::register(
        RELOAD_FAILURES_METRIC,
        "Changed secret files (credentials, TLS certificates and keys) that could not be loaded; the previous ones stay in use",
        counter.clone(),
    );
    counter
});

/// Reports a changed secret file that could not be loaded (the previous value stays in use):
/// logs the error, which names the file and never the contents, and counts it.
pub fn reload_failed(what: &str, error: &crate::error::Error) {
    RELOAD_FAILURES.inc();
    tracing::error!(what, %error, "changed secret file not loaded; the previous one stays in use");
}

/// How long the contents of watched files are trusted without reading them again, even when
/// their metadata looks unchanged (a file system with coarse timestamps, a rewrite in place of
/// the same size).
pub const REREAD_EVERY: Duration = Duration::from_secs(10);

/// A set of files read together (a certificate and its key), checked for change each time the
/// caller asks: a `stat` per file, and a full read when the metadata moved (a Kubernetes
/// Secret's symlink swap, an editor's rename, a rewrite) or [`REREAD_EVERY`] passed. Changes
/// are decided on the contents, so a new timestamp over the same bytes is no change.
#[derive(Debug)]
pub struct Watched {
    paths: Vec<PathBuf>,
    stamps: Option<Vec<Option<Stamp>>>,
    read_at: Option<Instant>,
    digest: Option<[u8; 32]>,
}

/// What `stat` says of a file: enough to notice a swap or a rewrite without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Watched {
    /// Watches `paths`; the first [`Watched::changed`] reads them.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            stamps: None,
            read_at: None,
            digest: None,
        }
    }

    /// The watched files, in order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The contents of every file, in order, when they differ from what the last call returned
    /// (the first call always returns them); `Ok(None)` when nothing changed. A file that cannot
    /// be read is an error once: later calls say `Ok(None)` until a file changes again, so a
    /// caller keeps what it loaded before and reports each bad state once.
    pub fn changed(&mut self) -> Result<Option<Vec<Vec<u8>>>, (PathBuf, std::io::Error)> {
        let stamps: Vec<Option<Stamp>> = self.paths.iter().map(|p| stamp(p)).collect();
        let fresh = self.read_at.is_some_and(|at| at.elapsed() < REREAD_EVERY);
        if fresh && self.stamps.as_ref() == Some(&stamps) {
            return Ok(None);
        }
        self.stamps = Some(stamps);
        self.read_at = Some(Instant::now());
        let mut contents = Vec::with_capacity(self.paths.len());
        let mut hasher = Sha256::new();
        for path in &self.paths {
            let bytes = std::fs::read(path).map_err(|e| (path.clone(), e))?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
            contents.push(bytes);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if self.digest == Some(digest) {
            return Ok(None);
        }
        self.digest = Some(digest);
        Ok(Some(contents))
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    // Follows symlinks: a Secret's `..data` swap shows as a new inode behind the same name.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino())
        },
    })
}

#[cfg(unix)]
fn mode_and_owner(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    // Follows symlinks: Kubernetes mounts Secret keys as links into a `..data` directory.
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.mode() & 0o7777, meta.uid()))
}

#[cfg(not(unix))]
fn mode_and_owner(_path: &Path) -> Option<(u32, u32)> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn file_with_mode(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&path, "token").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn files_others_can_reach_are_reported_with_setting_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let owner_is_root = {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(dir.path()).unwrap().uid() == 0
        };
        for mode in [0o600, 0o400, 0o700] {
            let path = file_with_mode(dir.path(), mode);
            assert_eq!(check("tls.key_file", &path), None, "{mode:o} is private");
        }
        for mode in [0o644, 0o604, 0o602, 0o620, 0o666] {
            let path = file_with_mode(dir.path(), mode);
            let exposed = check("auth.token_files[0]", &path).unwrap_or_else(|| panic!("{mode:o}"));
            assert_eq!(exposed.mode, mode);
            let text = exposed.to_string();
            assert!(
                text.contains("auth.token_files[0]") && text.contains(&path.display().to_string()),
                "{text}"
            );
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
        }
        // Group-readable is the fsGroup shape of a root-owned Kubernetes Secret, not a user's.
        let path = file_with_mode(dir.path(), 0o640);
        assert_eq!(check("tls.key_file", &path).is_some(), !owner_is_root);
        assert_eq!(check("tls.key_file", &dir.path().join("missing")), None);
    }

    #[test]
    fn watched_files_report_each_new_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "two").unwrap();
        let mut watched = Watched::new(vec![a.clone(), b.clone()]);
        assert_eq!(watched.changed().unwrap(), Some(vec![b"one".to_vec(), b"two".to_vec()]));
        assert_eq!(watched.changed().unwrap(), None, "nothing changed");
        // A Kubernetes-style swap: a new file renamed over the old name.
        std::fs::write(dir.path().join("b.new"), "three").unwrap();
        std::fs::rename(dir.path().join("b.new"), &b).unwrap();
        assert_eq!(
            watched.changed().unwrap(),
            Some(vec![b"one".to_vec(), b"three".to_vec()])
        );
        std::fs::remove_file(&a).unwrap();
        let (path, _) = watched.changed().unwrap_err();
        assert_eq!(path, a);
        assert_eq!(watched.changed().unwrap(), None, "a bad state is reported once");
        std::fs::write(&a, "one").unwrap();
        assert_eq!(
            watched.changed().unwrap(),
            None,
            "the same contents as last loaded are no change"
        );
        std::fs::write(&a, "four").unwrap();
        assert_eq!(
            watched.changed().unwrap(),
            Some(vec![b"four".to_vec(), b"three".to_vec()])
        );
    }
}
