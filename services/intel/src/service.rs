//! The tonic `IntelService`: `ShareIndicators` (manual sharing, attributed when no technique ids
//! are given), `ShareEvents` (enriched events from siem-export's intel sink) and
//! `ListCollections`. Authentication and the role check happen in the runtime's tower layer;
//! per-collection write access is checked here.

use attackmesh::{
    limits::{MAX_BATCH_EVENTS, MAX_DESCRIPTION_BYTES, MAX_MESSAGE_BYTES, MAX_SOURCE_SERVICE_BYTES},
    proto::{
        AttributionStatus, Collection, EnrichedEvent, EventRejection, FieldViolation, ListCollectionsRequest,
        ListCollectionsResponse, ShareEventsRequest, ShareEventsResponse, ShareIndicatorsRequest,
        ShareIndicatorsResponse,
        intel_service_server::{IntelService, IntelServiceServer},
    },
    validate::is_technique_id,
};
use attackmesh_attack::Resolved;
use attackmesh_runtime::auth::Caller;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::{
    attribution::{Attributor, share_detection},
    config::CollectionConfig,
    error::Error,
    ingest::{IngestReport, Intel},
    stix::{
        builder::{actor_links, technique_links},
        pattern::pattern_for,
        share_objects,
    },
    taxii::auth::{Access, access},
};

/// Most indicators one `ShareIndicators` call may carry.
pub const MAX_SHARED_INDICATORS: usize = 1000;

/// The gRPC service.
#[derive(Clone)]
pub struct IntelApi {
    intel: Intel,
    attributor: Attributor,
    collections: Vec<CollectionConfig>,
}

impl IntelApi {
    /// A service storing through `intel` and attributing with `attributor`.
    pub fn new(intel: Intel, attributor: Attributor, collections: Vec<CollectionConfig>) -> Self {
        Self {
            intel,
            attributor,
            collections,
        }
    }

    /// The configured collection `id` (empty: the default one) if `caller` may write to it. A
    /// collection the caller may neither read nor write is not found, exactly like a missing
    /// one, so that its existence is not disclosed.
    fn writable(&self, caller: Option<&Caller>, id: &str) -> Result<String, Error> {
        let not_found = |id: &str| Error::NotFound(format!("collection `{id}` not found"));
        let id = self.intel.collection(id).map_err(|_| not_found(id))?.to_owned();
        let collection = self
            .collections
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| not_found(&id))?;
        let access = self.access(caller, collection);
        if !access.read && !access.write {
            return Err(not_found(&id));
        }
        if !access.write {
            return Err(Error::PermissionDenied(format!(
                "you may not write to collection `{id}`"
            )));
        }
        Ok(id)
    }

    fn access(&self, caller: Option<&Caller>, collection: &CollectionConfig) -> Access {
        match caller {
            Some(c) => access(c, collection),
            // No caller: the service is mounted without the runtime's auth layer, so whoever
            // mounted it decided who may call.
            None => Access {
                read: true,
                write: true,
            },
        }
    }

    /// Validates, stores and counts the events of one `ShareEvents` call.
    async fn share(&self, caller: Option<Caller>, req: ShareEventsRequest) -> Result<ShareEventsResponse, Error> {
        let n = req.events.len();
        if n == 0 || n > MAX_BATCH_EVENTS {
            let v = FieldViolation {
                field: "events".into(),
                description: format!("must hold 1 to {MAX_BATCH_EVENTS} events, got {n}"),
            };
            return Err(Error::InvalidArgument(vec![v]));
        }
        let id = self.writable(caller.as_ref(), &req.collection_id)?;
        let mut sorted = sort_events(req.events);
        let report = if sorted.shareable.is_empty() {
            IngestReport::default()
        } else {
            self.intel.ingest_events(&id, &sorted.shareable).await?
        };
        if !sorted.observed_only.is_empty() {
            self.intel.observe_events(&id, &sorted.observed_only).await?;
        }
        // An event whose objects could not be stored is refused on its own (the sender
        // dead-letters it with the reason); the rest of the batch is stored.
        for refused in &report.refused {
            let index = sorted.positions.get(refused.index).copied().unwrap_or_default();
            sorted.rejections.push(EventRejection {
                index,
                event_id: refused.event_id.clone(),
                violations: vec![FieldViolation {
                    field: "related_indicators".into(),
                    description: refused.reason.clone(),
                }],
            });
        }
        sorted.rejections.sort_by_key(|r| r.index);
        // A redelivered event is reported as skipped: valid, and nothing (more) to store.
        let duplicates = report.duplicates;
        let accepted = sorted.shareable.len().saturating_sub(duplicates + report.refused.len());
        let rejected = sorted.rejections.len();
        crate::metrics::events_shared(accepted, sorted.skipped, duplicates, rejected);
        tracing::info!(
            collection = %id,
            caller = caller.as_ref().map_or("-", |c| &*c.name),
            accepted,
            skipped = sorted.skipped,
            duplicates,
            rejected,
            versions = report.versions_added,
            "events shared"
        );
        Ok(ShareEventsResponse {
            accepted: accepted as u32,
            skipped: (sorted.skipped + duplicates) as u32,
            objects_stored: u32::try_from(report.versions_added).unwrap_or(u32::MAX),
            indicator_ids: report.indicator_ids,
            rejections: sorted.rejections,
        })
    }
}

