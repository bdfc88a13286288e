//! One sliding window: the entries of one rule for one group (entity), kept in event-time
//! order, pruned to the rule's timespan behind the newest entry, and the rule's condition
//! evaluated over them.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::rules::{Kind, Rule};

/// One contributing event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Event time, in microseconds since the Unix epoch.
    pub ts: i64,
    /// What the rule counts: the hash of `value_count`'s field, else the position of the
    /// matched reference in the rule's `rules`.
    pub value: u64,
    /// The event's id (evidence).
    pub id: Box<str>,
}

/// The window of one (rule, group).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The group-by values, in the rule's order.
    pub values: Vec<Box<str>>,
    /// Entries, oldest first.
    pub entries: VecDeque<Entry>,
    /// After a finding, events before this time are not counted again (one finding per burst).
    pub quiet_until: i64,
    /// Newest event time seen, for eviction.
    pub last_seen: i64,
}

impl Group {
    /// Inserts `entry` in time order, drops what fell out of the window and, beyond `cap`
    /// entries, the oldest ones; answers how many were dropped for the cap.
    pub fn insert(&mut self, entry: Entry, timespan: i64, cap: usize) -> usize {
        let at = self.entries.partition_point(|e| e.ts <= entry.ts);
        self.last_seen = self.last_seen.max(entry.ts);
        self.entries.insert(at, entry);
        let newest = self.entries.back().map_or(0, |e| e.ts);
        while self
            .entries
            .front()
            .is_some_and(|e| e.ts < newest.saturating_sub(timespan))
        {
            self.entries.pop_front();
        }
        let mut dropped = 0;
        while self.entries.len() > cap.max(1) {
            self.entries.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// Whether `rule`'s condition holds over the window; the measured count when it does.
    pub fn fires(&self, rule: &Rule) -> Option<u64> {
        let n = match rule.kind {
            Kind::EventCount => self.entries.len() as u64,
            Kind::ValueCount => self.entries.iter().map(|e| e.value).collect::<HashSet<_>>().len() as u64,
            Kind::Temporal => {
                let seen: HashSet<u64> = self.entries.iter().map(|e| e.value).collect();
                return (0..rule.refs.len() as u64)
                    .all(|p| seen.contains(&p))
                    .then_some(seen.len() as u64);
            }
            Kind::TemporalOrdered => {
                let mut next = 0u64;
                for e in &self.entries {
                    if e.value == next {
                        next += 1;
                    }
                }
                return (next == rule.refs.len() as u64).then_some(next);
            }
            Kind::Beacon => return self.beacon(rule),
        };
        rule.threshold.holds(n).then_some(n)
    }

    /// Beacon: enough entries, steady intervals (coefficient of variation within `max_jitter`)
    /// and a mean interval of at least `min_interval`.
    fn beacon(&self, rule: &Rule) -> Option<u64> {
        let n = self.entries.len() as u64;
        if !rule.threshold.holds(n) || n < 3 {
            return None;
        }
        let gaps: Vec<f64> = self
            .entries
            .iter()
            .zip(self.entries.iter().skip(1))
            .map(|(a, b)| (b.ts - a.ts) as f64)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        if mean < rule.min_interval_micros as f64 {
            return None;
        }
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        (var.sqrt() / mean <= rule.max_jitter).then_some(n)
    }
}
