//! [`CampaignBuilder`]: observes enriched events in event-time order and keeps one campaign per
//! set of linked entities. It decides membership, merges, risk, incident rules and closing; it
//! never does I/O — the caller feeds events, takes [`CampaignBuilder::updates`] and, to survive
//! a restart, stores a [`Snapshot`].

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use attackmesh::proto::{Campaign, EnrichedEvent};
use attackmesh_attack::Kb;
use serde::{Deserialize, Serialize};

use crate::{
    CampaignConfig, Error, IncidentRule,
    entity::{self, EntityKey},
    state::{CampaignState, Contribution, EntityState, HitState, TechniqueState},
};

/// Event type of campaign alerts; such events are never folded into campaigns themselves.
pub const CAMPAIGN_EVENT_TYPE: &str = "attackmesh.campaign";
/// Event ids remembered to recognise a redelivered event.
const RECENT_EVENTS: usize = 100_000;
/// Contributions kept per entity for the incident rules' windows; beyond it the oldest go, so
/// a flood of events on one entity is judged on its latest ones.
const MAX_HISTORY: usize = 4_096;
/// Format revision of [`Snapshot`].
const SNAPSHOT_FORMAT: u32 = 1;

/// Builds campaigns from enriched events. See the crate documentation.
#[derive(Debug)]
pub struct CampaignBuilder {
    pub(crate) kb: Arc<Kb>,
    pub(crate) config: CampaignConfig,
    campaigns: HashMap<String, CampaignState>,
    /// Linking entity → open campaign holding it.
    index: HashMap<EntityKey, String>,
    /// (last event time, id) of open campaigns, for closing by inactivity.
    by_last: BTreeSet<(i64, String)>,
    /// Recently seen event ids → campaign id, oldest first, bounded.
    recent: HashMap<String, String>,
    recent_order: VecDeque<String>,
    /// Latest event time seen, ms.
    watermark: i64,
    /// Tactic id → position in the matrix (kill-chain) order.
    pub(crate) tactic_pos: HashMap<String, usize>,
}

/// What a builder must remember across a restart: its campaigns and recent event ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    format: u32,
    watermark: i64,
    campaigns: Vec<CampaignState>,
    recent: Vec<(String, String)>,
}

impl CampaignBuilder {
    /// A builder over a knowledge base; fails on invalid configuration.
    pub fn new(kb: Arc<Kb>, config: CampaignConfig) -> Result<Self, Error> {
        config.validate()?;
        let tactic_pos = kb.tactics().enumerate().map(|(i, t)| (t.id.clone(), i)).collect();
        Ok(Self {
            kb,
            config,
            campaigns: HashMap::new(),
            index: HashMap::new(),
            by_last: BTreeSet::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            watermark: i64::MIN,
            tactic_pos,
        })
    }

    /// Campaigns held (open, and closed or merged ones not yet taken by [`Self::updates`]).
    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    /// True when no campaign is held.
    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// Folds one event into the campaign of its entities (starting, joining or merging
    /// campaigns) and returns that campaign's id; `None` for an event without entities or a
    /// campaign alert. Events should come in event-time order; a late one still joins.
    /// An event id seen before only adds techniques its new revision brings.
    pub fn observe(&mut self, event: &EnrichedEvent) -> Option<String> {
        if event.campaign.is_some() || event.event_type == CAMPAIGN_EVENT_TYPE {
            return None;
        }
        let ms = event.timestamp.as_ref().map_or(self.watermark.max(0), ts_ms);
        if let Some(id) = self.recent.get(&event.event_id).cloned() {
            // Seen before: counted once already. Only a new revision's techniques are added;
            // an event whose campaign has closed since changes nothing.
            let c = self.campaigns.get_mut(&id)?;
            if add_techniques(c, event, ms, &self.tactic_pos) {
                c.dirty = true;
            }
            return Some(id);
        }
        if ms > self.watermark {
            self.watermark = ms;
            self.close_idle(ms);
        }
        let entities = entity::of_event(event);
        if entities.is_empty() {
            return None;
        }
        let id = self.campaign_for(event, &entities, ms);
        self.fold(&id, event, &entities, ms);
        self.remember(&event.event_id, &id);
        Some(id)
    }

