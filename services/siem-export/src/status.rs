//! Per-sink delivery counters shared by a sink's driver, the Export service and metrics.
//!
//! Counters are since process start; the queue supplies depth, bytes and oldest age. The last
//! error is stored as the sink reported it, which never includes credentials.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use attackmesh::proto::SinkStatus;

use crate::{metrics, queue::Queue, queue::lock};

/// Delivery counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    unhealthy: AtomicBool,
    last_error: Mutex<String>,
}

impl SinkStats {
    /// Counts delivered events.
    pub fn delivered(&self, sink: &str, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
        metrics::METRICS
            .delivered
            .get_or_create(&metrics::label(sink))
            .inc_by(n);
    }

    /// Counts retried event deliveries.
    pub fn retried(&self, sink: &str, n: u64) {
        self.retried.fetch_add(n, Ordering::Relaxed);
        metrics::METRICS.retried.get_or_create(&metrics::label(sink)).inc_by(n);
    }

    /// Counts dead-lettered events.
    pub fn dead_lettered(&self, sink: &str, n: u64) {
        self.dead_lettered.fetch_add(n, Ordering::Relaxed);
        metrics::METRICS
            .dead_lettered
            .get_or_create(&metrics::label(sink))
            .inc_by(n);
    }

    /// Records the outcome of the last attempt.
    pub fn set_health(&self, sink: &str, error: Option<&str>) {
        self.unhealthy.store(error.is_some(), Ordering::Relaxed);
        *lock(&self.last_error) = error.unwrap_or_default().to_owned();
        metrics::METRICS
            .healthy
            .get_or_create(&metrics::label(sink))
            .set(i64::from(error.is_none()));
    }
}

/// A running sink as the service sees it.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    /// Sink name.
    pub name: &'static str,
    /// Sink kind.
    pub kind: &'static str,
    /// Its queue.
    pub queue: Arc<Queue>,
    /// Its counters.
    pub stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// The status message, refreshing the queue gauges on the way.
    pub fn status(&self) -> SinkStatus {
        let q = self.queue.stats();
        let now = chrono::Utc::now().timestamp_micros();
        let age_micros = q.oldest_micros.map_or(0, |t| (now - t).max(0));
        let label = metrics::label(self.name);
        let m = &metrics::METRICS;
        m.queue_depth
            .get_or_create(&label)
            .set(i64::try_from(q.depth).unwrap_or(i64::MAX));
        m.queue_bytes
            .get_or_create(&label)
            .set(i64::try_from(q.bytes).unwrap_or(i64::MAX));
        m.oldest_age.get_or_create(&label).set(age_micros as f64 / 1e6);
        let s = &self.stats;
        SinkStatus {
            name: self.name.to_owned(),
            kind: self.kind.to_owned(),
            queue_depth: q.depth,
            queue_bytes: q.bytes,
            oldest_age: Some(pbjson_types::Duration {
                seconds: age_micros / 1_000_000,
                nanos: ((age_micros % 1_000_000) * 1000) as i32,
            }),
            delivered: s.delivered.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
            healthy: !s.unhealthy.load(Ordering::Relaxed),
            last_error: lock(&s.last_error).clone(),
        }
    }
}
