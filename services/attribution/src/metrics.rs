//! Prometheus metrics of the attribution service, registered once in the runtime's registry.
//!
//! Counters move once per `Attribute` batch, never per event or per rule, so the hot path pays a
//! few atomic adds per batch. The hit rate is not a series of its own: it is
//! `events{status="ok"} / (events{status="ok"} + events{status="no_match"})`, e.g.
//! `rate(attackmesh_attribution_events_total{status="ok"}[5m]) / sum(rate(attackmesh_attribution_events_total[5m]))`.
//!
//! Labels are fixed words (status, outcome); never event content, caller names or paths.

use std::{sync::LazyLock, time::Duration};

use attackmesh::proto::{Attribution, AttributionStatus};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

/// Events attributed, by outcome (`ok`: at least one technique; `no_match`: none).
pub const EVENTS: &str = "attribution_events";
/// `Attribute` batches answered.
pub const BATCHES: &str = "attribution_batches";
/// `Attribute` batches refused as invalid (too large or holding invalid events).
pub const REFUSED_BATCHES: &str = "attribution_refused_batches";
/// Seconds to attribute one batch, from its arrival to its answer.
pub const BATCH_LATENCY: &str = "attribution_batch_seconds";
/// Mapping rules in the running engine.
pub const RULES: &str = "attribution_rules";
/// Rule pack reloads, by outcome (`ok`, or `failed` with the running rules kept).
pub const RELOADS: &str = "attribution_reloads";

/// Label: what attribution found for an event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `ok` or `no_match`.
    pub status: &'static str,
}

/// Label: how a reload went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok` or `failed`.
    pub outcome: &'static str,
}

/// The metrics.
pub struct Metrics {
    /// See [`EVENTS`].
    pub events: Family<StatusLabel, Counter>,
    /// See [`BATCHES`].
    pub batches: Counter,
    /// See [`REFUSED_BATCHES`].
    pub refused_batches: Counter,
    /// See [`BATCH_LATENCY`].
    pub batch_latency: Histogram,
    /// See [`RULES`].
    pub rules: Gauge,
    /// See [`RELOADS`].
    pub reloads: Family<OutcomeLabel, Counter>,
}

/// The process-wide metrics of this crate.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use attackmesh_runtime::metrics::register;
    let m = Metrics {
        events: Family::default(),
        batches: Counter::default(),
        refused_batches: Counter::default(),
        batch_latency: Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
        rules: Gauge::default(),
        reloads: Family::default(),
    };
    register(
        EVENTS,
        "Events attributed, by status (ok: a technique was found; no_match: none)",
        m.events.clone(),
    );
    register(BATCHES, "Attribute batches answered", m.batches.clone());
    register(
        REFUSED_BATCHES,
        "Attribute batches refused as invalid",
        m.refused_batches.clone(),
    );
    register(
        BATCH_LATENCY,
        "Seconds to attribute one batch, from arrival to answer",
        m.batch_latency.clone(),
    );
    register(RULES, "Mapping rules in the running engine", m.rules.clone());
    register(RELOADS, "Rule pack reloads, by outcome", m.reloads.clone());
    m
});

/// Records one answered batch: its latency and how many events found a technique.
pub(crate) fn batch_answered(attributions: &[Attribution], elapsed: Duration) {
    let ok = attributions
        .iter()
        .filter(|a| a.status == AttributionStatus::Ok as i32)
        .count() as u64;
    let no_match = attributions.len() as u64 - ok;
    METRICS.batches.inc();
    METRICS.batch_latency.observe(elapsed.as_secs_f64());
    METRICS.events.get_or_create(&StatusLabel { status: "ok" }).inc_by(ok);
    METRICS
        .events
        .get_or_create(&StatusLabel { status: "no_match" })
        .inc_by(no_match);
}

/// Records a refused batch.
pub(crate) fn batch_refused() {
    METRICS.refused_batches.inc();
}

/// Records the number of rules now running; the first call also starts the labelled series at
/// zero, so a scrape shows them before the first reload.
pub(crate) fn rules_loaded(rules: usize) {
    METRICS.rules.set(rules as i64);
    for status in ["ok", "no_match"] {
        let _ = METRICS.events.get_or_create(&StatusLabel { status });
    }
    for outcome in ["ok", "failed"] {
        let _ = METRICS.reloads.get_or_create(&OutcomeLabel { outcome });
    }
}

/// Records a reload attempt.
pub(crate) fn reloaded(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    METRICS.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_hits_and_misses_once() {
        let attribution = |status: AttributionStatus| Attribution {
            status: status as i32,
            ..Default::default()
        };
        let before_ok = METRICS.events.get_or_create(&StatusLabel { status: "ok" }).get();
        let before_miss = METRICS.events.get_or_create(&StatusLabel { status: "no_match" }).get();
        let batch = [
            attribution(AttributionStatus::Ok),
            attribution(AttributionStatus::NoMatch),
            attribution(AttributionStatus::Ok),
        ];
        batch_answered(&batch, Duration::from_millis(2));
        let text = attackmesh_runtime::metrics::render();
        assert!(text.contains("attackmesh_attribution_batch_seconds_count"), "{text}");
        assert_eq!(
            METRICS.events.get_or_create(&StatusLabel { status: "ok" }).get() - before_ok,
            2
        );
        assert_eq!(
            METRICS.events.get_or_create(&StatusLabel { status: "no_match" }).get() - before_miss,
            1
        );
    }
}
