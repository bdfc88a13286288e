//! Settings of the Elasticsearch sink (`siem_export.elasticsearch`).

use std::{path::PathBuf, time::Duration};

use attackmesh_runtime::{config::opt_scalar_string, secret::Secret};
use serde::{Deserialize, Serialize};

use crate::{
    error::Error,
    sinks::util::{
        Original,
        http::{check_credential, check_url},
    },
};

/// Elasticsearch sink settings; the sink is enabled when `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Base URL, e.g. `https://elastic.example:9200` (no credentials in it).
    pub url: Option<String>,
    /// API key (the base64 `id:api_key` value sent as `Authorization: ApiKey …`).
    pub api_key: Option<Secret>,
    /// File holding the API key instead (e.g. a mounted Secret); read again when it changes,
    /// so the key rotates without a restart.
    pub api_key_file: Option<PathBuf>,
    /// User for basic authentication.
    #[serde(deserialize_with = "opt_scalar_string")]
    pub username: Option<String>,
    /// Password for basic authentication.
    pub password: Option<Secret>,
    /// File holding the password instead; read again when it changes.
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle trusted in addition to the platform roots (self-signed clusters).
    pub ca_file: Option<PathBuf>,
    /// Index written to (and the index template's pattern `<index>*`). Documents are written
    /// with `index`, `_id = event_id`, `version = revision`, `version_type = external`, so a
    /// re-attributed event replaces its older revision and a resend is a no-op (409).
    pub index: String,
    /// Write to this data stream instead of `index`. Data streams only take `create`, so a
    /// re-attributed event (revision > 1) is a separate document with `_id = <event_id>-r<revision>`.
    #[serde(deserialize_with = "opt_scalar_string")]
    pub data_stream: Option<String>,
    /// Install the index template with ECS mappings at start-up.
    pub install_template: bool,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Whether documents carry the detector's record as `event.original` (`keep`, the default)
    /// or only its parsed attributes in `attackmesh.attributes` (`drop`).
    pub original: Original,
    /// Timeout of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            api_key_file: None,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            index: "attackmesh-alerts".into(),
            data_stream: None,
            install_template: true,
            gzip: true,
            original: Original::Keep,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl ElasticsearchConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Checks values and files.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        check_url("elasticsearch.url", self.url.as_deref().unwrap_or_default())?;
        check_credential(
            "elasticsearch.api_key",
            self.api_key.as_ref(),
            self.api_key_file.as_deref(),
        )?;
        check_credential(
            "elasticsearch.password",
            self.password.as_ref(),
            self.password_file.as_deref(),
        )?;
        let has_key = self.api_key.as_ref().is_some_and(|k| !k.is_empty()) || self.api_key_file.is_some();
        let has_password = self.password.as_ref().is_some_and(|p| !p.is_empty()) || self.password_file.is_some();
        if has_key && self.username.is_some() {
            return Err(Error::Config(
                "elasticsearch: set either api_key(_file) or username/password(_file), not both".into(),
            ));
        }
        if self.username.is_some() != has_password {
            return Err(Error::Config(
                "elasticsearch: username and password must be set together".into(),
            ));
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(Error::Config(format!(
                "elasticsearch.ca_file {} is not a readable file",
                ca.display()
            )));
        }
        let target = self.target();
        let valid = !target.is_empty()
            && target.len() <= 200
            && !target.starts_with(['-', '_', '+'])
            && target
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            return Err(Error::Config(format!(
                "elasticsearch: index/data_stream `{target}` must be lower-case letters, digits, '-', '_' or '.'"
            )));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(Error::Config(
                "elasticsearch.request_timeout must be at least 100ms".into(),
            ));
        }
        Ok(())
    }

    /// The index or data stream written to.
    pub fn target(&self) -> &str {
        self.data_stream.as_deref().unwrap_or(&self.index)
    }
}
