//! Settings of the file sink (`siem_export.file`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What each NDJSON line holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileShape {
    /// The canonical JSON of `EnrichedEvent` (lossless; `attackmesh navigator` and replays read it).
    #[default]
    Canonical,
    /// The ECS document the Elasticsearch sink sends.
    Ecs,
    /// The HEC envelope the Splunk sink sends.
    Hec,
}

/// File sink settings; the sink is enabled when `path` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// The file written (created with its directory); rotated files sit beside it.
    pub path: Option<PathBuf>,
    /// Line format.
    pub shape: FileShape,
    /// Size at which the file is rotated to `<path>.<UTC time>`.
    pub rotate_bytes: u64,
    /// Rotated files kept (older ones are deleted); 0 keeps all.
    pub keep_files: usize,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            path: None,
            shape: FileShape::Canonical,
            rotate_bytes: 100 << 20,
            keep_files: 10,
        }
    }
}

impl FileSinkConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.path.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    }

    /// Checks values.
    pub fn validate(&self) -> Result<(), Error> {
        if self.rotate_bytes < 4096 {
            return Err(Error::Config(format!(
                "file.rotate_bytes must be at least 4096, got {}",
                self.rotate_bytes
            )));
        }
        if let Some(p) = &self.path
            && p.is_dir()
        {
            return Err(Error::Config(format!("file.path {} is a directory", p.display())));
        }
        Ok(())
    }
}
