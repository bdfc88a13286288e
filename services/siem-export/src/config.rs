//! Configuration of the siem-export service (the `siem_export` section of the product config).
//!
//! Only parsing, defaults and validation live here; the runtime crate layers file and
//! environment values. A sink is enabled when its URL (path, endpoint) is set; with no sink configured
//! the file sink writes NDJSON under `data_dir`. Credentials are the runtime's
//! [`Secret`](attackmesh_runtime::secret::Secret)s: they never appear in `Debug`, `Display`,
//! serialised config, logs, errors or metrics.

use std::{path::PathBuf, time::Duration};

use attackmesh_runtime::backoff::Backoff;
use serde::{Deserialize, Serialize};

use crate::error::Error;

use crate::sinks::{
    SinkSpec, correlation::CorrelationSinkConfig, elasticsearch::ElasticsearchConfig, file::FileSinkConfig,
    intel::IntelSinkConfig, splunk_hec::SplunkHecConfig,
};

/// The seed's environment variables, mapped to their paths in the product config (where this
/// section sits under the key `siem_export`).
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("ATTACKMESH_ELASTICSEARCH_URL", "siem_export.elasticsearch.url"),
    ("ATTACKMESH_ELASTICSEARCH_API_KEY", "siem_export.elasticsearch.api_key"),
    (
        "ATTACKMESH_ELASTICSEARCH_USERNAME",
        "siem_export.elasticsearch.username",
    ),
    (
        "ATTACKMESH_ELASTICSEARCH_PASSWORD",
        "siem_export.elasticsearch.password",
    ),
    ("ATTACKMESH_SPLUNK_HEC_URL", "siem_export.splunk_hec.url"),
    ("ATTACKMESH_SPLUNK_HEC_TOKEN", "siem_export.splunk_hec.token"),
    ("ATTACKMESH_SPLUNK_INDEX", "siem_export.splunk_hec.index"),
];

/// When a queue append is forced to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// One `fsync` per Export batch, before the batch is acknowledged (the default): an
    /// acknowledged event survives a process crash and a power loss.
    #[default]
    Batch,
    /// Never `fsync` queue appends (the OS writes back in its own time): an acknowledged event
    /// survives a process crash (kill -9) but not a power loss or kernel crash.
    Never,
}

/// Bounds of every sink's on-disk queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most bytes one sink's queue may hold on disk. When a batch would not fit in every queue,
    /// Export answers it `ACK_STATUS_RETRY` with `retry_after` (the full-policy is to block upstream).
    pub max_bytes: u64,
    /// Size at which a queue starts a new segment file; delivered segments are deleted whole.
    pub segment_bytes: u64,
    /// When appends are forced to disk.
    pub fsync: FsyncPolicy,
    /// `retry_after` given upstream with `ACK_STATUS_RETRY` when a queue is full.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Batch,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// How events are grouped into sink requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most events per sink request.
    pub max_events: usize,
    /// Most encoded bytes per sink request (before compression).
    pub max_bytes: usize,
    /// Longest an event waits for its batch to fill while requests are in flight; an idle sink
    /// sends at once.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 1000,
            max_bytes: 5 << 20,
            max_age: Duration::from_millis(200),
        }
    }
}

/// Retries of failed sink requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Bound of the first backoff; doubled after each failure, with full jitter (the runtime's
    /// [`Backoff`]).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest backoff.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long one batch is retried before its remaining events go to the dead-letter queue
    /// (with the last error as reason); replay them once the sink is fixed.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Timeout of one sink request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests one sink may have in flight, retries included.
    pub max_in_flight: usize,
}

impl RetryConfig {
    /// The pause between retries these bounds describe.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_backoff, self.max_backoff)
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_duration: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 2,
        }
    }
}

/// SIEM export service settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiemExportConfig {
    /// Directory of the sink queues (`queues/<sink>/`) and dead letters (`dlq/<sink>/`).
    pub data_dir: PathBuf,
    /// Knowledge base the technique ids of exported events are checked against (an id ATT&CK
    /// never defined is rejected); the embedded one when unset. Give it the same file as
    /// attribution's `kb_path` (`serve all` does when this is unset).
    pub kb_path: Option<PathBuf>,
    /// Queue bounds and durability.
    pub queue: QueueConfig,
    /// Sink request batching.
    pub batch: BatchConfig,
    /// Retries.
    pub retry: RetryConfig,
    /// Elasticsearch sink; enabled when `url` is set.
    pub elasticsearch: ElasticsearchConfig,
    /// Splunk HEC sink; enabled when `url` is set.
    pub splunk_hec: SplunkHecConfig,
    /// NDJSON file sink `file`; enabled when `path` is set, and by default when no other sink is.
    pub file: FileSinkConfig,
    /// More NDJSON file sinks, e.g. one per shape; each needs a unique `name` and a `path`, and
    /// is the sink `file-<name>`.
    pub files: Vec<FileSinkConfig>,
    /// Intel sink (the intel service's `ShareEvents`); enabled when `endpoints` is set.
    pub intel: IntelSinkConfig,
    /// Correlation sink (the correlation replicas' `Observe`); enabled when `endpoints` is set.
    /// It feeds stateful detection and is not a delivery destination: with only this sink, the
    /// default file sink is still written.
    pub correlation: CorrelationSinkConfig,
    /// On shutdown, how long sinks keep delivering after the Export listener stopped; what is
    /// left stays queued on disk for the next start.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
}