/// The tonic server for `api`; it decodes messages up to a full `ShareEvents` batch.
pub fn grpc_service(api: IntelApi) -> IntelServiceServer<IntelApi> {
    IntelServiceServer::new(api).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

fn validate(req: &ShareIndicatorsRequest) -> Result<(), Error> {
    let mut v: Vec<FieldViolation> = Vec::new();
    let mut add = |field: String, description: String| v.push(FieldViolation { field, description });
    if req.indicators.is_empty() || req.indicators.len() > MAX_SHARED_INDICATORS {
        add(
            "indicators".into(),
            format!(
                "must hold 1 to {MAX_SHARED_INDICATORS} indicators, got {}",
                req.indicators.len()
            ),
        );
    }
    for (i, ind) in req.indicators.iter().enumerate().take(MAX_SHARED_INDICATORS) {
        if let Err(why) = pattern_for(ind) {
            add(format!("indicators[{i}].value"), why.to_string());
        }
    }
    for (i, id) in req.technique_ids.iter().enumerate() {
        if !is_technique_id(id) {
            add(
                format!("technique_ids[{i}]"),
                "is not an ATT&CK technique id (T1234 or T1234.567)".into(),
            );
        }
    }
    if !(0.0..=1.0).contains(&req.confidence) {
        add(
            "confidence".into(),
            format!("must be within [0, 1], got {}", req.confidence),
        );
    }
    if req.description.len() > MAX_DESCRIPTION_BYTES {
        add(
            "description".into(),
            format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
        );
    }
    if req.source_service.len() > MAX_SOURCE_SERVICE_BYTES {
        add(
            "source_service".into(),
            format!("must be at most {MAX_SOURCE_SERVICE_BYTES} bytes"),
        );
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(v))
    }
}

/// The events of one `ShareEvents` call, sorted.
struct SortedEvents {
    /// Valid, with at least one indicator a STIX pattern can be built for.
    shareable: Vec<EnrichedEvent>,
    /// Position in the request of each shareable event.
    positions: Vec<u32>,
    /// Valid events with nothing to share (redelivered ones are counted after storing).
    skipped: usize,
    /// Those events: nothing is shared of them, but the live matrix counts them.
    observed_only: Vec<EnrichedEvent>,
    /// Invalid events, by position.
    rejections: Vec<EventRejection>,
}

/// Validates every event on its own, as the export service does, so one bad event never costs
/// the others their delivery. Events with a shareable indicator, and campaign alerts, are shared.
fn sort_events(events: Vec<EnrichedEvent>) -> SortedEvents {
    let mut out = SortedEvents {
        shareable: Vec::with_capacity(events.len()),
        positions: Vec::with_capacity(events.len()),
        skipped: 0,
        observed_only: Vec::new(),
        rejections: Vec::new(),
    };
    for (i, event) in events.into_iter().enumerate() {
        match attackmesh::validate::enriched_event(&event) {
            Ok(())
                if event.campaign.is_some() || event.related_indicators.iter().any(|ind| pattern_for(ind).is_ok()) =>
            {
                out.shareable.push(event);
                out.positions.push(i as u32);
            }
            Ok(()) => {
                out.skipped += 1;
                out.observed_only.push(event);
            }
            Err(violations) => out.rejections.push(EventRejection {
                index: i as u32,
                event_id: event.event_id,
                violations,
            }),
        }
    }
    out
}

