//! Admission of streams and batches: the global stream limit and each caller's stream quota,
//! global in-flight limits (batches and encoded bytes) and per-detector token buckets. A stream
//! or batch that does not fit is refused with a wait, never queued: memory for work in flight
//! stays within the configured bounds however many detectors push, and no caller can take every
//! stream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use attackmesh_runtime::receive::{ByteBudget, Reservation};
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
    _bytes: Reservation,
}

/// The global limits and the rate limiter.
pub(crate) struct Admission {
    batches: Arc<Semaphore>,
    bytes: ByteBudget,
    retry_after: Duration,
    limiter: RateLimiter,
}

impl Admission {
    /// Limits from config.
    pub(crate) fn new(limits: &IngestLimits, rates: &RateLimits) -> Self {
        Self {
            batches: Arc::new(Semaphore::new(limits.max_in_flight_batches)),
            bytes: ByteBudget::with_gauge(
                limits.max_in_flight_bytes,
                crate::metrics::METRICS.in_flight_bytes.clone(),
            ),
            retry_after: limits.retry_after,
            limiter: RateLimiter::new(rates.clone()),
        }
    }

    /// The in-flight byte budget, which request messages also count against while they arrive.
    pub(crate) fn budget(&self) -> &ByteBudget {
        &self.bytes
    }

    /// Takes room for a batch of `events` events and `bytes` encoded bytes from `caller`, or
    /// says why not. `received` is what the batch's message held while it arrived: it becomes
    /// the batch's share of the byte budget (grown or shrunk to `bytes`), so the bytes are
    /// counted once, from the first one received until the answer.
    pub(crate) fn admit(
        &self,
        caller: &str,
        events: usize,
        bytes: usize,
        received: Option<Reservation>,
    ) -> Result<Permit, Refused> {
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
        let mut held = received.unwrap_or_default();
        if !held.try_resize(&self.bytes, bytes.max(1)) {
            return Err(in_flight("too many bytes in flight; retry later"));
        }
        if let Err(after) = self.limiter.check(caller, events) {
            return Err(Refused {
                reason: "rate_limit",
                after,
                message: format!("rate limit of `{caller}` exceeded"),
            });
        }
        Ok(Permit {
            _batch: batch,
            _bytes: held,
        })
    }
}

/// The global stream limit and every caller's quota.
pub(crate) struct StreamSlots {
    global: Arc<Semaphore>,
    by_caller: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    limits: IngestLimits,
}

/// Held while a stream is served; gives its slots back when dropped.
pub(crate) struct StreamSlot {
    _global: OwnedSemaphorePermit,
    caller: Arc<str>,
    by_caller: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl StreamSlots {
    /// Slots per `limits` (`max_streams`, `max_streams_per_caller`, `max_streams_by_caller`).
    pub(crate) fn new(limits: &IngestLimits) -> Self {
        Self {
            global: Arc::new(Semaphore::new(limits.max_streams)),
            by_caller: Arc::default(),
            limits: limits.clone(),
        }
    }

    /// A slot for a stream of `caller`, or which limit refuses it.
    pub(crate) fn open(&self, caller: &Arc<str>) -> Result<StreamSlot, String> {
        let global = self.global.clone().try_acquire_owned().map_err(|_| {
            crate::metrics::refused_stream("max_streams");
            format!("at most {} ingest streams are served at once", self.limits.max_streams)
        })?;
        let quota = self.limits.stream_quota(caller);
        let mut by_caller = self.by_caller.lock().unwrap_or_else(PoisonError::into_inner);
        let open = by_caller.entry(caller.clone()).or_insert(0);
        if *open >= quota {
            crate::metrics::refused_stream("caller_quota");
            let key = if self.limits.max_streams_by_caller.contains_key(&**caller) {
                format!("ingest.max_streams_by_caller.{caller}")
            } else {
                "ingest.max_streams_per_caller".to_owned()
            };
            return Err(format!(
                "caller `{caller}` already holds its quota of {quota} ingest streams ({key}); close one or reuse it"
            ));
        }
        *open += 1;
        Ok(StreamSlot {
            _global: global,
            caller: caller.clone(),
            by_caller: self.by_caller.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut by_caller = self.by_caller.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = by_caller.get_mut(&self.caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_caller.remove(&self.caller);
            }
        }
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
        let p1 = a.admit("x", 1, 600, None).unwrap();
        assert_eq!(a.admit("x", 1, 600, None).unwrap_err().reason, "in_flight", "bytes");
        let p2 = a.admit("x", 1, 10, None).unwrap();
        assert_eq!(a.admit("x", 1, 10, None).unwrap_err().reason, "in_flight", "batches");
        drop((p1, p2));
        assert!(
            a.admit("x", 1, 5000, None).is_ok(),
            "a batch larger than the budget takes all of it"
        );
    }

    #[test]
    fn bytes_held_while_a_message_arrived_become_the_batch_share() {
        let limits = IngestLimits {
            max_in_flight_bytes: 1000,
            ..Default::default()
        };
        let a = Admission::new(&limits, &RateLimits::default());
        let received = a.budget().try_reserve(700).unwrap();
        assert!(
            a.admit("x", 1, 400, None).is_err(),
            "a message still arriving counts against the budget"
        );
        let permit = a.admit("x", 1, 750, Some(received)).unwrap();
        assert_eq!(a.budget().available(), 250, "counted once, not twice");
        drop(permit);
        assert_eq!(a.budget().available(), 1000);
    }

    #[test]
    fn each_caller_has_a_quota_of_streams() {
        let limits = IngestLimits {
            max_streams: 8,
            max_streams_by_caller: [("fleet".to_owned(), 5)].into(),
            ..Default::default()
        };
        let slots = StreamSlots::new(&limits);
        let (det, fleet): (Arc<str>, Arc<str>) = (Arc::from("det"), Arc::from("fleet"));
        let held: Vec<_> = (0..2).map(|_| slots.open(&det).unwrap()).collect();
        let refused = slots.open(&det).err().unwrap();
        assert!(
            refused.contains("quota of 2") && refused.contains("max_streams_per_caller"),
            "{refused}"
        );
        let fleet_held: Vec<_> = (0..5).map(|_| slots.open(&fleet).unwrap()).collect();
        assert!(
            slots
                .open(&fleet)
                .err()
                .unwrap()
                .contains("max_streams_by_caller.fleet")
        );
        let other = slots.open(&Arc::from("other")).unwrap();
        assert!(
            slots.open(&Arc::from("more")).err().unwrap().contains("at most 8"),
            "global limit"
        );
        drop((held, other));
        assert!(slots.open(&det).is_ok(), "closed streams give their slots back");
        drop(fleet_held);
    }
}
