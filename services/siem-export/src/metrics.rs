//! Prometheus metrics of the siem-export service, registered once in the runtime's registry.
//!
//! Every series is labelled by sink name only (never by URL, index or anything that could hold
//! a credential).

use std::sync::LazyLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

/// Events waiting in a sink's queue.
pub const QUEUE_DEPTH: &str = "siem_export_queue_depth";
/// Bytes of a sink's queue on disk.
pub const QUEUE_BYTES: &str = "siem_export_queue_bytes";
/// Age of the oldest undelivered event, in seconds.
pub const OLDEST_AGE: &str = "siem_export_oldest_age_seconds";
/// Events delivered.
pub const DELIVERED: &str = "siem_export_delivered_events";
/// Event delivery attempts retried.
pub const RETRIED: &str = "siem_export_retried_events";
/// Events (and damaged queue regions) moved to the dead-letter queue.
pub const DEAD_LETTERED: &str = "siem_export_dead_lettered_events";
/// Whether the last delivery attempt succeeded (1) or not (0).
pub const HEALTHY: &str = "siem_export_sink_healthy";
/// Seconds from enqueue to the sink's success answer.
pub const LATENCY: &str = "siem_export_delivery_latency_seconds";
/// Events a sink's reader read back from its queue's files instead of taking them from memory.
pub const READ_BACK: &str = "siem_export_queue_read_back_events";
/// Export batches answered RETRY because a queue was full.
pub const REFUSED_BATCHES: &str = "siem_export_refused_batches";

/// The label set: the sink's name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// Sink name.
    pub sink: String,
}

/// The metrics.
pub struct Metrics {
    /// See [`QUEUE_DEPTH`].
    pub queue_depth: Family<SinkLabel, Gauge>,
    /// See [`QUEUE_BYTES`].
    pub queue_bytes: Family<SinkLabel, Gauge>,
    /// See [`OLDEST_AGE`].
    pub oldest_age: Family<SinkLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// See [`DELIVERED`].
    pub delivered: Family<SinkLabel, Counter>,
    /// See [`RETRIED`].
    pub retried: Family<SinkLabel, Counter>,
    /// See [`DEAD_LETTERED`].
    pub dead_lettered: Family<SinkLabel, Counter>,
    /// See [`HEALTHY`].
    pub healthy: Family<SinkLabel, Gauge>,
    /// See [`LATENCY`].
    pub latency: Family<SinkLabel, Histogram>,
    /// See [`READ_BACK`].
    pub read_back: Family<SinkLabel, Counter>,
    /// See [`REFUSED_BATCHES`].
    pub refused_batches: Counter,
}

/// The process-wide metrics of this crate.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use attackmesh_runtime::metrics::register;
    let m = Metrics {
        queue_depth: Family::default(),
        queue_bytes: Family::default(),
        oldest_age: Family::default(),
        delivered: Family::default(),
        retried: Family::default(),
        dead_lettered: Family::default(),
        healthy: Family::default(),
        latency: Family::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
        }),
        read_back: Family::default(),
        refused_batches: Counter::default(),
    };
    register(QUEUE_DEPTH, "Events waiting in a sink's queue", m.queue_depth.clone());
    register(QUEUE_BYTES, "Bytes of a sink's queue on disk", m.queue_bytes.clone());
    register(
        OLDEST_AGE,
        "Age of the oldest undelivered event in seconds",
        m.oldest_age.clone(),
    );
    register(DELIVERED, "Events delivered to a sink", m.delivered.clone());
    register(RETRIED, "Event delivery attempts retried", m.retried.clone());
    register(
        DEAD_LETTERED,
        "Events or damaged queue regions moved to the dead-letter queue",
        m.dead_lettered.clone(),
    );
    register(
        HEALTHY,
        "Whether the sink's last delivery attempt succeeded",
        m.healthy.clone(),
    );
    register(
        LATENCY,
        "Seconds from enqueue to the sink's success answer",
        m.latency.clone(),
    );
    register(
        READ_BACK,
        "Events a sink's reader read back from its queue's files rather than from memory: after a \
         restart, or while the sink was further behind than the queue keeps in memory (each is \
         decoded a second time)",
        m.read_back.clone(),
    );
    register(
        REFUSED_BATCHES,
        "Export batches answered RETRY because a queue was full",
        m.refused_batches.clone(),
    );
    m
});

/// Starts every per-sink counter of `sink` at zero, so dashboards and alerts see a series
/// (rather than none) before the first retry or dead letter.
pub fn register_sink(sink: &str) {
    let label = label(sink);
    let _ = METRICS.delivered.get_or_create(&label);
    let _ = METRICS.retried.get_or_create(&label);
    let _ = METRICS.dead_lettered.get_or_create(&label);
    let _ = METRICS.read_back.get_or_create(&label);
}

/// The label of `sink`.
pub fn label(sink: &str) -> SinkLabel {
    SinkLabel { sink: sink.to_owned() }
}
