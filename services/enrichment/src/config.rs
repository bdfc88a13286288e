//! Configuration of the enrichment service (the `enrichment` section of the product config).
//!
//! Only parsing, defaults and validation live here; the runtime crate layers file and
//! environment values. Every limit that bounds memory is a setting here, so the bound can be
//! read off the config (see [`IngestLimits`]).

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use attackmesh_runtime::{backoff::Backoff, peer::PeerConfig};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Most events one batch may hold on any stream (the contract's limit).
pub const MAX_BATCH_LIMIT: usize = attackmesh::limits::MAX_BATCH_EVENTS;
/// Longest wait for the answer to a batch on an open stream, unless a link sets its own.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts to open a stream, unless a link sets its own.
pub const DEFAULT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// Enrichment service settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    /// Directory for the re-attribution log (created when missing).
    pub data_dir: PathBuf,
    /// Address of the HTTP listener for Falco's `http_output` (`POST /falco`); off when unset.
    pub http_listen: Option<SocketAddr>,
    /// Largest HTTP body `POST /falco` accepts, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How often `dns:///` endpoints of `attribution` and `export` are resolved again (and
    /// their token files re-read).
    #[serde(with = "humantime_serde")]
    pub dns_refresh: Duration,
    /// Knowledge base used to validate detector hints while attribution is unavailable (an
    /// ATT&CK bundle or compact KB); the embedded one when unset.
    pub kb_path: Option<PathBuf>,
    /// Batch, stream and in-flight limits of the ingest side.
    pub ingest: IngestLimits,
    /// Per-detector rate limits.
    pub rate_limits: RateLimits,
    /// The attribution service.
    pub attribution: UpstreamConfig,
    /// The siem-export service.
    pub export: UpstreamConfig,
    /// Re-attribution of events enriched while attribution was unavailable.
    pub reattribute: ReattributeConfig,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("attackmesh-data/enrichment"),
            http_listen: None,
            max_body_bytes: 4 * 1024 * 1024,
            dns_refresh: Duration::from_secs(30),
            kb_path: None,
            ingest: IngestLimits::default(),
            rate_limits: RateLimits::default(),
            attribution: UpstreamConfig::default(),
            export: UpstreamConfig::default(),
            reattribute: ReattributeConfig::default(),
        }
    }
}

/// Limits of the ingest side. Memory held for batches in flight is bounded by
/// `max_in_flight_bytes` (encoded size; decoded events, the copy sent to attribution and the
/// enriched events take about four times that), which also counts the bytes of request messages
/// still arriving, and no stream holds more than `max_in_flight_batches_per_stream` batches of at
/// most `max_batch_events` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestLimits {
    /// Most events one `Ingest` batch may hold (1 to 10,000); a larger batch ends the stream
    /// with `INVALID_ARGUMENT`.
    pub max_batch_events: usize,
    /// Largest `Ingest`/`Enrich` request message, in bytes.
    pub max_message_bytes: usize,
    /// Most concurrent `Ingest` streams; more are refused with `RESOURCE_EXHAUSTED`.
    pub max_streams: usize,
    /// Most concurrent `Ingest` streams one caller (the `name` of a token entry; detectors that
    /// share a token share its quota) may hold; more are refused with `RESOURCE_EXHAUSTED`.
    /// Unset: a quarter of `max_streams` (at least 1), so one caller never locks out the others.
    pub max_streams_per_caller: Option<usize>,
    /// Quotas for named callers, overriding `max_streams_per_caller` (e.g. a fleet of sensors
    /// sharing one token).
    pub max_streams_by_caller: BTreeMap<String, usize>,
    /// An `Ingest` stream with no batch and nothing unanswered for this long is ended with
    /// `UNAVAILABLE`; the detector opens a new one when it has more to send.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest time one request message may take to arrive in full once its first byte came; a
    /// message that stops arriving ends the call with `DEADLINE_EXCEEDED`. Raise it for large
    /// batches over slow links.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Batches one stream may have unacknowledged; further batches are answered RETRY.
    pub max_in_flight_batches_per_stream: usize,
    /// Batches all streams together may have in flight; further batches are answered RETRY.
    pub max_in_flight_batches: usize,
    /// Encoded bytes all batches in flight may take together; further batches are answered RETRY.
    pub max_in_flight_bytes: usize,
    /// `retry_after` sent when a batch is refused for an in-flight limit.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_batch_events: MAX_BATCH_LIMIT,
            max_message_bytes: attackmesh::limits::MAX_MESSAGE_BYTES,
            max_streams: 1_024,
            max_streams_per_caller: None,
            max_streams_by_caller: BTreeMap::new(),
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(60),
            max_in_flight_batches_per_stream: 16,
            max_in_flight_batches: 256,
            max_in_flight_bytes: 256 * 1024 * 1024,
            retry_after: Duration::from_millis(500),
        }
    }
}

