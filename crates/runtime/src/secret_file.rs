//! Permission checks of files that hold secrets: token files, token digest files, TLS private
//! keys and password files.
//!
//! A secret file that other users may read or write is reported, never refused (the
//! operator decides). The rule is PostgreSQL's for its key files: the owner alone may read
//! and write (`0600` or less); a file owned by root may also be readable by its group (`0640`),
//! which is how Kubernetes mounts Secrets for a pod's `fsGroup`. This module only looks at
//! metadata: it never reads a secret and never logs one. A file that cannot be examined is left
//! to the code that reads it to report.

use std::path::{Path, PathBuf};

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
}
