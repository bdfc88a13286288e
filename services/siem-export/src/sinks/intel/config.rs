//! Settings of the intel sink (`siem_export.intel`): how to reach the intel service (the
//! runtime's [`PeerConfig`]) and what to send it.

use attackmesh_runtime::peer::PeerConfig;
use serde::{Deserialize, Serialize};

use crate::{config::RetryConfig, error::Error};

/// Intel sink settings; the sink is enabled when `endpoints` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntelSinkConfig {
    /// The intel service: `endpoints` (`dns:///` balances over a headless Service's replicas),
    /// `token_file` (role admin; re-read before each request) or `token`, `tls`,
    /// `connect_timeout`, and `request_timeout` and `backoff`, which override the `retry`
    /// section's for this sink.
    #[serde(flatten)]
    pub peer: PeerConfig,
    /// TAXII collection the events' indicators go to; empty means intel's default collection.
    pub collection_id: String,
    /// Events with a `confidence_score` below this are counted as delivered without being sent.
    pub min_confidence: f64,
}

impl Default for IntelSinkConfig {
    fn default() -> Self {
        Self {
            peer: PeerConfig::default(),
            collection_id: String::new(),
            min_confidence: 0.0,
        }
    }
}

impl IntelSinkConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.peer.has_endpoints()
    }

    /// The `retry` section as this sink applies it: its own `request_timeout` and `backoff`
    /// when set.
    pub fn retry(&self, base: &RetryConfig) -> RetryConfig {
        let backoff = self.peer.backoff_or(base.backoff());
        RetryConfig {
            initial_backoff: backoff.initial,
            max_backoff: backoff.max,
            request_timeout: self.peer.request_timeout_or(base.request_timeout),
            ..base.clone()
        }
    }

    /// Checks values (nothing when the sink is disabled).
    pub fn validate(&self) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        self.peer
            .validate()
            .map_err(|why| Error::Config(format!("intel.{why}")))?;
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(Error::Config(format!(
                "intel.min_confidence must be within [0, 1], got {}",
                self.min_confidence
            )));
        }
        Ok(())
    }
}