impl IngestLimits {
    /// How many `Ingest` streams `caller` may hold at once.
    pub fn stream_quota(&self, caller: &str) -> usize {
        self.max_streams_by_caller
            .get(caller)
            .copied()
            .or(self.max_streams_per_caller)
            .unwrap_or((self.max_streams / 4).max(1))
    }
}

/// A token bucket: `events_per_second` refill, `burst` capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained events per second.
    pub events_per_second: f64,
    /// Bucket size: events accepted at once after a quiet period (at least one batch).
    pub burst: f64,
}

/// Per-detector rate limits, keyed by the caller name of the detector's token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Limit for callers not listed in `detectors`; no limit when unset.
    pub default: Option<RateLimit>,
    /// Limits by caller name (the `name` of the token entry).
    pub detectors: BTreeMap<String, RateLimit>,
}

/// How to reach one upstream service (attribution or siem-export) and how to stream to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The service: `endpoints` to balance over (`dns:///host:port` is resolved every
    /// `dns_refresh`, one connection per address; empty: the service's own listen address in
    /// the same configuration), `token_file` (role admin; re-read every `dns_refresh`) or
    /// `token`, `tls`, `connect_timeout` (longest wait for a connection and stream),
    /// `request_timeout` (longest wait for the answer to a batch on an open stream before the
    /// stream is considered broken and its batches sent again on a new one; default 30s) and
    /// `backoff` (pause between attempts to open a stream; default 50ms to 1s).
    #[serde(flatten)]
    pub peer: PeerConfig,
    /// Most events per request batch; larger ingest batches are split.
    pub max_batch: usize,
    /// Long-lived streams kept open (each balanced to a replica).
    pub streams: usize,
    /// Batches sent on one stream without an answer yet.
    pub max_in_flight: usize,
    /// How long a batch may wait for the service to come back before giving up (attribution:
    /// the events go on DEGRADED; export: the detector is told to retry).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Broken streams a batch survives before giving up.
    pub max_attempts: u32,
    /// Compress requests and answers with gzip (worth it across zones, not on a local network).
    pub gzip: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            peer: PeerConfig::default(),
            max_batch: 2_000,
            streams: 4,
            max_in_flight: 8,
            give_up_after: Duration::from_secs(3),
            max_attempts: 3,
            gzip: false,
        }
    }
}

/// What to do with a degraded batch when the re-attribution log is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Answer the detector RETRY: nothing leaves unattributed without a way back (default).
    #[default]
    Retry,
    /// Deliver the events DEGRADED without queueing them for re-attribution (counted in
    /// `attackmesh_enrichment_reattribute_skipped_total`).
    KeepDegraded,
}

/// Re-attribution of DEGRADED events once attribution is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReattributeConfig {
    /// Queue degraded events and export them again, attributed, with `revision = 2`.
    pub enabled: bool,
    /// Largest size of the on-disk log under `data_dir`, in bytes.
    pub max_bytes: u64,
    /// What happens to degraded batches when the log is full.
    pub when_full: WhenFull,
}

