//! Configuration of the correlation service (the `correlation` section of the product config),
//! and the engine it describes: which rules (the built-in pack and packs from `rules_dir`), which
//! sources are allowed, and the memory and lateness bounds. The CLI's offline `enrich` builds
//! its engine from the same section.

use std::{path::PathBuf, time::Duration};

use attackmesh_campaign::CampaignConfig;
use attackmesh_runtime::peer::PeerConfig;
use serde::{Deserialize, Serialize};

use crate::{
    engine::{
        Allow, Engine, Limits, Pack,
        matcher::{RawMap, Selection},
        rules::BUILTIN,
    },
    error::Error,
};

/// Correlation service settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// Directory of the replica's state (`state.bin`: windows and undelivered findings; `wal.log`:
    /// batches applied since).
    pub data_dir: PathBuf,
    /// Use the built-in network behaviours pack.
    pub builtin_rules: bool,
    /// Directory of extra packs (`*.yml`, `*.yaml`): Sigma correlation rules and selections.
    pub rules_dir: Option<PathBuf>,
    /// Sources exempt from rules, e.g. admin jump hosts:
    /// `[{rules: [lateral_movement_rdp], match: {source.ip: [10.0.0.5]}}]` (no `rules`: all).
    pub allow: Vec<AllowConfig>,
    /// Windows kept in total (one per rule and entity); beyond it the oldest are evicted.
    pub max_groups: usize,
    /// Events kept per window.
    pub max_events_per_group: usize,
    /// How far behind the newest event time an event may arrive and still count.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Event ids remembered to recognise resent events.
    pub max_seen: usize,
    /// Enrichment, where findings go (`Ingest`): `endpoints`, `token_file` or `token` (role
    /// detector or admin), `tls`, `connect_timeout`, `request_timeout`, `backoff`. In
    /// `serve all`, unset endpoints mean this process's enrichment listener.
    pub enrichment: PeerConfig,
    /// Build campaigns from the observed events (and this replica's findings) and deliver their
    /// alerts to `export`. Off, or `export` without endpoints outside `serve all`: none are built.
    pub build_campaigns: bool,
    /// How campaigns are built: `inactivity`, `max_open_campaigns`, `never_link`,
    /// `severity_weights`, `rules`, … (defaults: the campaign library's).
    pub campaigns: CampaignConfig,
    /// siem-export, where campaign alerts go (`Export`): `endpoints`, `token_file` or `token`
    /// (role detector or admin), `tls`, `request_timeout`, `backoff`. In `serve all`, unset
    /// endpoints mean this process's siem-export listener.
    pub export: PeerConfig,
    /// ATT&CK bundle campaigns rank groups with (default: the built-in release).
    pub kb_path: Option<PathBuf>,
}

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// Rule ids or names it exempts from; empty: every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The events it exempts, as a selection map (`source.ip|cidr: [10.0.9.0/24]`).
    #[serde(rename = "match")]
    pub matches: RawMap,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            data_dir: PathBuf::from("attackmesh-data/correlation"),
            builtin_rules: true,
            rules_dir: None,
            allow: Vec::new(),
            max_groups: limits.max_groups,
            max_events_per_group: limits.max_events_per_group,
            allowed_lateness: limits.allowed_lateness,
            max_seen: limits.max_seen,
            enrichment: PeerConfig::default(),
            build_campaigns: true,
            campaigns: CampaignConfig::default(),
            export: PeerConfig::default(),
            kb_path: None,
        }
    }
}

impl CorrelationConfig {
    /// Checks values and compiles the rules (so a bad pack is a configuration error).
    pub fn validate(&self) -> Result<(), Error> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Config("data_dir must be set".into()));
        }
        if self.max_groups < 10 || self.max_events_per_group == 0 || self.max_seen == 0 {
            return Err(Error::Config(
                "max_groups must be at least 10, max_events_per_group and max_seen at least 1".into(),
            ));
        }
        if self.enrichment.has_endpoints() {
            self.enrichment
                .validate()
                .map_err(|why| Error::Config(format!("enrichment.{why}")))?;
        }
        self.campaigns
            .validate()
            .map_err(|e| Error::Config(format!("campaigns: {e}")))?;
        if self.export.has_endpoints() {
            self.export
                .validate()
                .map_err(|why| Error::Config(format!("export.{why}")))?;
        }
        self.engine().map(|_| ())
    }

    /// True when this replica builds campaigns: `build_campaigns` and somewhere to send them.
    pub fn campaigns_on(&self) -> bool {
        self.build_campaigns && self.export.has_endpoints()
    }

    /// The memory and lateness bounds.
    pub fn limits(&self) -> Limits {
        Limits {
            max_groups: self.max_groups,
            max_events_per_group: self.max_events_per_group,
            allowed_lateness: self.allowed_lateness,
            max_seen: self.max_seen,
        }
    }

    /// Reads the packs and builds a fresh engine.
    pub fn engine(&self) -> Result<Engine, Error> {
        let mut texts: Vec<(String, String)> = Vec::new();
        if self.builtin_rules {
            texts.push(("built-in network.yml".into(), BUILTIN.into()));
        }
        if let Some(dir) = &self.rules_dir {
            let read =
                std::fs::read_dir(dir).map_err(|e| Error::Config(format!("rules_dir {}: {e}", dir.display())))?;
            let mut paths: Vec<PathBuf> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect();
            paths.sort();
            for path in paths {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                texts.push((path.display().to_string(), text));
            }
        }
        let borrowed: Vec<(&str, &str)> = texts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let pack = Pack::parse(&borrowed).map_err(Error::Config)?;
        let allow = self
            .allow
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(Allow {
                    rules: a.rules.clone(),
                    selection: Selection::compile(std::slice::from_ref(&a.matches), None)
                        .map_err(|e| Error::Config(format!("allow[{i}]: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Engine::new(pack, allow, self.limits()).map_err(Error::Config)
    }
}
