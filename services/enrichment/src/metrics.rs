//! Prometheus metrics of the enrichment service, registered once in the runtime's registry.
//!
//! Labels are fixed words (outcome, reason, upstream name), never caller tokens, event content
//! or endpoint URLs. Counters get `_total` appended by the registry.

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

/// Events received from detectors in admitted batches (a batch refused at admission counts in
/// [`RETRIED`] instead; a resent batch counts again). In = accepted + rejected + events of
/// batches answered RETRY after admission.
pub const RECEIVED: &str = "enrichment_received_events";
/// Events accepted (durably queued for every sink).
pub const ACCEPTED: &str = "enrichment_accepted_events";
/// Events rejected as invalid.
pub const REJECTED: &str = "enrichment_rejected_events";
/// Batches answered RETRY, by reason.
pub const RETRIED: &str = "enrichment_retried_batches";
/// Events exported DEGRADED because attribution was unavailable.
pub const DEGRADED: &str = "enrichment_degraded";
/// Events exported again, attributed, with revision 2.
pub const REATTRIBUTED: &str = "enrichment_reattributed";
/// Degraded events not queued for re-attribution (log full with `when_full: keep_degraded`, or re-attribution off).
pub const REATTRIBUTE_SKIPPED: &str = "enrichment_reattribute_skipped";
/// Bytes waiting in the re-attribution log.
pub const REATTRIBUTE_BACKLOG: &str = "enrichment_reattribute_backlog_bytes";
/// Seconds from receiving a batch to acknowledging it.
pub const ACK_LATENCY: &str = "enrichment_ack_latency_seconds";
/// Batches being processed.
pub const IN_FLIGHT: &str = "enrichment_in_flight_batches";
/// Bytes held against `ingest.max_in_flight_bytes`: request messages while they arrive and
/// batches until their answer.
pub const IN_FLIGHT_BYTES: &str = "enrichment_in_flight_bytes";
/// Open streams to each upstream.
pub const UPSTREAM_STREAMS: &str = "enrichment_upstream_streams";
/// Stream (re)connection attempts to each upstream.
pub const UPSTREAM_RECONNECTS: &str = "enrichment_upstream_reconnects";
/// Seconds from sending a batch upstream to its answer.
pub const UPSTREAM_LATENCY: &str = "enrichment_upstream_batch_seconds";
/// `Ingest` streams refused, by the limit that refused them.
pub const REFUSED_STREAMS: &str = "enrichment_refused_streams";
/// `Ingest` streams ended by the server because they stayed idle for `idle_timeout`.
pub const IDLE_STREAMS: &str = "enrichment_idle_streams_closed";

/// Label: why a batch was answered RETRY.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `rate_limit`, `in_flight`, `export`, `reattribute_full`, `shutdown`.
    pub reason: &'static str,
}

/// Label: which stream limit.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `max_streams` or `caller_quota`.
    pub limit: &'static str,
}

/// Label: which upstream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    /// `attribution` or `export`.
    pub upstream: &'static str,
}

/// The metrics.
pub struct Metrics {
    /// See [`RECEIVED`].
    pub received: Counter,
    /// See [`ACCEPTED`].
    pub accepted: Counter,
    /// See [`REJECTED`].
    pub rejected: Counter,
    /// See [`RETRIED`].
    pub retried: Family<ReasonLabel, Counter>,
    /// See [`DEGRADED`].
    pub degraded: Counter,
    /// See [`REATTRIBUTED`].
    pub reattributed: Counter,
    /// See [`REATTRIBUTE_SKIPPED`].
    pub reattribute_skipped: Counter,
    /// See [`REATTRIBUTE_BACKLOG`].
    pub reattribute_backlog: Gauge,
    /// See [`ACK_LATENCY`].
    pub ack_latency: Histogram,
    /// See [`IN_FLIGHT`].
    pub in_flight: Gauge,
    /// See [`IN_FLIGHT_BYTES`].
    pub in_flight_bytes: Gauge,
    /// See [`UPSTREAM_STREAMS`].
    pub upstream_streams: Family<UpstreamLabel, Gauge>,
    /// See [`UPSTREAM_RECONNECTS`].
    pub upstream_reconnects: Family<UpstreamLabel, Counter>,
    /// See [`UPSTREAM_LATENCY`].
    pub upstream_latency: Family<UpstreamLabel, Histogram>,
    /// See [`REFUSED_STREAMS`].
    pub refused_streams: Family<LimitLabel, Counter>,
    /// See [`IDLE_STREAMS`].
    pub idle_streams: Counter,
}

