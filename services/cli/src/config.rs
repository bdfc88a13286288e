//! The product's one configuration document: shared runtime settings, listen addresses and one
//! section per service. Loaded by `serve`, `demo` and `--check-config` through the same path.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use attackmesh_attribution::config::AttributionConfig;
use attackmesh_runtime::{
    Error,
    auth::AuthConfig,
    config::{RuntimeConfig, load},
    http::HttpLimits,
    peer::PeerConfig,
    telemetry::TelemetryConfig,
    tls::TlsConfig,
};
use serde::{Deserialize, Serialize};

/// Environment variables kept from the seed, mapped to their config paths.
pub(crate) const ENV_ALIASES: &[(&str, &str)] = attackmesh_siem_export::ENV_ALIASES;

/// Everything `attackmesh serve` reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Logs and traces.
    pub(crate) telemetry: TelemetryConfig,
    /// Tokens and roles.
    pub(crate) auth: AuthConfig,
    /// TLS files.
    pub(crate) tls: TlsConfig,
    /// Timeouts and connection caps of the HTTP listeners (Falco input, TAXII, metrics).
    pub(crate) http: HttpLimits,
    /// Drain time on shutdown.
    #[serde(with = "humantime_serde", default = "default_grace")]
    pub(crate) shutdown_grace: Duration,
    /// Where each service listens.
    pub(crate) listen: Listen,
    /// Attribution service settings.
    pub(crate) attribution: AttributionConfig,
    /// Enrichment (ingest) service settings.
    pub(crate) enrichment: attackmesh_enrichment::EnrichmentConfig,
    /// SIEM export service settings (sinks, queues, dead letters).
    pub(crate) siem_export: attackmesh_siem_export::SiemExportConfig,
    /// Intel service settings (STIX 2.1 / TAXII 2.1).
    pub(crate) intel: attackmesh_intel::IntelConfig,
    /// Correlation service settings (stateful rules over entities).
    pub(crate) correlation: attackmesh_correlation::CorrelationConfig,
}

fn default_grace() -> Duration {
    RuntimeConfig::default().shutdown_grace
}

/// gRPC listen addresses, one per service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Listen {
    /// Attribution service.
    pub(crate) attribution: SocketAddr,
    /// Enrichment (ingest) service.
    pub(crate) enrichment: SocketAddr,
    /// SIEM export service.
    pub(crate) siem_export: SocketAddr,
    /// Intel service.
    pub(crate) intel: SocketAddr,
    /// Correlation service.
    pub(crate) correlation: SocketAddr,
    /// Prometheus `/metrics` over HTTP (with the `tls` settings); not served when unset.
    pub(crate) metrics: Option<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Self {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            attribution: at(50051),
            enrichment: at(50052),
            siem_export: at(50053),
            intel: at(50054),
            correlation: at(50056),
            metrics: None,
        }
    }
}

impl Config {
    /// Loads and validates: defaults → file → `ATTACKMESH_…` variables of `env`.
    pub(crate) fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, Error> {
        let config = Self::read(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads like [`Config::load`] without validating, for callers that complete the
    /// configuration (the demo adds its tokens and listeners) and validate it then.
    pub(crate) fn read(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, Error> {
        load(file, env, ENV_ALIASES)
    }

    /// Checks every section.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.runtime().validate()?;
        self.attribution
            .validate()
            .map_err(|e| Error::ConfigInvalid(format!("attribution: {e}")))?;
        self.enrichment
            .validate()
            .map_err(|e| Error::ConfigInvalid(format!("enrichment: {e}")))?;
        self.siem_export
            .validate()
            .map_err(|e| Error::ConfigInvalid(e.to_string()))?;
        self.intel.validate().map_err(|e| Error::ConfigInvalid(e.to_string()))?;
        self.correlation
            .validate()
            .map_err(|e| Error::ConfigInvalid(format!("correlation: {e}")))?;
        Ok(())
    }

    /// Every file of this configuration that holds a secret (token, token digests, TLS key,
    /// password, API key), with the setting that names it.
    pub(crate) fn secret_files(&self) -> Vec<(String, &Path)> {
        let mut files: Vec<(String, Option<&PathBuf>)> = self
            .auth
            .token_files
            .iter()
            .enumerate()
            .map(|(i, path)| (format!("auth.token_files[{i}]"), Some(path)))
            .collect();
        files.push(("tls.key_file".to_owned(), self.tls.key_file.as_ref()));
        let links: [(&str, &PeerConfig); 7] = [
            ("enrichment.attribution", &self.enrichment.attribution.peer),
            ("enrichment.export", &self.enrichment.export.peer),
            ("siem_export.intel", &self.siem_export.intel.peer),
            ("siem_export.correlation", &self.siem_export.correlation.peer),
            ("intel.attribution", &self.intel.attribution),
            ("correlation.enrichment", &self.correlation.enrichment),
            ("correlation.export", &self.correlation.export),
        ];
        for (name, link) in links {
            files.push((format!("{name}.token_file"), link.token_file.as_ref()));
            files.push((format!("{name}.tls.key_file"), link.tls.key_file.as_ref()));
        }
        let es = &self.siem_export.elasticsearch;
        files.push((
            "siem_export.elasticsearch.api_key_file".to_owned(),
            es.api_key_file.as_ref(),
        ));
        files.push((
            "siem_export.elasticsearch.password_file".to_owned(),
            es.password_file.as_ref(),
        ));
        let hec = &self.siem_export.splunk_hec;
        files.push(("siem_export.splunk_hec.token_file".to_owned(), hec.token_file.as_ref()));
        for (i, push) in self.intel.push.iter().enumerate() {
            files.push((format!("intel.push[{i}].token_file"), push.token_file.as_ref()));
            files.push((format!("intel.push[{i}].password_file"), push.password_file.as_ref()));
        }
        files
            .into_iter()
            .filter_map(|(setting, path)| path.map(|p| (setting, p.as_path())))
            .collect()
    }

    /// The shared runtime part.
    pub(crate) fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            telemetry: self.telemetry.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            http: self.http,
            shutdown_grace: self.shutdown_grace,
        }
    }
}
