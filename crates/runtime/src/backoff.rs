//! The one retry pause of the product: exponential backoff with full jitter.
//!
//! Every retry loop — reconnecting to a peer, resending a batch, retrying a sink request or a
//! TAXII push — waits [`Backoff::delay`]: a uniformly random pause between zero and
//! `min(max, initial × 2^attempt)`. Full jitter spreads clients that failed together over the
//! whole window, so they do not come back in step (the "Full Jitter" of AWS's *Exponential
//! Backoff And Jitter*). [`Retries`] keeps the attempt count of one loop. How long a loop keeps
//! retrying (`max_duration`, `give_up_after`) stays the loop's own decision.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bounds of an exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Upper bound of the first pause; doubled after each failure.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Upper bound of every pause.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The pause before retry `attempt` (0 for the first retry): uniformly random in
    /// `[0, min(max, initial × 2^attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        full_jitter(self.cap(attempt))
    }

    /// The upper bound of the pause before retry `attempt`.
    pub fn cap(&self, attempt: u32) -> Duration {
        self.initial.saturating_mul(1u32 << attempt.min(31)).min(self.max)
    }

    /// Checks the bounds: `initial` above zero and at most `max`.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() || self.initial > self.max {
            return Err("initial must be above 0 and at most max".into());
        }
        Ok(())
    }

    /// A fresh attempt count over this backoff.
    pub fn retries(self) -> Retries {
        Retries {
            backoff: self,
            attempt: 0,
        }
    }
}

/// The attempt count of one retry loop: each [`Retries::next_delay`] is the pause before the
/// next try, [`Retries::reset`] starts over after a success.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    attempt: u32,
}

impl Retries {
    /// The pause before the next try; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts over from the first pause (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Retries counted since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A uniformly random duration in `[0, cap]`.
fn full_jitter(cap: Duration) -> Duration {
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pauses_stay_under_a_cap_that_doubles_up_to_max() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(b.cap(0), Duration::from_millis(100));
        assert_eq!(b.cap(3), Duration::from_millis(800));
        assert_eq!(b.cap(6), Duration::from_secs(5));
        assert_eq!(b.cap(u32::MAX), Duration::from_secs(5), "no overflow");
        let mut retries = b.retries();
        let mut seen_low = false;
        for attempt in 0..200u32 {
            let d = retries.next_delay();
            assert!(d <= b.cap(attempt), "{attempt}: {d:?}");
            seen_low |= attempt > 10 && d < Duration::from_millis(2500);
        }
        assert!(seen_low, "full jitter reaches the lower half of the window");
        assert_eq!(retries.attempt(), 200);
        retries.reset();
        assert!(retries.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn bounds_are_checked_and_read_as_human_durations() {
        let b: Backoff = serde_json::from_str(r#"{"initial": "50ms", "max": "1s"}"#).unwrap();
        assert_eq!(b, Backoff::new(Duration::from_millis(50), Duration::from_secs(1)));
        b.validate().unwrap();
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).validate().is_err());
        assert!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1))
                .validate()
                .is_err()
        );
        assert!(serde_json::from_str::<Backoff>(r#"{"initial": "1s", "max": "2s", "jitter": 1}"#).is_err());
    }
}