    /// Closes every open campaign idle for the inactivity timeout as of `now_ms` (event time,
    /// ms since the epoch). [`Self::observe`] calls it as event time advances; a caller with a
    /// quiet stream calls it from a clock.
    pub fn close_idle(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.config.inactivity.as_millis() as i64);
        while let Some((last, id)) = self.by_last.first().cloned() {
            if last >= horizon {
                break;
            }
            self.close(&id);
        }
    }

    /// Every campaign changed since the last call, each with a higher revision than it was last
    /// emitted with, ordered by first event time then id. Closed and merged campaigns are
    /// emitted once more and then forgotten.
    pub fn updates(&mut self) -> Vec<Campaign> {
        let mut ids: Vec<(i64, String)> = self
            .campaigns
            .values()
            .filter(|c| c.dirty)
            .map(|c| (c.first_ms, c.id.clone()))
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            let Some(c) = self.campaigns.get_mut(&id) else { continue };
            c.revision = c.revision.saturating_add(1);
            c.dirty = false;
            let done = c.closed;
            let c = c.clone();
            out.push(crate::emit::to_proto(self, &c));
            if done {
                self.campaigns.remove(&id);
            }
        }
        out
    }

    /// Every campaign held, as it would be emitted now (revisions unchanged).
    pub fn campaigns(&self) -> Vec<Campaign> {
        let mut all: Vec<&CampaignState> = self.campaigns.values().collect();
        all.sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.id.cmp(&b.id)));
        all.into_iter().map(|c| crate::emit::to_proto(self, c)).collect()
    }

    /// The builder's state, to store and hand to [`Self::restore`] after a restart.
    pub fn snapshot(&self) -> Snapshot {
        let mut campaigns: Vec<CampaignState> = self.campaigns.values().cloned().collect();
        campaigns.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            format: SNAPSHOT_FORMAT,
            watermark: self.watermark,
            campaigns,
            recent: self
                .recent_order
                .iter()
                .filter_map(|e| self.recent.get(e).map(|c| (e.clone(), c.clone())))
                .collect(),
        }
    }

    /// A builder that continues from a snapshot: same campaigns, same ids, revisions go on.
    pub fn restore(kb: Arc<Kb>, config: CampaignConfig, snapshot: Snapshot) -> Result<Self, Error> {
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(Error::Snapshot(format!(
                "format {} is not {SNAPSHOT_FORMAT}",
                snapshot.format
            )));
        }
        let mut b = Self::new(kb, config)?;
        b.watermark = snapshot.watermark;
        for c in snapshot.campaigns {
            if c.id.is_empty() || b.campaigns.contains_key(&c.id) {
                return Err(Error::Snapshot(format!("campaign id {:?} is empty or repeated", c.id)));
            }
            if !c.closed {
                b.by_last.insert((c.last_ms, c.id.clone()));
                for e in &c.entities {
                    if b.links(&e.key) {
                        b.index.insert(e.key.clone(), c.id.clone());
                    }
                }
            }
            b.campaigns.insert(c.id.clone(), c);
        }
        for (event, campaign) in snapshot.recent {
            b.remember(&event, &campaign);
        }
        Ok(b)
    }

    fn links(&self, key: &EntityKey) -> bool {
        !self.config.never_link.iter().any(|v| v == &key.value)
    }

    /// The open campaign the event belongs to: new, existing, or the survivor of a merge.
    fn campaign_for(&mut self, event: &EnrichedEvent, entities: &[EntityKey], ms: i64) -> String {
        let mut found: Vec<String> = entities.iter().filter_map(|e| self.index.get(e).cloned()).collect();
        found.sort();
        found.dedup();
        match found.len() {
            0 => {
                if self.by_last.len() >= self.config.max_open_campaigns
                    && let Some((_, oldest)) = self.by_last.first().cloned()
                {
                    self.close(&oldest);
                }
                let id = campaign_id(&event.event_id, &event.source_service, ms);
                let id = if self.campaigns.contains_key(&id) {
                    campaign_id(&id, "again", ms)
                } else {
                    id
                };
                self.campaigns.insert(id.clone(), CampaignState::new(id.clone(), ms));
                self.by_last.insert((ms, id.clone()));
                id
            }
            1 => found.remove(0),
            _ => self.merge(found),
        }
    }

    /// Merges open campaigns into the one that started first (ties: smallest id).
    fn merge(&mut self, ids: Vec<String>) -> String {
        let key = |id: &String| {
            self.campaigns
                .get(id)
                .map_or((i64::MAX, id.clone()), |c| (c.first_ms, id.clone()))
        };
        let Some(survivor) = ids.iter().min_by_key(|id| key(id)).cloned() else {
            return String::new();
        };
        let history = self.config.history().as_millis() as i64;
        let cap = self.config.max_event_ids_per_detector;
        for id in ids.iter().filter(|id| **id != survivor) {
            let Some(mut other) = self.campaigns.remove(id) else {
                continue;
            };
            self.by_last.remove(&(other.last_ms, other.id.clone()));
            if let Some(s) = self.campaigns.get_mut(&survivor) {
                self.by_last.remove(&(s.last_ms, s.id.clone()));
                s.absorb(&other, cap, history);
                self.by_last.insert((s.last_ms, s.id.clone()));
            }
            for e in &other.entities {
                if self.index.get(&e.key) == Some(&other.id) {
                    self.index.insert(e.key.clone(), survivor.clone());
                }
            }
            for campaign in self.recent.values_mut().filter(|c| **c == other.id) {
                campaign.clone_from(&survivor);
            }
            other.closed = true;
            other.dirty = true;
            other.merged_into = Some(survivor.clone());
            self.campaigns.insert(other.id.clone(), other);
        }
        survivor
    }

    fn close(&mut self, id: &str) {
        let Some(c) = self.campaigns.get_mut(id) else { return };
        self.by_last.remove(&(c.last_ms, c.id.clone()));
        c.closed = true;
        c.dirty = true;
        for e in &c.entities {
            if self.index.get(&e.key).is_some_and(|x| x == id) {
                self.index.remove(&e.key);
            }
        }
    }

    fn remember(&mut self, event_id: &str, campaign: &str) {
        if event_id.is_empty() {
            return;
        }
        if self.recent.insert(event_id.to_owned(), campaign.to_owned()).is_none() {
            self.recent_order.push_back(event_id.to_owned());
        }
        while self.recent_order.len() > RECENT_EVENTS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// Adds the event to campaign `id`: detectors, entities, risk, techniques, rules.
    fn fold(&mut self, id: &str, event: &EnrichedEvent, entities: &[EntityKey], ms: i64) {
        let risk = self.config.severity_weights.of(event.severity) * event.confidence_score.clamp(0.0, 1.0);
        let tactics = tactic_bits(event, &self.tactic_pos);
        let source = format!("{}/{}", event.source_service, event.event_type);
        let history = self.config.history().as_millis() as i64;
        let cap = self.config.max_event_ids_per_detector;
        let max_entities = self.config.max_entities_per_campaign;
        let linking: Vec<bool> = entities.iter().map(|e| self.links(e)).collect();
        let software = software_of(&self.kb, event);
        let Some(c) = self.campaigns.get_mut(id) else { return };
        self.by_last.remove(&(c.last_ms, c.id.clone()));
        c.first_ms = c.first_ms.min(ms);
        c.last_ms = c.last_ms.max(ms);
        self.by_last.insert((c.last_ms, c.id.clone()));
        c.dirty = true;
        c.add_event_id(&event.source_service, event.detector_kind, ms, &event.event_id, cap);
        add_techniques(c, event, ms, &self.tactic_pos);
        for s in software {
            if !c.software.contains(&s) {
                c.software.push(s);
            }
        }
        let contribution = Contribution {
            ms,
            risk,
            tactics,
            source,
        };
        for (key, link) in entities.iter().zip(linking) {
            let pos = match c.entities.iter().position(|e| &e.key == key) {
                Some(p) => p,
                None if c.entities.len() < max_entities => {
                    c.entities.push(EntityState {
                        key: key.clone(),
                        risk: 0.0,
                        events: 0,
                        first_ms: ms,
                        history: VecDeque::new(),
                    });
                    if link {
                        self.index.insert(key.clone(), id.to_owned());
                    }
                    c.entities.len() - 1
                }
                None => continue,
            };
            let e = &mut c.entities[pos];
            e.risk += risk;
            e.events = e.events.saturating_add(1);
            e.first_ms = e.first_ms.min(ms);
            let at = e.history.partition_point(|x| x.ms <= ms);
            e.history.insert(at, contribution.clone());
            let newest = e.history.back().map_or(ms, |x| x.ms);
            while e.history.front().is_some_and(|x| x.ms < newest - history) || e.history.len() > MAX_HISTORY {
                e.history.pop_front();
            }
            for rule in &self.config.rules {
                if c.hits.iter().any(|h| h.rule == rule.name() && h.object == *key) {
                    continue;
                }
                if let Some(detail) = evaluate(rule, &e.history, ms) {
                    c.hits.push(HitState {
                        rule: rule.name().to_owned(),
                        object: key.clone(),
                        detail,
                        ms,
                    });
                }
            }
        }
        c.entities.sort_by_key(|e| e.first_ms);
    }
}

