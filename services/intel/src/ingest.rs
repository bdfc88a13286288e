//! [`Intel`]: the library entry point that turns enriched events and shared indicators into
//! stored STIX objects. The gRPC service's `ShareEvents`, which the export service's `intel`
//! sink calls over gRPC, stores through [`Intel::ingest_events`]; the TAXII server uses the
//! same handle.

use std::sync::Arc;

use attackmesh::proto::EnrichedEvent;
use attackmesh_attack::Kb;
use chrono::Utc;

use crate::{
    config::IntelConfig,
    error::Error,
    stix::{StixObject, StixOptions, stix_objects_for},
    store::{EventObjects, EventRefused, Store, WriteMode, WriteResult, campaigns::CampaignRecord},
};

/// What one ingest stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Ids of the indicator objects created or updated, in order, without repeats.
    pub indicator_ids: Vec<String>,
    /// Object versions added (new objects and new versions).
    pub versions_added: usize,
    /// Events left alone because the collection already had them at the same or a higher
    /// revision (an at-least-once sender's redelivery).
    pub duplicates: usize,
    /// Events none of whose objects could be stored (their positions in the ingested slice),
    /// e.g. because a stored version of one of their objects can have no later version.
    pub refused: Vec<EventRefused>,
}

/// Builds, merges and stores STIX objects. Cheap to clone.
#[derive(Clone)]
pub struct Intel {
    store: Store,
    kb: Arc<Kb>,
    options: Arc<StixOptions>,
    default_collection: Arc<str>,
    collections: Arc<[String]>,
    max_versions: usize,
}

impl std::fmt::Debug for Intel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intel")
            .field("store", &self.store)
            .field("default_collection", &self.default_collection)
            .finish()
    }
}

impl Intel {
    /// Opens the store `config` names (creating its schema).
    pub async fn open(config: &IntelConfig, kb: Arc<Kb>) -> Result<Self, Error> {
        let store = Store::open(config.db_url().expose()).await?;
        Ok(Self::new(store, kb, config))
    }

    /// Wraps an opened store.
    pub fn new(store: Store, kb: Arc<Kb>, config: &IntelConfig) -> Self {
        Self {
            store,
            kb,
            options: Arc::new(config.stix_options()),
            default_collection: config.default_collection_id().into(),
            collections: config.collections().into_iter().map(|c| c.id).collect(),
            max_versions: config.max_versions,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The knowledge base technique and group ids are checked against.
    pub fn kb(&self) -> &Arc<Kb> {
        &self.kb
    }

    /// How objects are built.
    pub fn options(&self) -> &StixOptions {
        &self.options
    }

    /// The collection used when none is named.
    pub fn default_collection(&self) -> &str {
        &self.default_collection
    }

    /// The configured collection `id` (empty: the default one), or `NotFound`.
    pub fn collection<'a>(&'a self, id: &'a str) -> Result<&'a str, Error> {
        let id = if id.is_empty() { self.default_collection() } else { id };
        if self.collections.iter().any(|c| c.as_str() == id) {
            Ok(id)
        } else {
            Err(Error::NotFound(format!("collection `{id}` does not exist")))
        }
    }

    /// Builds the STIX objects of enriched events and stores them in `collection` (empty: the
    /// default one) as new objects or new versions of existing ones, in one transaction.
    ///
    /// Idempotent per (collection, `event_id`, `revision`): an event the collection already has
    /// at the same or a higher revision changes nothing and is counted in
    /// [`IngestReport::duplicates`], so a redelivered batch neither counts its sightings again nor
    /// adds versions. A higher revision (a re-attribution) is applied, without counting the
    /// observation again. An event one of whose objects is refused is left out as a whole and
    /// listed in [`IngestReport::refused`]; the others are stored. See [`Store::write_events`]
    /// for how long events are remembered.
    pub async fn ingest_events(&self, collection: &str, events: &[EnrichedEvent]) -> Result<IngestReport, Error> {
        let collection = self.collection(collection)?.to_owned();
        let now_us = Utc::now().timestamp_micros();
        let events = events
            .iter()
            .map(|event| {
                let (observations, objects) = stix_objects_for(event, &self.kb, &self.options)
                    .into_iter()
                    .partition(|o| o.object_type() == "sighting");
                Ok(EventObjects {
                    event_id: event.event_id.clone(),
                    revision: event.revision,
                    objects,
                    observations,
                    // A campaign alert sums up its members; it is not another observation.
                    matrix: event
                        .campaign
                        .is_none()
                        .then(|| crate::ui::observation(event, &self.kb, now_us)),
                    campaign: event.campaign.as_deref().map(CampaignRecord::of).transpose()?,
                })
            })
            .collect::<Result<_, Error>>()?;
        let written = self
            .store
            .write_events(&collection, self.options.base_objects(), events, Utc::now())
            .await?;
        self.prune(&collection, &written.results).await;
        Ok(IngestReport {
            duplicates: written.duplicates,
            refused: written.refused,
            ..report(&written.results)
        })
    }

    /// Records events with nothing to share (no indicator a pattern can be built for) for the
    /// live matrix only: no STIX object is written, and each event counts once per revision as
    /// in [`Intel::ingest_events`].
    pub async fn observe_events(&self, collection: &str, events: &[EnrichedEvent]) -> Result<(), Error> {
        let collection = self.collection(collection)?.to_owned();
        let now_us = Utc::now().timestamp_micros();
        let events = events
            .iter()
            .map(|event| EventObjects {
                event_id: event.event_id.clone(),
                revision: event.revision,
                objects: Vec::new(),
                observations: Vec::new(),
                matrix: event
                    .campaign
                    .is_none()
                    .then(|| crate::ui::observation(event, &self.kb, now_us)),
                campaign: None,
            })
            .collect();
        self.store
            .write_events(&collection, Vec::new(), events, Utc::now())
            .await?;
        Ok(())
    }

    /// Stores objects attackmesh produced (merged into existing versions), preceded by the
    /// identity and marking definition they reference: all of them, or (`Conflict`) none when
    /// one is refused.
    pub async fn store_produced(&self, collection: &str, objects: Vec<StixObject>) -> Result<IngestReport, Error> {
        let collection = self.collection(collection)?.to_owned();
        let mut all = self.options.base_objects();
        all.extend(objects);
        let results = self.store.write(&collection, all, WriteMode::Merge, Utc::now()).await?;
        if let Some(why) = results.iter().find_map(|r| r.refused.as_deref()) {
            return Err(Error::Conflict(why.to_owned()));
        }
        self.prune(&collection, &results).await;
        Ok(report(&results))
    }

    /// Drops versions beyond `max_versions` of the objects that just got a new one. Failing to
    /// prune loses nothing, so it is logged, not returned.
    pub(crate) async fn prune(&self, collection: &str, results: &[WriteResult]) {
        let ids: Vec<String> = results.iter().filter(|r| r.added).map(|r| r.id.clone()).collect();
        if let Err(e) = self.store.prune_versions(collection, &ids, self.max_versions).await {
            tracing::warn!(collection, error = %e, "old versions not pruned");
        }
    }
}

fn report(results: &[WriteResult]) -> IngestReport {
    let mut out = IngestReport::default();
    for r in results {
        if r.added {
            out.versions_added += 1;
        }
        if r.id.starts_with("indicator--") && !out.indicator_ids.contains(&r.id) {
            out.indicator_ids.push(r.id.clone());
        }
    }
    crate::metrics::objects_added(out.versions_added);
    out
}
