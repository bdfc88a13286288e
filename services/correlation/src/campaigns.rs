//! Campaigns in a replica: a [`CampaignBuilder`] fed every event the replica observes (and the
//! replica's own findings, which are evidence too), whose state rides in the replica's snapshot
//! so that a restarted replica continues each campaign under the same id at a higher revision.
//!
//! With several replicas, each event joins the campaigns of one replica only: the owner of its
//! first entity (in [`partition::ENTITY_FIELDS`] order). A campaign therefore spans what one
//! replica sees; two entities owned by different replicas are never linked.

use std::sync::Arc;

use attackmesh::proto::{Campaign, DetectionEvent, EnrichedEvent, EnrichmentMetadata, TechniqueDetail};
use attackmesh_attack::Kb;
use attackmesh_campaign::{CampaignBuilder, CampaignConfig, Snapshot};
use attackmesh_runtime::partition;

use crate::{engine::Shard, error::Error};

/// A replica's campaign builder and the knowledge base its alerts are described with.
#[derive(Debug)]
pub struct Campaigns {
    builder: CampaignBuilder,
    kb: Arc<Kb>,
    config: CampaignConfig,
}

impl Campaigns {
    /// A fresh builder; fails on invalid configuration.
    pub fn new(kb: Arc<Kb>, config: CampaignConfig) -> Result<Self, Error> {
        let builder = CampaignBuilder::new(kb.clone(), config.clone()).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self { builder, kb, config })
    }

    /// The same builder continued from a saved snapshot (`bytes`; empty: nothing saved).
    pub(crate) fn restore(self, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Ok(self);
        }
        let corrupt =
            |why: String| Error::Config(format!("saved campaigns: {why}; move the state away to start empty"));
        let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let builder = CampaignBuilder::restore(self.kb.clone(), self.config.clone(), snapshot)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Self { builder, ..self })
    }

    /// The builder's state, serialized for the snapshot.
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&self.builder.snapshot()).map_err(|e| Error::Unavailable(format!("campaign snapshot: {e}")))
    }

    /// Campaigns held.
    pub fn len(&self) -> usize {
        self.builder.len()
    }

    /// True when no campaign is held.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// The knowledge base campaign alerts are described with.
    pub fn kb(&self) -> &Kb {
        &self.kb
    }

    /// Folds `event` in when this replica owns its campaign (see the module documentation).
    pub(crate) fn observe(&mut self, event: &EnrichedEvent, shard: Shard) {
        if shard.count > 1 {
            let first = partition::ENTITY_FIELDS
                .iter()
                .map(|f| partition::entity_value(event, f))
                .find(|v| !v.is_empty());
            if first.is_some_and(|v| partition::owner(v, shard.count) != shard.index) {
                return;
            }
        }
        self.builder.observe(event);
    }

    /// Folds one of this replica's findings in as a member, its technique hints described from
    /// the knowledge base (siem-export's correlation sink never brings findings back).
    pub(crate) fn observe_finding(&mut self, finding: &DetectionEvent) {
        let techniques: Vec<TechniqueDetail> = finding
            .technique_hints
            .iter()
            .filter_map(|id| self.kb.technique(id))
            .map(|t| TechniqueDetail {
                id: t.id.clone(),
                name: t.name.clone(),
                tactics: self
                    .kb
                    .tactics_of(t)
                    .map(|x| attackmesh::proto::Tactic {
                        id: x.id.clone(),
                        name: x.name.clone(),
                        shortname: x.shortname.clone(),
                    })
                    .collect(),
                url: t.url.clone(),
                stix_id: t.stix_id.clone(),
                ..Default::default()
            })
            .collect();
        let member = EnrichedEvent {
            event_id: finding.event_id.clone(),
            timestamp: finding.timestamp,
            source_service: finding.source_service.clone(),
            detector_kind: finding.detector_kind,
            event_type: finding.event_type.clone(),
            source: finding.source.clone(),
            destination: finding.destination.clone(),
            severity: finding.severity,
            description: finding.description.clone(),
            technique_ids: techniques.iter().map(|t| t.id.clone()).collect(),
            confidence_score: finding.detector_confidence.unwrap_or(1.0),
            metadata: Some(EnrichmentMetadata {
                techniques,
                ..Default::default()
            }),
            attributes: finding.attributes.clone(),
            revision: 1,
            ..Default::default()
        };
        self.builder.observe(&member);
    }

    /// Campaigns changed since the last call, each at a higher revision.
    pub(crate) fn updates(&mut self) -> Vec<Campaign> {
        self.builder.updates()
    }
}
