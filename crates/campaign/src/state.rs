//! One campaign's remembered state: what its events added up to, in a serde form that a
//! snapshot carries across restarts, and how two of them merge.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::entity::EntityKey;

/// One event's share of an entity's risk, kept for the incident rules' windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Contribution {
    /// Event time, ms since the epoch.
    pub(crate) ms: i64,
    /// Risk the event added.
    pub(crate) risk: f64,
    /// Tactics of the event as a bit set over the KB's matrix order.
    pub(crate) tactics: u64,
    /// Detection source (detector instance + event type).
    pub(crate) source: String,
}

/// An entity of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EntityState {
    pub(crate) key: EntityKey,
    pub(crate) risk: f64,
    pub(crate) events: u32,
    pub(crate) first_ms: i64,
    /// Recent contributions within the longest rule window, oldest first.
    pub(crate) history: VecDeque<Contribution>,
}

/// A detector's contribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DetectorState {
    pub(crate) service: String,
    pub(crate) kind: i32,
    /// (event time, event id), kept in time order up to the cap.
    pub(crate) ids: Vec<(i64, String)>,
    pub(crate) count: u32,
}

/// A technique seen in the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TechniqueState {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) stix_id: String,
    pub(crate) tactic_ids: Vec<String>,
    pub(crate) first_ms: i64,
    pub(crate) count: u32,
    pub(crate) first_event: String,
    pub(crate) first_asset: String,
}

/// An incident rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HitState {
    pub(crate) rule: String,
    pub(crate) object: EntityKey,
    pub(crate) detail: String,
    pub(crate) ms: i64,
}

/// Everything remembered about one campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CampaignState {
    pub(crate) id: String,
    /// Revision last emitted (0 before the first).
    pub(crate) revision: u32,
    pub(crate) closed: bool,
    pub(crate) merged_into: Option<String>,
    /// Changed since last emitted.
    pub(crate) dirty: bool,
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    /// Entities in first-seen order.
    pub(crate) entities: Vec<EntityState>,
    pub(crate) detectors: Vec<DetectorState>,
    /// Techniques in first-seen order.
    pub(crate) techniques: Vec<TechniqueState>,
    /// ATT&CK software ids named by the events.
    pub(crate) software: Vec<String>,
    pub(crate) merged_ids: Vec<String>,
    pub(crate) hits: Vec<HitState>,
}

impl CampaignState {
    pub(crate) fn new(id: String, ms: i64) -> Self {
        Self {
            id,
            revision: 0,
            closed: false,
            merged_into: None,
            dirty: true,
            first_ms: ms,
            last_ms: ms,
            entities: Vec::new(),
            detectors: Vec::new(),
            techniques: Vec::new(),
            software: Vec::new(),
            merged_ids: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// Records an event id for a detector, keeping the earliest `cap` in time order.
    pub(crate) fn add_event_id(&mut self, service: &str, kind: i32, ms: i64, id: &str, cap: usize) {
        let pos = match self.detectors.iter().position(|d| d.service == service) {
            Some(p) => p,
            None => {
                self.detectors.push(DetectorState {
                    service: service.to_owned(),
                    kind,
                    ids: Vec::new(),
                    count: 0,
                });
                self.detectors.len() - 1
            }
        };
        let d = &mut self.detectors[pos];
        d.count = d.count.saturating_add(1);
        let at = d.ids.partition_point(|(t, i)| (*t, i.as_str()) <= (ms, id));
        if at < cap {
            d.ids.insert(at, (ms, id.to_owned()));
            d.ids.truncate(cap);
        }
    }

    /// Takes `other` into `self` (the survivor); `other` is left to be emitted as merged.
    pub(crate) fn absorb(&mut self, other: &CampaignState, cap: usize, history_ms: i64) {
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
        self.revision = self.revision.max(other.revision);
        for e in &other.entities {
            match self.entities.iter_mut().find(|x| x.key == e.key) {
                Some(x) => {
                    x.risk += e.risk;
                    x.events = x.events.saturating_add(e.events);
                    x.first_ms = x.first_ms.min(e.first_ms);
                    let mut all: Vec<Contribution> = x.history.drain(..).chain(e.history.iter().cloned()).collect();
                    all.sort_by_key(|c| c.ms);
                    let newest = all.last().map_or(i64::MIN, |c| c.ms);
                    x.history = all.into_iter().filter(|c| c.ms >= newest - history_ms).collect();
                }
                None => self.entities.push(e.clone()),
            }
        }
        self.entities.sort_by_key(|e| e.first_ms);
        for d in &other.detectors {
            for (ms, id) in &d.ids {
                self.add_event_id(&d.service, d.kind, *ms, id, cap);
            }
            if let Some(x) = self.detectors.iter_mut().find(|x| x.service == d.service) {
                // add_event_id counted the kept ids; count the ones beyond the cap as well.
                x.count = x.count.saturating_add(d.count.saturating_sub(d.ids.len() as u32));
            }
        }
        for t in &other.techniques {
            match self.techniques.iter_mut().find(|x| x.id == t.id) {
                Some(x) => {
                    x.count = x.count.saturating_add(t.count);
                    if t.first_ms < x.first_ms {
                        (x.first_ms, x.first_event, x.first_asset) =
                            (t.first_ms, t.first_event.clone(), t.first_asset.clone());
                    }
                }
                None => self.techniques.push(t.clone()),
            }
        }
        self.techniques
            .sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.id.cmp(&b.id)));
        for s in &other.software {
            if !self.software.contains(s) {
                self.software.push(s.clone());
            }
        }
        for h in &other.hits {
            if !self.hits.iter().any(|x| x.rule == h.rule && x.object == h.object) {
                self.hits.push(h.clone());
            }
        }
        self.hits.sort_by_key(|h| h.ms);
        self.merged_ids.push(other.id.clone());
        self.merged_ids.extend(other.merged_ids.iter().cloned());
        self.merged_ids.sort();
        self.merged_ids.dedup();
        self.dirty = true;
    }
}