#[tonic::async_trait]
impl IntelService for IntelApi {
    async fn share_indicators(
        &self,
        request: Request<ShareIndicatorsRequest>,
    ) -> Result<Response<ShareIndicatorsResponse>, Status> {
        let caller = attackmesh_runtime::auth::caller(&request).cloned();
        let req = request.into_inner();
        validate(&req)?;
        let id = self.writable(caller.as_ref(), &req.collection_id)?;
        let kb = self.intel.kb();
        let (links, actors, status) = if req.technique_ids.is_empty() {
            let detection = share_detection(&req.description, &req.indicators, req.confidence, &req.source_service);
            let attribution = self.attributor.attribute(detection).await;
            let actors = attribution
                .metadata
                .as_ref()
                .map(|m| m.threat_actors.as_slice())
                .unwrap_or_default();
            let status = AttributionStatus::try_from(attribution.status).unwrap_or(AttributionStatus::Degraded);
            (
                technique_links(kb, &attribution.technique_ids),
                actor_links(kb, actors, self.intel.options().min_actor_score),
                status,
            )
        } else {
            let unknown: Vec<FieldViolation> = req
                .technique_ids
                .iter()
                .enumerate()
                .filter(|(_, t)| matches!(kb.resolve(t), Resolved::Unknown | Resolved::Deprecated(_)))
                .map(|(i, t)| FieldViolation {
                    field: format!("technique_ids[{i}]"),
                    description: format!("`{t}` is not an active technique of ATT&CK {}", kb.attack_version()),
                })
                .collect();
            if !unknown.is_empty() {
                return Err(Error::InvalidArgument(unknown).into());
            }
            (
                technique_links(kb, &req.technique_ids),
                Vec::new(),
                AttributionStatus::Ok,
            )
        };
        let objects = share_objects(
            &req.indicators,
            links.clone(),
            actors,
            req.confidence,
            &req.description,
            self.intel.options(),
        );
        let report = self.intel.store_produced(&id, objects).await?;
        tracing::info!(
            collection = %id,
            caller = caller.as_ref().map_or("-", |c| &*c.name),
            indicators = report.indicator_ids.len(),
            status = status.as_str_name(),
            "indicators shared"
        );
        Ok(Response::new(ShareIndicatorsResponse {
            object_ids: report.indicator_ids,
            technique_ids: links.into_iter().map(|l| l.id).collect(),
            attribution_status: status as i32,
        }))
    }

    async fn share_events(
        &self,
        request: Request<ShareEventsRequest>,
    ) -> Result<Response<ShareEventsResponse>, Status> {
        let caller = attackmesh_runtime::auth::caller(&request).cloned();
        // The export service's intel sink sends the batch's W3C context in the metadata, so
        // storing the indicators joins the detector's trace.
        let span = tracing::info_span!(
            "share_events",
            caller = caller.as_ref().map_or("-", |c| &*c.name),
            events = request.get_ref().events.len()
        );
        attackmesh_runtime::telemetry::set_parent_from_metadata(&span, request.metadata());
        let answer = self.share(caller, request.into_inner()).instrument(span).await?;
        Ok(Response::new(answer))
    }

    async fn list_collections(
        &self,
        request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        let caller = attackmesh_runtime::auth::caller(&request).cloned();
        let mut out = Vec::new();
        for c in &self.collections {
            let a = self.access(caller.as_ref(), c);
            if !a.read && !a.write {
                continue;
            }
            out.push(Collection {
                id: c.id.clone(),
                title: c.title.clone(),
                description: c.description.clone(),
                can_read: a.read,
                can_write: a.write,
                object_count: self.intel.store().count(&c.id).await?,
            });
        }
        Ok(Response::new(ListCollectionsResponse { collections: out }))
    }
}
