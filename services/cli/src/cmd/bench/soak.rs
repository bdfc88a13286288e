//! A soak's intervals and drift (`bench pipeline --duration`): what one reporting interval
//! measured, and how the last interval differs from the first.

use std::collections::BTreeMap;

use serde::Serialize;

use super::drive::Percentiles;

/// One reporting interval of a soak: a JSON line on stdout.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Interval {
    pub(super) interval: usize,
    pub(super) at_seconds: f64,
    pub(super) events: u64,
    pub(super) throughput_eps: f64,
    pub(super) latency_ms: Percentiles,
    /// Resident memory of each service at the end of the interval.
    pub(super) rss_mb: BTreeMap<String, f64>,
}

/// How a soak's last interval differs from its first.
#[derive(Debug, Serialize)]
pub(super) struct Drift {
    pub(super) intervals: usize,
    pub(super) first: Interval,
    pub(super) last: Interval,
    /// Last minus first resident memory, by service, in MiB.
    pub(super) rss_mb_change: BTreeMap<String, f64>,
    /// Last p99 latency over first.
    pub(super) latency_p99_ratio: f64,
}

impl Drift {
    /// The drift of a soak's intervals; `None` without any.
    pub(super) fn of(intervals: &[Interval]) -> Option<Self> {
        let (first, last) = (intervals.first()?.clone(), intervals.last()?.clone());
        let rss_mb_change = last
            .rss_mb
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ((v - first.rss_mb.get(k).copied().unwrap_or_default()) * 10.0).round() / 10.0,
                )
            })
            .collect();
        Some(Self {
            intervals: intervals.len(),
            latency_p99_ratio: (last.latency_ms.p99 / first.latency_ms.p99.max(1e-9) * 100.0).round() / 100.0,
            first,
            last,
            rss_mb_change,
        })
    }

    /// The summary's drift line.
    pub(super) fn summary(&self) -> String {
        let d = self;
        let rss: Vec<String> = d
            .rss_mb_change
            .iter()
            .map(|(k, change)| {
                let first = d.first.rss_mb.get(k).copied().unwrap_or_default();
                format!(
                    "{k} {first} → {} MiB ({change:+})",
                    d.last.rss_mb.get(k).copied().unwrap_or_default()
                )
            })
            .collect();
        format!(
            "  drift over {} intervals (first → last): RSS {}; p99 {} → {} ms ({}x); {} → {} events/s\n",
            d.intervals,
            rss.join(", "),
            d.first.latency_ms.p99,
            d.last.latency_ms.p99,
            d.latency_p99_ratio,
            d.first.throughput_eps,
            d.last.throughput_eps
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cmd::bench::parse_duration;

    fn interval(n: usize, p99: f64, rss: &[(&str, f64)]) -> Interval {
        Interval {
            interval: n,
            at_seconds: n as f64 * 30.0,
            events: 300_000,
            throughput_eps: 10_000.0,
            latency_ms: Percentiles {
                p50: 5.0,
                p99,
                p999: p99,
            },
            rss_mb: rss.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn drift_compares_the_first_interval_with_the_last() {
        assert!(Drift::of(&[]).is_none(), "no interval, no drift");
        let intervals = [
            interval(1, 20.0, &[("attribution", 90.0), ("siem_export", 100.0)]),
            interval(2, 80.0, &[("attribution", 95.0), ("siem_export", 160.0)]),
            interval(3, 30.0, &[("attribution", 90.5), ("siem_export", 101.2)]),
        ];
        let drift = Drift::of(&intervals).unwrap_or_else(|| panic!("three intervals"));
        assert_eq!(drift.intervals, 3);
        assert_eq!((drift.first.interval, drift.last.interval), (1, 3));
        assert_eq!(drift.rss_mb_change["attribution"], 0.5);
        assert_eq!(drift.rss_mb_change["siem_export"], 1.2);
        assert_eq!(drift.latency_p99_ratio, 1.5);
    }

    #[test]
    fn durations_are_written_the_human_way() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("ten minutes").is_err());
    }
}