/// Checks one rule over an entity's contributions in the window ending at `at`.
fn evaluate(rule: &IncidentRule, history: &VecDeque<Contribution>, at: i64) -> Option<String> {
    let from = at.saturating_sub(rule.window().as_millis() as i64);
    let inside = history.iter().filter(|c| c.ms >= from && c.ms <= at);
    let hours = rule.window().as_secs() / 3600;
    let span = if hours >= 48 && hours.is_multiple_of(24) {
        format!("{}d", hours / 24)
    } else {
        format!("{hours}h")
    };
    match rule {
        IncidentRule::RiskThreshold { threshold, .. } => {
            let total: f64 = inside.map(|c| c.risk).sum();
            (total > *threshold).then(|| format!("risk {total:.0} in {span} > {threshold:.0}"))
        }
        IncidentRule::TacticSources {
            min_tactics,
            min_sources,
            ..
        } => {
            let mut bits = 0u64;
            let mut sources: Vec<&str> = Vec::new();
            for c in inside {
                bits |= c.tactics;
                if !sources.contains(&c.source.as_str()) {
                    sources.push(&c.source);
                }
            }
            let tactics = bits.count_ones() as usize;
            (tactics >= *min_tactics && sources.len() >= *min_sources)
                .then(|| format!("{tactics} tactics from {} sources in {span}", sources.len()))
        }
    }
}

