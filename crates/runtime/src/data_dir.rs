//! The check of a service's data directory before the service starts: it is a directory (or
//! can become one) and the service may write in it.
//!
//! Run by `serve` and `--check-config` for the services about to run, so a wrong path is a
//! configuration error (exit 64) naming the setting and the path, not an I/O error from deep
//! inside a queue or database later. It creates nothing: a directory that does not exist yet
//! is judged by its nearest existing ancestor.

use std::{io::ErrorKind, path::Path};

use crate::error::Error;

/// Checks the data directory named by `setting` (`siem_export.data_dir`).
pub fn check(setting: &str, path: &Path) -> Result<(), Error> {
    let bad = |why: String| Err(Error::ConfigInvalid(format!("{setting} {}: {why}", path.display())));
    // The first ancestor that exists (a relative path without one is under the working directory).
    let mut existing = path;
    let meta = loop {
        match std::fs::metadata(existing) {
            Ok(meta) => break meta,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => match existing.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                _ => {
                    existing = Path::new(".");
                    match std::fs::metadata(existing) {
                        Ok(meta) => break meta,
                        Err(e) => return bad(format!("cannot examine the working directory: {e}")),
                    }
                }
            },
            Err(e) => return bad(format!("cannot examine {}: {e}", existing.display())),
        }
    };
    if !meta.is_dir() {
        return if existing == path {
            bad("exists and is not a directory".into())
        } else {
            bad(format!("{} is not a directory", existing.display()))
        };
    }
    if let Err(e) = probe_write(existing) {
        let what = if existing == path {
            "is not writable".to_owned()
        } else {
            format!("cannot be created: {} is not writable", existing.display())
        };
        return bad(format!("{what} ({e})"));
    }
    Ok(())
}

/// Creates and removes a file in `dir`: permission bits alone do not say what a process may
/// do (root, ACLs, read-only mounts).
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".attackmesh-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_creatable_paths_pass_files_fail_with_setting_and_path() {
        let dir = tempfile::tempdir().unwrap();
        check("x.data_dir", dir.path()).unwrap();
        check("x.data_dir", &dir.path().join("new/deeper")).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the check creates nothing"
        );

        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        for path in [file.clone(), file.join("below")] {
            let err = check("siem_export.data_dir", &path).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("siem_export.data_dir"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("not a directory"), "{text}");
            assert_eq!(err.exit_code(), 64);
        }
    }
}