fn buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The process-wide metrics of this crate.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use attackmesh_runtime::metrics::register;
    let m = Metrics {
        received: Counter::default(),
        accepted: Counter::default(),
        rejected: Counter::default(),
        retried: Family::default(),
        degraded: Counter::default(),
        reattributed: Counter::default(),
        reattribute_skipped: Counter::default(),
        reattribute_backlog: Gauge::default(),
        ack_latency: buckets(),
        in_flight: Gauge::default(),
        in_flight_bytes: Gauge::default(),
        upstream_streams: Family::default(),
        upstream_reconnects: Family::default(),
        upstream_latency: Family::new_with_constructor(buckets),
        refused_streams: Family::default(),
        idle_streams: Counter::default(),
    };
    register(
        RECEIVED,
        "Events received from detectors in admitted batches (resent batches count again)",
        m.received.clone(),
    );
    register(
        ACCEPTED,
        "Events accepted and durably queued for every sink",
        m.accepted.clone(),
    );
    register(REJECTED, "Events rejected as invalid", m.rejected.clone());
    register(RETRIED, "Batches answered RETRY, by reason", m.retried.clone());
    register(
        DEGRADED,
        "Events exported DEGRADED because attribution was unavailable",
        m.degraded.clone(),
    );
    register(
        REATTRIBUTED,
        "Degraded events exported again, attributed, with revision 2",
        m.reattributed.clone(),
    );
    register(
        REATTRIBUTE_SKIPPED,
        "Degraded events not queued for re-attribution",
        m.reattribute_skipped.clone(),
    );
    register(
        REATTRIBUTE_BACKLOG,
        "Bytes waiting in the re-attribution log",
        m.reattribute_backlog.clone(),
    );
    register(
        ACK_LATENCY,
        "Seconds from receiving a batch to acknowledging it",
        m.ack_latency.clone(),
    );
    register(IN_FLIGHT, "Ingest batches being processed", m.in_flight.clone());
    register(
        IN_FLIGHT_BYTES,
        "Bytes of ingest messages arriving and batches being processed, held against ingest.max_in_flight_bytes",
        m.in_flight_bytes.clone(),
    );
    register(
        UPSTREAM_STREAMS,
        "Open streams to each upstream service",
        m.upstream_streams.clone(),
    );
    register(
        UPSTREAM_RECONNECTS,
        "Stream connection attempts to each upstream service",
        m.upstream_reconnects.clone(),
    );
    register(
        UPSTREAM_LATENCY,
        "Seconds from sending a batch upstream to its answer",
        m.upstream_latency.clone(),
    );
    register(
        REFUSED_STREAMS,
        "Ingest streams refused, by the limit that refused them",
        m.refused_streams.clone(),
    );
    register(
        IDLE_STREAMS,
        "Ingest streams ended because they stayed idle for idle_timeout",
        m.idle_streams.clone(),
    );
    m
});

/// Registers the metrics and starts every RETRY reason at zero, so a scrape shows the series
/// before the first refusal.
pub(crate) fn register() {
    for reason in ["rate_limit", "in_flight", "export", "reattribute_full"] {
        let _ = METRICS.retried.get_or_create(&ReasonLabel { reason });
    }
    for limit in ["max_streams", "caller_quota"] {
        let _ = METRICS.refused_streams.get_or_create(&LimitLabel { limit });
    }
}

/// Counts a stream refused by `limit`.
pub(crate) fn refused_stream(limit: &'static str) {
    METRICS.refused_streams.get_or_create(&LimitLabel { limit }).inc();
}

/// Counts a batch answered RETRY.
pub(crate) fn retried(reason: &'static str) {
    METRICS.retried.get_or_create(&ReasonLabel { reason }).inc();
}

pub(crate) fn upstream_streams(upstream: &'static str, open: usize) {
    METRICS
        .upstream_streams
        .get_or_create(&UpstreamLabel { upstream })
        .set(open as i64);
}

pub(crate) fn upstream_reconnect(upstream: &'static str) {
    METRICS
        .upstream_reconnects
        .get_or_create(&UpstreamLabel { upstream })
        .inc();
}

pub(crate) fn upstream_latency(upstream: &'static str, elapsed: Duration) {
    METRICS
        .upstream_latency
        .get_or_create(&UpstreamLabel { upstream })
        .observe(elapsed.as_secs_f64());
}