/// Adds the event's techniques; true when one was new.
fn add_techniques(c: &mut CampaignState, event: &EnrichedEvent, ms: i64, tactic_pos: &HashMap<String, usize>) -> bool {
    let Some(meta) = event.metadata.as_ref() else {
        return false;
    };
    let mut added = false;
    for t in &meta.techniques {
        match c.techniques.iter_mut().find(|x| x.id == t.id) {
            Some(x) => {
                x.count = x.count.saturating_add(1);
                if ms < x.first_ms {
                    (x.first_ms, x.first_event, x.first_asset) = (ms, event.event_id.clone(), entity::asset_of(event));
                }
            }
            None => {
                let mut tactic_ids: Vec<String> = t.tactics.iter().map(|x| x.id.clone()).collect();
                tactic_ids.sort_by_key(|x| tactic_pos.get(x).copied().unwrap_or(usize::MAX));
                c.techniques.push(TechniqueState {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    stix_id: t.stix_id.clone(),
                    tactic_ids,
                    first_ms: ms,
                    count: 1,
                    first_event: event.event_id.clone(),
                    first_asset: entity::asset_of(event),
                });
                added = true;
            }
        }
    }
    c.techniques
        .sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.id.cmp(&b.id)));
    added
}

fn tactic_bits(event: &EnrichedEvent, tactic_pos: &HashMap<String, usize>) -> u64 {
    let mut bits = 0u64;
    for t in event.metadata.iter().flat_map(|m| &m.techniques) {
        for tactic in &t.tactics {
            if let Some(p) = tactic_pos.get(&tactic.id).filter(|p| **p < 64) {
                bits |= 1 << p;
            }
        }
    }
    bits
}

/// ATT&CK software the event names: a process name (without `.exe`) or a `software` attribute.
fn software_of(kb: &Kb, event: &EnrichedEvent) -> Vec<String> {
    let names = [event.source.as_ref(), event.destination.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|e| e.process.as_ref())
        .map(|p| p.name.trim_end_matches(".exe").to_owned())
        .chain(event.attributes.get("software").cloned());
    let mut out: Vec<String> = names
        .filter(|n| !n.is_empty())
        .filter_map(|n| kb.software(&n).filter(|s| !s.revoked).map(|s| s.id.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Deterministic campaign id from the event that started it.
fn campaign_id(event_id: &str, service: &str, ms: i64) -> String {
    let name = format!("urn:attackmesh:campaign:{service}:{event_id}:{ms}");
    format!(
        "campaign--{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
    )
}

/// Milliseconds since the epoch of a protobuf timestamp.
pub(crate) fn ts_ms(ts: &pbjson_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos / 1_000_000))
}
