//! The correlation service's Prometheus metrics, registered in the runtime's process-wide
//! registry on first use.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

use crate::engine::{Observed, Stats};

/// Events observed, by outcome (`applied`, `unmatched`, `ignored`, `late`).
pub const EVENTS: &str = "correlation_events";
/// Findings raised.
pub const FINDINGS: &str = "correlation_findings";
/// Findings enrichment acknowledged as durable.
pub const FINDINGS_DELIVERED: &str = "correlation_findings_delivered";
/// Findings waiting for enrichment.
pub const OUTBOX: &str = "correlation_outbox_findings";
/// Windows held.
pub const WINDOWS: &str = "correlation_windows";
/// Windows evicted before they expired to stay within `max_groups`.
pub const EVICTED: &str = "correlation_windows_evicted";
/// Window entries dropped to stay within `max_events_per_group`.
pub const TRUNCATED: &str = "correlation_window_entries_dropped";

/// Labels of event counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What the event did.
    pub outcome: &'static str,
}

struct Metrics {
    events: Family<OutcomeLabels, Counter>,
    findings: Counter,
    delivered: Counter,
    outbox: Gauge,
    windows: Gauge,
    evicted: Gauge,
    truncated: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        events: Family::default(),
        findings: Counter::default(),
        delivered: Counter::default(),
        outbox: Gauge::default(),
        windows: Gauge::default(),
        evicted: Gauge::default(),
        truncated: Gauge::default(),
    };
    use attackmesh_runtime::metrics::register;
    register(
        EVENTS,
        "Enriched events observed by correlation, by outcome",
        m.events.clone(),
    );
    register(FINDINGS, "Correlation findings raised", m.findings.clone());
    register(
        FINDINGS_DELIVERED,
        "Correlation findings acknowledged by enrichment",
        m.delivered.clone(),
    );
    register(OUTBOX, "Correlation findings waiting for enrichment", m.outbox.clone());
    register(
        WINDOWS,
        "Correlation windows held (one per rule and entity)",
        m.windows.clone(),
    );
    register(
        EVICTED,
        "Correlation windows evicted to stay within max_groups, since start",
        m.evicted.clone(),
    );
    register(
        TRUNCATED,
        "Window entries dropped to stay within max_events_per_group, since start",
        m.truncated.clone(),
    );
    m
});

/// Registers the metrics now, so a scrape lists them before the first event.
pub(crate) fn register() {
    LazyLock::force(&METRICS);
}

pub(crate) fn observed(outcome: Observed) {
    let outcome = match outcome {
        Observed::Applied => "applied",
        Observed::Unmatched => "unmatched",
        Observed::Ignored => "ignored",
        Observed::Late => "late",
    };
    METRICS.events.get_or_create(&OutcomeLabels { outcome }).inc();
}

pub(crate) fn state(stats: Stats, windows: usize, outbox: usize, raised: usize) {
    METRICS.findings.inc_by(raised as u64);
    METRICS.windows.set(windows as i64);
    METRICS.outbox.set(outbox as i64);
    METRICS.evicted.set(i64::try_from(stats.evicted).unwrap_or(i64::MAX));
    METRICS
        .truncated
        .set(i64::try_from(stats.truncated).unwrap_or(i64::MAX));
}

pub(crate) fn delivered(n: usize, outbox: usize) {
    METRICS.delivered.inc_by(n as u64);
    METRICS.outbox.set(outbox as i64);
}
