//! The stateful engine: correlation rules over enriched events, in event time, with bounded
//! memory. Used by the correlation service and by the CLI's offline `attackmesh enrich`; it has
//! no I/O, no clock and no async: the same input in the same order yields the same findings
//! with the same ids.
//!
//! - Windows are sliding, keyed by (rule, group-by values), at most
//!   [`Limits::max_events_per_group`] entries each and [`Limits::max_groups`] in total; beyond
//!   that the expired windows go first, then the least recently seen (counted in
//!   [`Stats::evicted`]).
//! - Event time, per window: an event older than its window's newest event minus
//!   [`Limits::allowed_lateness`] is late and not counted; within that allowance it takes its
//!   place in time order. Lateness is judged per window, not against one global clock, so a
//!   detector that ships an hour late (or another whose clock runs ahead) does not make every
//!   other entity's events late.
//! - An event id already counted for a base rule is not counted again for it (a resend, or the
//!   same event at a higher revision); a new revision still counts for base rules it newly
//!   matches (a re-attribution that adds a technique).
//! - Findings of correlation itself (`source_service` = [`DETECTOR`]) are never counted, so a
//!   finding cannot feed back into the windows that raised it.

pub mod fields;
pub mod finding;
pub mod matcher;
pub mod rules;
pub mod snapshot;
pub mod window;

use std::{collections::HashMap, sync::Arc, time::Duration};

use attackmesh::proto::{DetectionEvent, EnrichedEvent};
use serde::{Deserialize, Serialize};

pub use finding::DETECTOR;
pub use rules::{Kind, Pack, Rule};

use self::{
    matcher::Selection,
    rules::{Base, Ref},
    window::{Entry, Group},
};

/// Memory and lateness bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Windows kept in total.
    pub max_groups: usize,
    /// Entries kept per window.
    pub max_events_per_group: usize,
    /// How far behind the newest event time an event may arrive and still count.
    pub allowed_lateness: Duration,
    /// Event ids remembered to recognise resends.
    pub max_seen: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_groups: 200_000,
            max_events_per_group: 256,
            allowed_lateness: Duration::from_secs(300),
            max_seen: 500_000,
        }
    }
}

/// Sources an allow-list entry exempts from some rules (e.g. admin jump hosts).
#[derive(Debug, Clone)]
pub struct Allow {
    /// Rule ids or names it applies to; empty means every rule.
    pub rules: Vec<String>,
    /// Events it exempts.
    pub selection: Selection,
}

/// Counters since start (or restore).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Windows dropped to stay within `max_groups` before they expired.
    pub evicted: u64,
    /// Entries dropped to stay within `max_events_per_group`.
    pub truncated: u64,
    /// Windows dropped after they expired.
    pub expired: u64,
}

/// What one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in at least one window.
    Applied,
    /// Matched no base rule, or only windows other replicas own.
    Unmatched,
    /// A resend, a finding of correlation, or an event without a timestamp.
    Ignored,
    /// Older than its windows' newest events minus the allowed lateness.
    Late,
}

/// What adding an entry to a window did.
enum Window {
    Applied,
    Late,
    /// Another replica owns the window.
    Elsewhere,
}

/// The replica an event is observed on, for window ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shard {
    /// This replica's position.
    pub index: u32,
    /// Replicas in all; 0 or 1: this one owns everything.
    pub count: u32,
}

impl Shard {
    fn owns(&self, entity: &str) -> bool {
        self.count <= 1 || attackmesh_runtime::partition::owner(entity, self.count) == self.index
    }
}

/// The state that snapshots carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    watermark: i64,
    groups: HashMap<(u32, u64), Group>,
    seen: HashMap<u64, u64>,
    seen_order: std::collections::VecDeque<u64>,
}

/// The engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pack: Arc<Pack>,
    allow: Vec<(Vec<usize>, Selection)>,
    limits: Limits,
    by_base: Vec<Vec<(usize, u64)>>,
    by_rule: Vec<Vec<(usize, u64)>>,
    state: State,
    stats: Stats,
}