impl Default for ReattributeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 256 * 1024 * 1024,
            when_full: WhenFull::Retry,
        }
    }
}

impl EnrichmentConfig {
    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        let i = &self.ingest;
        if i.max_batch_events == 0 || i.max_batch_events > MAX_BATCH_LIMIT {
            return bad(format!("ingest.max_batch_events must be 1 to {MAX_BATCH_LIMIT}"));
        }
        if i.max_message_bytes < 1024 || i.max_message_bytes > u32::MAX as usize {
            return bad("ingest.max_message_bytes must be 1 KiB to 4 GiB".into());
        }
        for (name, value) in [
            ("ingest.max_streams", i.max_streams),
            (
                "ingest.max_in_flight_batches_per_stream",
                i.max_in_flight_batches_per_stream,
            ),
            ("ingest.max_in_flight_batches", i.max_in_flight_batches),
        ] {
            if value == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if i.max_streams_per_caller == Some(0) || i.max_streams_by_caller.values().any(|&n| n == 0) {
            return bad(
                "ingest stream quotas (max_streams_per_caller, max_streams_by_caller) must be at least 1".into(),
            );
        }
        for (name, value) in [
            ("ingest.idle_timeout", i.idle_timeout),
            ("ingest.message_timeout", i.message_timeout),
        ] {
            if value < Duration::from_millis(10) {
                return bad(format!("{name} must be at least 10ms"));
            }
        }
        if i.max_in_flight_bytes < i.max_message_bytes.min(64 * 1024 * 1024) {
            return bad(
                "ingest.max_in_flight_bytes must hold at least one message (max_message_bytes, up to 64 MiB)".into(),
            );
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > i.max_message_bytes {
            return bad("max_body_bytes must be 1 KiB to ingest.max_message_bytes".into());
        }
        if self.dns_refresh < Duration::from_secs(1) {
            return bad("dns_refresh must be at least 1s".into());
        }
        for (name, limit) in self
            .rate_limits
            .default
            .iter()
            .map(|l| ("default", l))
            .chain(self.rate_limits.detectors.iter().map(|(n, l)| (n.as_str(), l)))
        {
            let rate_ok = limit.events_per_second > 0.0 && limit.events_per_second.is_finite();
            if !rate_ok || limit.burst.is_nan() || limit.burst < 1.0 {
                return bad(format!(
                    "rate_limits.{name}: events_per_second must be > 0 and burst at least 1"
                ));
            }
        }
        self.attribution.validate("attribution")?;
        self.export.validate("export")?;
        if self.reattribute.enabled && self.reattribute.max_bytes < 1024 * 1024 {
            return bad("reattribute.max_bytes must be at least 1 MiB".into());
        }
        if let Some(kb) = &self.kb_path
            && !kb.is_file()
        {
            return bad(format!("kb_path {} is not a readable file", kb.display()));
        }
        Ok(())
    }

    /// Points empty endpoint lists at services in this process (or on this host): `attribution`
    /// and `export` are their listen addresses.
    pub fn default_endpoints(&mut self, attribution: SocketAddr, export: SocketAddr) {
        for (link, addr) in [(&mut self.attribution, attribution), (&mut self.export, export)] {
            if !link.peer.has_endpoints() {
                link.peer.endpoints = vec![format!("http://{}", loopback_if_unspecified(addr))];
            }
        }
    }
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

impl UpstreamConfig {
    /// Longest wait for the answer to a batch on an open stream.
    pub fn request_timeout(&self) -> Duration {
        self.peer.request_timeout_or(DEFAULT_REQUEST_TIMEOUT)
    }

    /// Pause between attempts to open a stream.
    pub fn backoff(&self) -> Backoff {
        self.peer.backoff_or(DEFAULT_BACKOFF)
    }

    fn validate(&self, name: &str) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(format!("{name}.{m}")));
        if let Err(why) = self.peer.validate() {
            return bad(why);
        }
        if self.max_batch == 0 || self.max_batch > MAX_BATCH_LIMIT {
            return bad(format!("max_batch must be 1 to {MAX_BATCH_LIMIT}"));
        }
        if self.streams == 0 || self.streams > 64 {
            return bad("streams must be 1 to 64".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return bad("max_in_flight must be 1 to 1024".into());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_durations_are_human() {
        EnrichmentConfig::default().validate().unwrap();
        let c: EnrichmentConfig = serde_json::from_str(
            r#"{"dns_refresh":"10s","attribution":{"endpoints":["dns:///attribution-headless.ns.svc:50051"],"give_up_after":"250ms"},
               "rate_limits":{"detectors":{"suricata-01":{"events_per_second":100,"burst":500}}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.dns_refresh, Duration::from_secs(10));
        assert_eq!(c.attribution.give_up_after, Duration::from_millis(250));
        assert_eq!(
            c.attribution.peer.endpoints,
            vec!["dns:///attribution-headless.ns.svc:50051"]
        );
        assert_eq!(
            c.attribution.max_batch, 2_000,
            "section defaults survive a partial section"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<EnrichmentConfig>(r#"{"ingest":{"max_batch":3}}"#).is_err());
        let mut c = EnrichmentConfig::default();
        c.ingest.max_batch_events = 20_000;
        assert!(c.validate().unwrap_err().to_string().contains("max_batch_events"));
        let mut c = EnrichmentConfig::default();
        c.export.peer.endpoints = vec!["ftp://x:1".into()];
        assert!(c.validate().unwrap_err().to_string().contains("export.endpoints"));
        let mut c = EnrichmentConfig::default();
        c.rate_limits.default = Some(RateLimit {
            events_per_second: 0.0,
            burst: 1.0,
        });
        assert!(c.validate().is_err());
    }

    #[test]
    fn stream_quotas_default_to_a_quarter_of_the_streams() {
        let mut limits = IngestLimits {
            max_streams: 20,
            ..Default::default()
        };
        assert_eq!(limits.stream_quota("det"), 5);
        limits.max_streams_per_caller = Some(8);
        limits.max_streams_by_caller.insert("fleet".into(), 16);
        assert_eq!((limits.stream_quota("det"), limits.stream_quota("fleet")), (8, 16));
        let mut c = EnrichmentConfig::default();
        c.ingest.max_streams_by_caller.insert("x".into(), 0);
        assert!(c.validate().unwrap_err().to_string().contains("quotas"));
        let mut c = EnrichmentConfig::default();
        c.ingest.idle_timeout = Duration::from_millis(1);
        assert!(c.validate().unwrap_err().to_string().contains("idle_timeout"));
    }

    #[test]
    fn local_endpoints_and_section_defaults() {
        let mut c = EnrichmentConfig::default();
        c.default_endpoints("0.0.0.0:50051".parse().unwrap(), "127.0.0.1:50053".parse().unwrap());
        assert_eq!(c.attribution.peer.endpoints, vec!["http://127.0.0.1:50051"]);
        assert_eq!(c.export.peer.endpoints, vec!["http://127.0.0.1:50053"]);
        assert_eq!(c.attribution.request_timeout(), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(c.attribution.backoff(), DEFAULT_BACKOFF);
        c.export.peer.token = Some(attackmesh_runtime::secret::Secret::new("run-token-value"));
        assert!(
            !format!("{c:?}").contains("run-token-value"),
            "tokens never show in Debug"
        );
        let c: EnrichmentConfig = serde_json::from_str(
            r#"{"export":{"request_timeout":"5s","backoff":{"initial":"10ms","max":"100ms"},"token":"t"}}"#,
        )
        .unwrap();
        assert_eq!(c.export.request_timeout(), Duration::from_secs(5));
        assert_eq!(c.export.backoff().max, Duration::from_millis(100));
        assert!(serde_json::from_str::<EnrichmentConfig>(r#"{"export":{"token_fil":"/x"}}"#).is_err());
    }
}
