//! Where Sigma rule files come from: the SigmaHQ Windows rules embedded in the binary (one
//! gzip'd archive, `crates/attack/sigma/windows.json.gz`, rebuilt by `scripts/sigma-archive`),
//! and a user's own rules under `<rules_dir>/sigma/`.
//!
//! Files are only read here; [`super::compile`] parses and compiles them.

use std::io::Read as _;
use std::path::Path;

use flate2::read::GzDecoder;
use serde::Deserialize;

use crate::error::Error;

/// The embedded archive of SigmaHQ Windows rules (Detection Rule License 1.1, see
/// `crates/attack/sigma/LICENSE` and `NOTICE.md`).
const EMBEDDED_ARCHIVE: &[u8] = include_bytes!("../../sigma/windows.json.gz");

/// Name of the subdirectory of `rules_dir` holding a user's Sigma rules.
pub const SIGMA_SUBDIR: &str = "sigma";

/// One rule file.
#[derive(Debug, Clone, Deserialize)]
pub struct SigmaFile {
    /// Path (relative to the SigmaHQ checkout for embedded rules, absolute for a directory's).
    pub path: String,
    /// The YAML text.
    pub text: String,
}

/// A set of rule files loaded together and reported together.
#[derive(Debug, Clone)]
pub struct SigmaPack {
    /// Pack name: `sigma-core`, `sigma-emerging-threats`, `sigma-threat-hunting`,
    /// `sigma-placeholder` for the embedded rules, `sigma-local` for a directory's.
    pub name: String,
    /// Version: the SigmaHQ commit for embedded packs, a content hash for a directory's.
    pub version: String,
    /// Where the pack came from (`embedded:…` or the directory).
    pub source: String,
    /// The rule files.
    pub files: Vec<SigmaFile>,
}

#[derive(Deserialize)]
struct Archive {
    source: String,
    files: Vec<SigmaFile>,
}

impl SigmaPack {
    /// The embedded SigmaHQ Windows rules, one pack per SigmaHQ folder.
    pub fn embedded() -> Result<Vec<SigmaPack>, Error> {
        let mut json = Vec::new();
        GzDecoder::new(EMBEDDED_ARCHIVE)
            .read_to_end(&mut json)
            .map_err(|e| Error::pack("embedded:sigma", format!("archive: {e}")))?;
        let archive: Archive =
            serde_json::from_slice(&json).map_err(|e| Error::pack("embedded:sigma", format!("archive: {e}")))?;
        let version = commit(&archive.source);
        let mut packs: Vec<SigmaPack> = Vec::new();
        for file in archive.files {
            let folder = file.path.split('/').next().unwrap_or_default();
            let name = match folder {
                "rules" => "sigma-core".to_owned(),
                other => format!("sigma-{}", other.trim_start_matches("rules-")),
            };
            match packs.iter_mut().find(|p| p.name == name) {
                Some(p) => p.files.push(file),
                None => packs.push(SigmaPack {
                    source: format!("embedded:sigma/{folder}"),
                    name,
                    version: version.clone(),
                    files: vec![file],
                }),
            }
        }
        Ok(packs)
    }

    /// Every `*.yml`/`*.yaml` file under `<rules_dir>/sigma/` (recursively, hidden entries
    /// skipped) as the pack `sigma-local`; `None` when there is no such directory.
    pub fn load_dir(rules_dir: &Path) -> Result<Option<SigmaPack>, Error> {
        let dir = rules_dir.join(SIGMA_SUBDIR);
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut paths = Vec::new();
        collect(&dir, &mut paths)?;
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        let mut hash = Fnv::default();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            let path = p.display().to_string();
            hash.write(path.as_bytes());
            hash.write(text.as_bytes());
            files.push(SigmaFile { path, text });
        }
        Ok(Some(SigmaPack {
            name: "sigma-local".into(),
            version: format!("{:08x}", hash.0 as u32),
            source: dir.display().to_string(),
            files,
        }))
    }
}

/// Rule files under `dir`, recursively.
pub fn rule_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let _ = collect(dir, &mut out);
    out.sort();
    out
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yml" | "yaml"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The short commit named by a `SOURCE.txt` line (`SigmaHQ/sigma at commit <sha> …`).
fn commit(source: &str) -> String {
    source
        .split_whitespace()
        .skip_while(|w| *w != "commit")
        .nth(1)
        .map(|sha| sha.chars().take(12).collect())
        .unwrap_or_else(|| "unknown".into())
}

/// FNV-1a, enough to tell rule directory contents apart in a version string.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
