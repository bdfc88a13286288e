//! Settings of the correlation sink (`siem_export.correlation`).

use attackmesh_runtime::peer::PeerConfig;
use serde::{Deserialize, Serialize};

use crate::{config::RetryConfig, error::Error};

/// Correlation sink settings; the sink is enabled when `endpoints` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationSinkConfig {
    /// The correlation replicas, one endpoint each, in ordinal order (replica `i` is
    /// `endpoints[i]`; never a balanced `dns:///` name: each entity must reach its own replica),
    /// with `token_file` or `token` (role admin), `tls`, `connect_timeout`, and
    /// `request_timeout` and `backoff`, which override the `retry` section's for this sink.
    #[serde(flatten)]
    pub peer: PeerConfig,
}

impl CorrelationSinkConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.peer.has_endpoints()
    }

    /// The `retry` section as this sink applies it.
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
            .map_err(|why| Error::Config(format!("correlation.{why}")))?;
        if let Some(e) = self.peer.endpoints.iter().find(|e| e.starts_with("dns:")) {
            return Err(Error::Config(format!(
                "correlation.endpoints: {e} balances over replicas; list each replica's own address"
            )));
        }
        Ok(())
    }

    /// The link to replica `i` alone.
    pub(crate) fn replica(&self, i: usize) -> PeerConfig {
        PeerConfig {
            endpoints: vec![self.peer.endpoints[i].clone()],
            ..self.peer.clone()
        }
    }
}
