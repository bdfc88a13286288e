//! Settings of a file sink: `siem_export.file` (sink `file`) and each entry of
//! `siem_export.files` (sink `file-<name>`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{error::Error, sinks::util::Original};

/// What each NDJSON line holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileShape {
    /// The canonical JSON of `EnrichedEvent` (lossless; `attackmesh navigator` and replays read it).
    #[default]
    Canonical,
    /// The ECS document for Elastic Security, as indexed over `_bulk`
    /// ([`ecs`](crate::sinks::util::ecs)).
    Ecs,
    /// The Splunk HEC event envelope, with the default `host`, `source` and `sourcetype`
    /// ([`hec`](crate::sinks::util::hec)).
    Hec,
    /// The OCSF 1.8.0 Detection Finding for security data lakes
    /// ([`ocsf`](crate::sinks::util::ocsf)).
    Ocsf,
}

/// What becomes of the written lines in the kernel's page cache once their batch is synced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageCache {
    /// Dropped from it (`posix_fadvise` `DONTNEED`): the sink never reads its lines again. A
    /// busy sink otherwise fills memory with them, memory that counts in its container's usage;
    /// and in a virtual machine that gives free memory back to its host (free page reporting,
    /// ballooning), every new page-cache page costs a fault in the host as well, where a
    /// dropped page is taken again at once.
    #[default]
    Drop,
    /// Left in it, for a reader on the same machine that follows the file as it is written.
    Keep,
}

/// Default of [`FileSinkConfig::dedup_ids`]: about 15 MB of memory per file sink.
pub const DEFAULT_DEDUP_IDS: usize = 100_000;
/// Largest [`FileSinkConfig::dedup_ids`].
pub const MAX_DEDUP_IDS: usize = 10_000_000;

/// File sink settings; the sink is enabled when `path` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// Name of an extra sink in `siem_export.files` (required there, unused in
    /// `siem_export.file`): the sink is called `file-<name>`. Lowercase letters, digits and `-`,
    /// 1 to 32 characters, starting with a letter or digit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The file written (created with its directory); rotated files sit beside it.
    pub path: Option<PathBuf>,
    /// Line format.
    pub shape: FileShape,
    /// Whether lines carry the detector's record as it arrived (`keep`, the default) or only
    /// its parsed attributes (`drop`); in the ECS shape either way it is written once. The HEC
    /// shape never carries it (its attributes are the record). The canonical shape is the
    /// contract's lossless JSON of the event, so under `keep` it holds the record and its
    /// attributes both; `drop` leaves the record out.
    pub original: Original,
    /// Size at which the file is rotated to `<path>.<UTC time>`.
    pub rotate_bytes: u64,
    /// Rotated files kept (older ones are deleted); 0 keeps all.
    pub keep_files: usize,
    /// How many of the most recently written distinct event ids the sink remembers (in memory
    /// and under `<data_dir>/delivered/`), so that a resent event (same `event_id` and
    /// `revision`) is not written again; a higher revision is. 0 writes every copy.
    pub dedup_ids: usize,
    /// Whether the written lines leave the kernel's page cache once synced (`drop`, the
    /// default) or stay in it (`keep`); see [`PageCache`]. Linux only: elsewhere both keep them.
    pub page_cache: PageCache,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            name: None,
            path: None,
            shape: FileShape::Canonical,
            original: Original::Keep,
            rotate_bytes: 100 << 20,
            keep_files: 10,
            dedup_ids: DEFAULT_DEDUP_IDS,
            page_cache: PageCache::Drop,
        }
    }
}

impl FileSinkConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.path.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    }

    /// Checks values; `field` is where the settings sit (`file`, `files[1]`) for messages.
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        if self.rotate_bytes < 4096 {
            return Err(Error::Config(format!(
                "{field}.rotate_bytes must be at least 4096, got {}",
                self.rotate_bytes
            )));
        }
        if self.dedup_ids > MAX_DEDUP_IDS {
            return Err(Error::Config(format!(
                "{field}.dedup_ids must be at most {MAX_DEDUP_IDS}, got {}",
                self.dedup_ids
            )));
        }
        if let Some(p) = &self.path
            && p.is_dir()
        {
            return Err(Error::Config(format!("{field}.path {} is a directory", p.display())));
        }
        Ok(())
    }
}

/// Checks a `files[..].name`: `[a-z0-9][a-z0-9-]{0,31}` (it becomes a directory name and a
/// metrics label).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok || name.len() > 32 {
        return Err(format!(
            "`{name}` must be 1 to 32 lowercase letters, digits or `-`, starting with a letter or digit"
        ));
    }
    Ok(())
}
