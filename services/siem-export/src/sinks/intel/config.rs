//! Settings of the intel sink (`siem_export.intel`).

use std::{fmt, path::PathBuf};

use attackmesh_runtime::client::Target;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Intel sink settings; the sink is enabled when `endpoint` is set.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntelSinkConfig {
    /// The intel service's gRPC address: `http://host:port`, `https://host:port` (needs
    /// `tls.ca_file`) or `host:port`.
    pub endpoint: Option<String>,
    /// TAXII collection the events' indicators go to; empty means intel's default collection.
    pub collection_id: String,
    /// File holding the bearer token (role admin) presented to intel; re-read before each request.
    pub token_file: Option<PathBuf>,
    /// A token known only to this process (`serve all`), used when `token_file` is unset.
    #[serde(skip)]
    pub internal_token: Option<String>,
    /// Events with a `confidence_score` below this are counted as delivered without being sent.
    pub min_confidence: f64,
}

impl Default for IntelSinkConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            collection_id: String::new(),
            token_file: None,
            internal_token: None,
            min_confidence: 0.0,
        }
    }
}

impl fmt::Debug for IntelSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntelSinkConfig")
            .field("endpoint", &self.endpoint)
            .field("collection_id", &self.collection_id)
            .field("token_file", &self.token_file)
            .field("min_confidence", &self.min_confidence)
            .finish_non_exhaustive()
    }
}

impl IntelSinkConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|e| !e.trim().is_empty())
    }

    /// The endpoint as host, port and whether `https://` was written.
    pub(crate) fn target(&self) -> Result<(String, u16, bool), Error> {
        let endpoint = self.endpoint.as_deref().unwrap_or_default();
        let bad = |why: &str| Error::Config(format!("intel.endpoint `{endpoint}`: {why}"));
        match Target::parse(endpoint).map_err(|why| bad(&why))? {
            Target::Static { host, port, https } => Ok((host, port, https)),
            Target::Dns { .. } => Err(bad("dns:/// is not supported here; use http(s)://host:port")),
        }
    }

    /// Checks values (nothing when the sink is disabled).
    pub fn validate(&self) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        self.target()?;
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(Error::Config(format!(
                "intel.min_confidence must be within [0, 1], got {}",
                self.min_confidence
            )));
        }
        if let Some(path) = &self.token_file
            && let Err(e) = std::fs::metadata(path)
        {
            return Err(Error::Config(format!(
                "intel.token_file {}: {}",
                path.display(),
                e.kind()
            )));
        }
        Ok(())
    }
}
