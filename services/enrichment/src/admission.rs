//! Admission of batches: global in-flight limits (batches and encoded bytes) and per-detector
//! token buckets. A batch that does not fit is refused with a wait, never queued: memory for
//! work in flight stays within the configured bounds however many detectors push.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{IngestLimits, RateLimit, RateLimits};

/// Why a batch was refused, and how long to wait.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refused {
    /// Metric label: `in_flight` or `rate_limit`.
    pub(crate) reason: &'static str,
    /// Suggested wait.
    pub(crate) after: Duration,
    /// Human-readable reason.
    pub(crate) message: String,
}

/// Held while a batch is processed; releases its share of the limits when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    _batch: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// The global limits and the rate limiter.
pub(crate) struct Admission {
    batches: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    retry_after: Duration,
    limiter: RateLimiter,
}

impl Admission {
    /// Limits from config.
    pub(crate) fn new(limits: &IngestLimits, rates: &RateLimits) -> Self {
        let max_bytes = limits.max_in_flight_bytes.min(Semaphore::MAX_PERMITS);
        Self {
            batches: Arc::new(Semaphore::new(limits.max_in_flight_batches)),
            bytes: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
            retry_after: limits.retry_after,
            limiter: RateLimiter::new(rates.clone()),
        }
    }

    /// Takes room for a batch of `events` events and `bytes` encoded bytes from `caller`, or
    /// says why not.
    pub(crate) fn admit(&self, caller: &str, events: usize, bytes: usize) -> Result<Permit, Refused> {
        let in_flight = |message: &str| Refused {
            reason: "in_flight",
            after: self.retry_after,
            message: message.to_owned(),
        };
        let batch = self
            .batches
            .clone()
            .try_acquire_owned()
            .map_err(|_| in_flight("too many batches in flight; retry later"))?;
        let want = u32::try_from(bytes.clamp(1, self.max_bytes)).unwrap_or(u32::MAX);
        let bytes = self
            .bytes
            .clone()
            .try_acquire_many_owned(want)
            .map_err(|_| in_flight("too many bytes in flight; retry later"))?;
        if let Err(after) = self.limiter.check(caller, events) {
            return Err(Refused {
                reason: "rate_limit",
                after,
                message: format!("rate limit of `{caller}` exceeded"),
            });
        }
        Ok(Permit {
            _batch: batch,
            _bytes: bytes,
        })
    }
}

/// Token buckets in events per second, one per caller name.
pub(crate) struct RateLimiter {
    config: RateLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// Limiter for `config`.
    pub(crate) fn new(config: RateLimits) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, caller: &str) -> Option<RateLimit> {
        self.config
            .detectors
            .get(caller)
            .or(self.config.default.as_ref())
            .copied()
    }

    /// Takes `events` tokens from `caller`'s bucket, or returns how long until they are there.
    /// A batch larger than the burst is admitted from a full bucket and leaves it in debt, so
    /// the long-run rate holds whatever the batch size.
    pub(crate) fn check(&self, caller: &str, events: usize) -> Result<(), Duration> {
        self.check_at(caller, events, Instant::now())
    }

    fn check_at(&self, caller: &str, events: usize, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit(caller) else {
            return Ok(());
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: limit.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.events_per_second).min(limit.burst);
        bucket.last = now;
        let events = events as f64;
        let needed = events.min(limit.burst);
        if bucket.tokens >= needed {
            bucket.tokens -= events;
            Ok(())
        } else {
            let wait = (needed - bucket.tokens) / limit.events_per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(RateLimits {
            default: None,
            detectors: [(
                "det".to_owned(),
                RateLimit {
                    events_per_second: rate,
                    burst,
                },
            )]
            .into(),
        })
    }

    #[test]
    fn buckets_refill_at_the_configured_rate() {
        let l = limiter(100.0, 200.0);
        let t0 = Instant::now();
        assert!(l.check_at("det", 200, t0).is_ok(), "a full bucket takes a burst");
        let wait = l.check_at("det", 50, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert!(l.check_at("det", 50, t0 + Duration::from_millis(500)).is_ok());
        assert!(
            l.check_at("other", 1_000_000, t0).is_ok(),
            "unlisted callers are free without a default"
        );
    }

    #[test]
    fn batches_over_the_burst_pass_from_a_full_bucket_and_leave_debt() {
        let l = limiter(100.0, 10.0);
        let t0 = Instant::now();
        assert!(l.check_at("det", 500, t0).is_ok());
        let wait = l.check_at("det", 1, t0 + Duration::from_secs(1)).unwrap_err();
        assert!(
            wait > Duration::from_secs(3),
            "debt of 490 events takes ~4s to repay: {wait:?}"
        );
    }

    #[test]
    fn in_flight_limits_refuse_without_queueing() {
        let limits = IngestLimits {
            max_in_flight_batches: 2,
            max_in_flight_bytes: 1000,
            ..Default::default()
        };
        let a = Admission::new(&limits, &RateLimits::default());
        let p1 = a.admit("x", 1, 600).unwrap();
        assert_eq!(a.admit("x", 1, 600).unwrap_err().reason, "in_flight", "bytes");
        let p2 = a.admit("x", 1, 10).unwrap();
        assert_eq!(a.admit("x", 1, 10).unwrap_err().reason, "in_flight", "batches");
        drop((p1, p2));
        assert!(
            a.admit("x", 1, 5000).is_ok(),
            "a batch larger than the budget takes all of it"
        );
    }
}