impl Default for SiemExportConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("attackmesh-data/siem-export"),
            kb_path: None,
            queue: QueueConfig::default(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            elasticsearch: ElasticsearchConfig::default(),
            splunk_hec: SplunkHecConfig::default(),
            file: FileSinkConfig::default(),
            files: Vec::new(),
            intel: IntelSinkConfig::default(),
            correlation: CorrelationSinkConfig::default(),
            drain_grace: Duration::from_secs(10),
        }
    }
}

impl SiemExportConfig {
    /// Checks values and that configured files exist.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must be set".into());
        }
        if let Some(kb) = &self.kb_path
            && !kb.is_file()
        {
            return bad(format!("kb_path {} is not a readable file", kb.display()));
        }
        let q = &self.queue;
        if q.segment_bytes < 4096 {
            return bad(format!(
                "queue.segment_bytes must be at least 4096, got {}",
                q.segment_bytes
            ));
        }
        if q.max_bytes < q.segment_bytes {
            return bad(format!(
                "queue.max_bytes ({}) must be at least queue.segment_bytes ({})",
                q.max_bytes, q.segment_bytes
            ));
        }
        let b = &self.batch;
        if b.max_events == 0 || b.max_events > attackmesh::limits::MAX_BATCH_EVENTS {
            return bad(format!("batch.max_events must be 1 to 10000, got {}", b.max_events));
        }
        if b.max_bytes < 1024 {
            return bad(format!("batch.max_bytes must be at least 1024, got {}", b.max_bytes));
        }
        if b.max_age > Duration::from_secs(60) {
            return bad("batch.max_age must be at most 60s".into());
        }
        let r = &self.retry;
        if r.backoff().validate().is_err() {
            return bad("retry.initial_backoff must be above 0 and at most retry.max_backoff".into());
        }
        if r.request_timeout < Duration::from_millis(100) {
            return bad("retry.request_timeout must be at least 100ms".into());
        }
        if r.max_in_flight == 0 || r.max_in_flight > 64 {
            return bad(format!("retry.max_in_flight must be 1 to 64, got {}", r.max_in_flight));
        }
        if self.drain_grace > Duration::from_secs(600) {
            return bad("drain_grace must be at most 10m".into());
        }
        self.elasticsearch.validate()?;
        self.splunk_hec.validate()?;
        if self.file.name.is_some() {
            return bad("file.name is only for the entries of files; the sink `file` has no name".into());
        }
        self.file.validate("file")?;
        self.intel.validate()?;
        self.correlation.validate()?;
        self.validate_files()
    }

    fn validate_files(&self) -> Result<(), Error> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            let field = format!("files[{i}]");
            let bad = |m: String| Err(Error::Config(format!("{field}.{m}")));
            let Some(name) = &f.name else {
                return bad("name must be set (the sink is called `file-<name>`)".into());
            };
            if let Err(why) = crate::sinks::file::check_name(name) {
                return bad(format!("name {why}"));
            }
            if !seen.insert(name.as_str()) {
                return bad(format!("name `{name}` is used by another entry of files"));
            }
            if !f.enabled() {
                return bad("path must be set".into());
            }
            f.validate(&field)?;
        }
        Ok(())
    }

    /// The sinks this configuration enables, in a fixed order; the file sink under `data_dir`
    /// when nothing else is configured.
    pub fn sinks(&self) -> Vec<SinkSpec> {
        let mut out = Vec::new();
        if self.elasticsearch.enabled() {
            out.push(SinkSpec::Elasticsearch(self.elasticsearch.clone()));
        }
        if self.splunk_hec.enabled() {
            out.push(SinkSpec::SplunkHec(self.splunk_hec.clone()));
        }
        if self.file.enabled() {
            out.push(SinkSpec::File(self.file.clone()));
        }
        out.extend(self.files.iter().cloned().map(SinkSpec::File));
        if self.intel.enabled() {
            out.push(SinkSpec::Intel(self.intel.clone()));
        }
        if out.is_empty() {
            let mut file = self.file.clone();
            file.path = Some(self.data_dir.join("events").join("events.ndjson"));
            out.push(SinkSpec::File(file));
        }
        if self.correlation.enabled() {
            out.push(SinkSpec::Correlation(self.correlation.clone()));
        }
        out
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
