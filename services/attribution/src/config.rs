//! Configuration of the attribution service (the `attribution` section of the runtime config).
//!
//! Defaults work offline: the embedded knowledge base and rule packs, no hot reload. Only
//! parsing, defaults and validation live here; the runtime crate layers file and env values.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use attackmesh_attack::{Engine, Kb};

use crate::error::Error;

/// Largest batch `Attribute` accepts (the contract's limit).
pub const MAX_BATCH_LIMIT: usize = 10_000;

/// Attribution service settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionConfig {
    /// A newer knowledge base: a compact KB or an official ATT&CK bundle (`.json`/`.json.gz`).
    /// Unset: the embedded ATT&CK 18.1 knowledge base.
    pub kb_path: Option<PathBuf>,
    /// Directory of rule packs (`*.yaml`, `*.yml`, `*.json`) applied over the embedded packs
    /// (same pack name replaces, `enabled: false` removes), and of Sigma rules under its
    /// `sigma/` folder (added to the embedded SigmaHQ rules); watched for changes.
    pub rules_dir: Option<PathBuf>,
    /// How often the rules directory is checked for changes, e.g. "5s".
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Most events one `Attribute` batch may hold (1 to 10,000).
    pub max_batch: usize,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            kb_path: None,
            rules_dir: None,
            reload_interval: Duration::from_secs(5),
            max_batch: MAX_BATCH_LIMIT,
        }
    }
}

impl AttributionConfig {
    /// Checks values and that configured paths exist.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_batch == 0 || self.max_batch > MAX_BATCH_LIMIT {
            return Err(Error::Config(format!(
                "max_batch must be 1 to {MAX_BATCH_LIMIT}, got {}",
                self.max_batch
            )));
        }
        if self.reload_interval < Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "reload_interval must be at least 100ms, got {}",
                humantime_serde::re::humantime::format_duration(self.reload_interval)
            )));
        }
        if let Some(p) = self.kb_path.as_ref().filter(|p| !p.is_file()) {
            return Err(Error::Config(format!("kb_path {} is not a readable file", p.display())));
        }
        if let Some(d) = self.rules_dir.as_ref().filter(|d| !d.is_dir()) {
            return Err(Error::Config(format!("rules_dir {} is not a directory", d.display())));
        }
        Ok(())
    }

    /// Builds the engine this configuration describes.
    pub fn build_engine(&self) -> Result<Engine, Error> {
        let kb = Kb::open(self.kb_path.as_deref())?;
        Ok(Engine::with_rules_dir(kb, self.rules_dir.as_deref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_human_durations() {
        let c: AttributionConfig = serde_json::from_str(r#"{"reload_interval":"250ms"}"#).expect("parses");
        assert_eq!(c.reload_interval, Duration::from_millis(250));
        assert_eq!(c.max_batch, MAX_BATCH_LIMIT);
        c.validate().expect("valid");
        assert_eq!(AttributionConfig::default().reload_interval, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<AttributionConfig>(r#"{"max_batchh":3}"#).is_err());
        let c = AttributionConfig {
            max_batch: 20_000,
            ..Default::default()
        };
        assert!(c.validate().expect_err("too big").to_string().contains("max_batch"));
        let c = AttributionConfig {
            rules_dir: Some("/nonexistent/rules".into()),
            ..Default::default()
        };
        assert!(c.validate().expect_err("missing").to_string().contains("rules_dir"));
    }
}
