//! Settings of the Splunk HEC sink (`siem_export.splunk_hec`).

use std::{path::PathBuf, time::Duration};

use attackmesh_runtime::{config::opt_scalar_string, secret::Secret};
use serde::{Deserialize, Serialize};

use crate::{
    error::Error,
    sinks::util::{
        hec::{DEFAULT_SOURCE, DEFAULT_SOURCETYPE},
        http::{check_credential, check_url},
    },
};

/// Splunk HTTP Event Collector settings; the sink is enabled when `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplunkHecConfig {
    /// Base URL of the collector, e.g. `https://splunk.example:8088` (events go to
    /// `/services/collector/event`; no credentials in the URL).
    pub url: Option<String>,
    /// HEC token, sent as `Authorization: Splunk <token>`.
    pub token: Option<Secret>,
    /// File holding the HEC token instead (e.g. a mounted Secret); read again when it changes,
    /// so the token rotates without a restart.
    pub token_file: Option<PathBuf>,
    /// Index for the events (must be allowed for the token); the token's default when unset.
    #[serde(deserialize_with = "opt_scalar_string")]
    pub index: Option<String>,
    /// `source` of the events.
    pub source: String,
    /// `sourcetype` of the events.
    pub sourcetype: String,
    /// `host` of the events; the detector's name (`source_service`) when unset.
    #[serde(deserialize_with = "opt_scalar_string")]
    pub host: Option<String>,
    /// Use indexer acknowledgement: a batch counts as delivered only once `/services/collector/ack`
    /// confirms it was indexed. Falls back to plain delivery if the token has ack disabled.
    pub ack: bool,
    /// Longest wait for an indexer acknowledgement before the batch is sent again.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Interval between acknowledgement polls.
    #[serde(with = "humantime_serde")]
    pub ack_poll_interval: Duration,
    /// PEM CA bundle trusted in addition to the platform roots.
    pub ca_file: Option<PathBuf>,
    /// Largest request body; a batch is cut into several requests to stay below it.
    pub max_request_bytes: usize,
    /// Timeout of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for SplunkHecConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            token_file: None,
            index: None,
            source: DEFAULT_SOURCE.into(),
            sourcetype: DEFAULT_SOURCETYPE.into(),
            host: None,
            ack: false,
            ack_timeout: Duration::from_secs(60),
            ack_poll_interval: Duration::from_millis(500),
            ca_file: None,
            max_request_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl SplunkHecConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Checks values and files.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        check_url("splunk_hec.url", self.url.as_deref().unwrap_or_default())?;
        check_credential("splunk_hec.token", self.token.as_ref(), self.token_file.as_deref())?;
        if self.token.as_ref().is_none_or(Secret::is_empty) && self.token_file.is_none() {
            return Err(Error::Config(
                "splunk_hec.token or splunk_hec.token_file is required when splunk_hec.url is set".into(),
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(Error::Config(
                "splunk_hec.max_request_bytes must be at least 1024".into(),
            ));
        }
        if self.ack_poll_interval.is_zero() || self.ack_timeout < self.ack_poll_interval {
            return Err(Error::Config(
                "splunk_hec: ack_poll_interval must be above 0 and below ack_timeout".into(),
            ));
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(Error::Config(format!(
                "splunk_hec.ca_file {} is not a readable file",
                ca.display()
            )));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(Error::Config(
                "splunk_hec.request_timeout must be at least 100ms".into(),
            ));
        }
        Ok(())
    }
}