/// Stable 64-bit hash (FNV-1a): window keys and seen ids must mean the same after a restore.
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0x1f]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Engine {
    /// An engine over `pack`, exempting what `allow` lists.
    pub fn new(pack: Pack, allow: Vec<Allow>, limits: Limits) -> Result<Self, String> {
        let mut by_base = vec![Vec::new(); pack.bases.len()];
        let mut by_rule = vec![Vec::new(); pack.rules.len()];
        for (r, rule) in pack.rules.iter().enumerate() {
            for (p, reference) in rule.refs.iter().enumerate() {
                match reference {
                    Ref::Base(b) => by_base[*b].push((r, p as u64)),
                    Ref::Rule(d) => by_rule[*d].push((r, p as u64)),
                }
            }
        }
        let allow = allow
            .into_iter()
            .map(|a| {
                let rules = a
                    .rules
                    .iter()
                    .map(|id| {
                        pack.rules
                            .iter()
                            .position(|r| &r.id == id || &r.name == id)
                            .ok_or(format!("allow names unknown rule {id:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((rules, a.selection))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            pack: Arc::new(pack),
            allow,
            limits,
            by_base,
            by_rule,
            state: State::default(),
            stats: Stats::default(),
        })
    }

    /// The rules.
    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Windows held.
    pub fn groups(&self) -> usize {
        self.state.groups.len()
    }

    /// Applies one event; findings it raises are pushed to `findings`.
    pub fn observe(&mut self, event: &EnrichedEvent, shard: Shard, findings: &mut Vec<DetectionEvent>) -> Observed {
        if event.source_service == DETECTOR {
            return Observed::Ignored;
        }
        let Some(ts) = event
            .timestamp
            .as_ref()
            .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000)
        else {
            return Observed::Ignored;
        };
        let mut rule_ids: Option<Vec<_>> = None;
        let mut mask = 0u64;
        let mut matched = Vec::new();
        for (b, base) in self.pack.bases.iter().enumerate() {
            let hit = match base {
                Base::Selection(s) => s.matches(event),
                Base::External(id) => rule_ids
                    .get_or_insert_with(|| fields::Field::Rule.values(event))
                    .iter()
                    .any(|r| r == id || r.rsplit_once('/').is_some_and(|(_, tail)| tail == id)),
            };
            if hit {
                mask |= 1 << (b % 64);
                matched.push(b);
            }
        }
        if matched.is_empty() {
            self.state.watermark = self.state.watermark.max(ts);
            return Observed::Unmatched;
        }
        let id_hash = hash(&[&event.event_id]);
        let prior = self.state.seen.get(&id_hash).copied().unwrap_or(0);
        if mask & !prior == 0 {
            return Observed::Ignored;
        }
        self.remember(id_hash, prior | mask);
        self.state.watermark = self.state.watermark.max(ts);
        let (mut applied, mut late) = (false, false);
        for b in matched {
            if prior & (1 << (b % 64)) != 0 {
                continue;
            }
            for i in 0..self.by_base[b].len() {
                let (r, p) = self.by_base[b][i];
                if self.allowed(r, event) {
                    continue;
                }
                let rule = &self.pack.rules[r];
                let Some(values) = rule
                    .group_by
                    .iter()
                    .map(|f| f.get(event).map(|v| Box::<str>::from(v.as_ref())))
                    .collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                let value = match &rule.value_field {
                    Some(f) if rule.kind == Kind::ValueCount => match f.get(event) {
                        Some(v) => hash(&[&v]),
                        None => continue,
                    },
                    _ => p,
                };
                let entry = Entry {
                    ts,
                    value,
                    id: event.event_id.as_str().into(),
                };
                match self.apply(r, values, entry, shard, findings) {
                    Window::Applied => applied = true,
                    Window::Late => late = true,
                    Window::Elsewhere => {}
                }
            }
        }
        match (applied, late) {
            (true, _) => Observed::Applied,
            (false, true) => Observed::Late,
            (false, false) => Observed::Unmatched,
        }
    }

    fn allowed(&self, rule: usize, event: &EnrichedEvent) -> bool {
        self.allow
            .iter()
            .any(|(rules, s)| (rules.is_empty() || rules.contains(&rule)) && s.matches(event))
    }

    fn remember(&mut self, id: u64, mask: u64) {
        if self.state.seen.insert(id, mask).is_none() {
            self.state.seen_order.push_back(id);
            while self.state.seen_order.len() > self.limits.max_seen.max(1) {
                if let Some(old) = self.state.seen_order.pop_front() {
                    self.state.seen.remove(&old);
                }
            }
        }
    }

    /// Adds `entry` to rule `r`'s window for `values`.
    fn apply(
        &mut self,
        r: usize,
        values: Vec<Box<str>>,
        entry: Entry,
        shard: Shard,
        findings: &mut Vec<DetectionEvent>,
    ) -> Window {
        let pack = Arc::clone(&self.pack);
        let rule = &pack.rules[r];
        let owner = match rule.partition {
            Some(i) => values[i].to_string(),
            None => rule.id.clone(),
        };
        if !shard.owns(&owner) {
            return Window::Elsewhere;
        }
        let parts: Vec<&str> = values.iter().map(|v| &**v).collect();
        let key = (r as u32, hash(&parts));
        if !self.state.groups.contains_key(&key) && self.state.groups.len() >= self.limits.max_groups {
            self.make_room();
        }
        let ts = entry.ts;
        let group = self.state.groups.entry(key).or_insert_with(|| Group {
            values,
            ..Group::default()
        });
        let lateness = i64::try_from(self.limits.allowed_lateness.as_micros()).unwrap_or(i64::MAX);
        if ts < group.last_seen.saturating_sub(lateness) {
            return Window::Late;
        }
        if ts < group.quiet_until {
            group.last_seen = group.last_seen.max(ts);
            return Window::Applied;
        }
        self.stats.truncated += group.insert(entry, rule.timespan_micros, self.limits.max_events_per_group) as u64;
        let Some(count) = group.fires(rule) else {
            return Window::Applied;
        };
        let entries: Vec<&Entry> = group.entries.iter().collect();
        let detection = finding::detection(rule, &group.values, &entries, count);
        let newest = group.entries.back().map_or(ts, |e| e.ts);
        let values = group.values.clone();
        group.entries.clear();
        group.quiet_until = newest.saturating_add(rule.timespan_micros);
        // Chained rules see the finding as a match of the rule that raised it.
        for (d, p) in self.by_rule[r].clone() {
            let dep = &pack.rules[d];
            let Some(dep_values) = dep
                .group_by
                .iter()
                .map(|f| rule.group_by.iter().position(|g| g == f).map(|i| values[i].clone()))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let entry = Entry {
                ts: newest,
                value: p,
                id: detection.event_id.as_str().into(),
            };
            self.apply(d, dep_values, entry, shard, findings);
        }
        if rule.generate {
            findings.push(detection);
        }
        Window::Applied
    }

    /// Frees at least a tenth of `max_groups`: expired windows first, then the least recently
    /// seen.
    fn make_room(&mut self) {
        let watermark = self.state.watermark;
        let rules = &self.pack.rules;
        let before = self.state.groups.len();
        self.state.groups.retain(|(r, _), g| {
            g.last_seen >= watermark.saturating_sub(rules[*r as usize].timespan_micros) || g.quiet_until > watermark
        });
        self.stats.expired += (before - self.state.groups.len()) as u64;
        let target = self.limits.max_groups - self.limits.max_groups / 10 - 1;
        if self.state.groups.len() > target {
            let mut seen: Vec<i64> = self.state.groups.values().map(|g| g.last_seen).collect();
            let cut = self.state.groups.len() - target;
            let (_, cutoff, _) = seen.select_nth_unstable(cut - 1);
            let cutoff = *cutoff;
            let before = self.state.groups.len();
            let mut left = cut;
            self.state.groups.retain(|_, g| {
                if left > 0 && g.last_seen <= cutoff {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
            self.stats.evicted += (before - self.state.groups.len()) as u64;
        }
    }
}

#[cfg(test)]
mod tests;
