//! The gRPC `ExportService`: validates every event of a batch, appends the valid ones to every
//! sink's queue (synced per the fsync policy) and only then answers the batch, in order.
//!
//! Invalid events are listed in `rejections` and never queued; the valid ones of the same batch
//! are. An event carried twice is queued once; one `(event_id, revision)` given to different
//! events is refused for each of them. Besides the contract's checks, technique ids
//! (`technique_ids` and the ids in `metadata.techniques`) must be ones ATT&CK defines, as they are
//! for events that come in through ingest: an admin's `Export` cannot put `T9999` in front of a
//! SIEM. A batch that does not fit in every queue is answered `ACK_STATUS_RETRY` with
//! `retry_after`, and nothing of it is queued anywhere. A batch that meets a full disk (ENOSPC)
//! is answered the same way: a queue cuts off what it could not write, though a queue that did
//! take the batch keeps it (the resent copy is the same `(event_id, revision)`). Authentication
//! and roles are enforced by the runtime's tower layer, not here.
//!
//! A batch may be compact (`compact_for_attack_version`): its events' techniques and threat
//! actors without a name are filled in from this service's knowledge base, once on receipt
//! unless every sink writes them itself by reference (the queues keep the compact bytes). Every
//! answer asks for compact batches, naming that knowledge base's release (`attack_version`),
//! only when every sink writes them by reference: filling events in costs more than decoding
//! their details, so a sender is better off sending them in full otherwise. A compact batch of
//! the release is taken either way. One compact for another release, or sent while the service
//! has no knowledge base, is answered RETRY as a whole, so the sender sends it again in full. In
//! a compact batch, each technique and actor without a name must be, exactly, an active
//! technique or group of the release, or the event is refused.
//!
//! Each event is decoded once, from the bytes it arrived as ([`EncodedExport`]); those bytes are
//! what the queues hold. An event that does not decode ends the call with `INVALID_ARGUMENT`
//! before anything of its batch is queued, as a batch that does not decode does.

mod grpc;

use std::{collections::HashMap, sync::Arc, time::Duration};

use attackmesh::validate::InBatch;
use attackmesh::{
    codec::EncodedExport,
    error::ErrorAnswer,
    held::{EventView, Held},
    proto::{AckStatus, EnrichedEvent, EventRejection, ExportResponse, FieldViolation},
};
use attackmesh_attack::Kb;
use bytes::Bytes;
use tonic::Status;

pub use grpc::ExportServer;

use crate::{
    disk::DiskState,
    error::Error,
    metrics,
    queue::{EncodedEvent, ReceivedEvent, lock},
    status::SinkHandle,
};

/// Largest request message the service decodes (a full batch of large events).
pub const MAX_MESSAGE_BYTES: usize = attackmesh::limits::MAX_MESSAGE_BYTES;

/// Export batches decoded and on their way into the queues at once, over all streams: one
/// appends (appends take turns) while the next is decoded and checked. Batches beyond wait as
/// the bytes they arrived as: decoded, a real detector event takes about 3.5 times its
/// encoding, and batches of several streams decoded while a sync was slow held tens of MiB.
const MAX_BATCHES_AT_ONCE: usize = 2;

/// What the service needs: the sinks' queues, the retry hint and the knowledge base.
#[derive(Debug, Clone)]
pub struct ExportState {
    sinks: Arc<Vec<SinkHandle>>,
    retry_after: Duration,
    append: Arc<std::sync::Mutex<()>>,
    admit: Arc<tokio::sync::Semaphore>,
    kb: Option<Arc<Kb>>,
    /// Whether compact events are filled in on receipt (some sink does not write them itself).
    fill_in: bool,
    disk: DiskState,
}

impl ExportState {
    /// State over the running sinks, checking technique ids for their form only.
    pub fn new(sinks: Vec<SinkHandle>, retry_after: Duration) -> Self {
        Self {
            sinks: Arc::new(sinks),
            retry_after,
            append: Arc::default(),
            admit: Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_AT_ONCE)),
            kb: None,
            fill_in: true,
            disk: DiskState::default(),
        }
    }

    /// Whether the queues' disk is full, as appends found it (for health and its probe).
    pub fn disk(&self) -> &DiskState {
        &self.disk
    }

    /// Checks technique ids against `kb` too: an id it does not hold (in any state) is rejected.
    pub fn with_kb(mut self, kb: Arc<Kb>) -> Self {
        self.kb = Some(kb);
        self
    }

    /// Keeps compact events compact in memory, and asks for them, when `all_write_compact`
    /// (every sink writes them itself, by reference to the knowledge base); otherwise, the
    /// default, asks for full events and fills each compact one in once on receipt, so that no
    /// sink's driver copies it to fill it in.
    pub fn with_sinks_writing_compact(mut self, all_write_compact: bool) -> Self {
        self.fill_in = !all_write_compact;
        self
    }

    /// The sinks.
    pub fn sinks(&self) -> &[SinkHandle] {
        &self.sinks
    }

    /// Appends `events` to every sink's queue, all or nothing as far as the size bound goes;
    /// returns when they are synced (per the fsync policy).
    pub async fn enqueue(
        &self,
        events: Vec<EnrichedEvent>,
        trace_context: HashMap<String, String>,
    ) -> Result<(), Error> {
        self.append(events.len(), trace_context, |trace, now| {
            events
                .into_iter()
                .map(|e| EncodedEvent::new(e, trace.clone(), now))
                .collect()
        })
        .await
    }

    /// [`Self::enqueue`] for events as they were received: their bytes are queued as they came,
    /// marked compact for `compact_for` when the batch was.
    async fn enqueue_received(
        &self,
        events: Vec<ReceivedEvent>,
        trace_context: HashMap<String, String>,
        compact_for: Option<Arc<str>>,
    ) -> Result<(), Error> {
        let fill_in = self.kb.clone().filter(|_| self.fill_in);
        self.append(events.len(), trace_context, move |trace, now| {
            events
                .into_iter()
                .map(|e| {
                    let encoded = EncodedEvent::received(e, trace.clone(), now);
                    match (&compact_for, &fill_in) {
                        (Some(release), Some(kb)) => encoded.compact_for(release.clone()).filled_in(kb),
                        (Some(release), None) => encoded.compact_for(release.clone()),
                        (None, _) => encoded,
                    }
                })
                .collect()
        })
        .await
    }

    /// Appends the `count` events `encode` gives to every sink's queue (encoding off the async
    /// runtime, like the appends).
    async fn append<F>(&self, count: usize, trace_context: HashMap<String, String>, encode: F) -> Result<(), Error>
    where
        F: FnOnce(&Arc<HashMap<String, String>>, i64) -> Vec<EncodedEvent> + Send + 'static,
    {
        if count == 0 {
            return Ok(());
        }
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now().timestamp_micros();
            let encoded = encode(&Arc::new(trace_context), now);
            let bytes: u64 = encoded.iter().map(|e| e.framed_len() as u64).sum();
            // One batch at a time, so the size check and the appends see the same queues.
            let _guard = lock(&state.append);
            for s in state.sinks.iter() {
                if !s.queue.fits(bytes) {
                    let q = s.queue.stats();
                    return Err(Error::QueueFull {
                        sink: s.name.to_owned(),
                        bytes: q.bytes,
                        max_bytes: s.queue.max_bytes(),
                        retry_after: state.retry_after,
                    });
                }
            }
            let append = |s: &SinkHandle| {
                s.queue
                    .append(&encoded, now)
                    .map(|_| ())
                    .map_err(|e| e.disk_full_of(s.name, state.retry_after))
            };
            let result = if state.sinks.len() == 1 {
                append(&state.sinks[0])
            } else {
                // Each queue syncs its own files: do them side by side.
                std::thread::scope(|scope| {
                    let handles: Vec<_> = state.sinks.iter().map(|s| scope.spawn(|| append(s))).collect();
                    handles.into_iter().try_for_each(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::DeadLetter("append thread panicked".into())))
                    })
                })
            };
            match &result {
                Ok(()) => state.disk.mark_ok(),
                Err(Error::DiskFull { .. }) => state.disk.mark_full(bytes),
                Err(_) => {}
            }
            result
        })
        .await
        .map_err(|e| Error::DeadLetter(format!("append task failed: {e}")))?
    }

    /// Answers one Export batch.
    pub async fn export_batch(&self, batch: impl Into<EncodedExport>) -> Result<ExportResponse, Status> {
        let batch = batch.into();
        if batch.events.len() > attackmesh::limits::MAX_BATCH_EVENTS {
            let v = attackmesh::proto::FieldViolation {
                field: "events".into(),
                description: format!(
                    "at most {} events per batch, got {}",
                    attackmesh::limits::MAX_BATCH_EVENTS,
                    batch.events.len()
                ),
            };
            return Err(attackmesh::validate::to_status("", &[v]));
        }
        let release = self.kb.as_ref().map(|kb| kb.attack_version()).unwrap_or_default();
        // Asked for only while no event needs filling in.
        let attack_version = if self.fill_in { "" } else { release }.to_owned();
        let compact_for: Option<Arc<str>> = match batch.compact_for_attack_version.as_str() {
            "" => None,
            compact if compact == release => Some(compact.into()),
            compact => {
                metrics::METRICS.refused_batches.inc();
                let message = if release.is_empty() {
                    format!(
                        "batch is compact for ATT&CK `{}`, and this export takes full events only; send it in full",
                        attackmesh::text::clip(compact, 16)
                    )
                } else {
                    format!(
                        "batch is compact for ATT&CK `{}`, and this export fills in ATT&CK {release}; send it in full",
                        attackmesh::text::clip(compact, 16)
                    )
                };
                return Ok(ExportResponse {
                    batch_id: batch.batch_id,
                    status: AckStatus::Retry as i32,
                    message,
                    attack_version,
                    ..Default::default()
                });
            }
        };
        // Held until the batch is queued (or refused); the semaphore is never closed.
        let _turn = self
            .admit
            .acquire()
            .await
            .map_err(|_| Status::unavailable("export is shutting down"))?;
        let received = decode_events(batch.events)?;
        let repeats = {
            let events: Vec<&Held<EnrichedEvent>> = received.iter().map(ReceivedEvent::event).collect();
            attackmesh::validate::repeats(&events, |e| (e.event().event_id.as_str(), e.event().revision))
        };
        let mut rejections = Vec::new();
        let mut valid = Vec::with_capacity(received.len());
        let mut accepted = 0u32;
        for ((i, received), repeat) in received.into_iter().enumerate().zip(repeats) {
            let held = received.event();
            let event = held.event();
            let mut violations = attackmesh::validate::enriched_event(held).err().unwrap_or_default();
            if violations.is_empty()
                && let Some(kb) = &self.kb
            {
                if let Err(unknown) = known_techniques(kb, event) {
                    violations = unknown;
                } else if compact_for.is_some() {
                    violations = fillable(kb, event);
                }
            }
            let copy = matches!(repeat, InBatch::CopyOf(_));
            if let InBatch::Conflict(v) = repeat {
                violations.push(v);
            }
            if !violations.is_empty() {
                rejections.push(EventRejection {
                    index: i as u32,
                    event_id: event.event_id.clone(),
                    violations,
                });
                continue;
            }
            accepted += 1;
            // An identical copy is the same event: queued once.
            if !copy {
                valid.push(received);
            }
        }
        let mut response = ExportResponse {
            batch_id: batch.batch_id,
            rejections,
            attack_version,
            ..Default::default()
        };
        // The queue records carry the context of the current (export batch) span, so the sink
        // request that delivers them is its child; without a tracer, the batch's own context.
        let mut trace_context = attackmesh_runtime::telemetry::inject_map();
        if trace_context.is_empty() {
            trace_context = batch.trace_context;
        }
        match self.enqueue_received(valid, trace_context, compact_for).await {
            Ok(()) => {
                response.status = AckStatus::Durable as i32;
                response.accepted = accepted;
            }
            Err(err) => {
                metrics::METRICS.refused_batches.inc();
                // Told as the error policy tells it: a full queue by name, anything else generically
                // (and logged); the wait is the configured one unless the error says otherwise.
                let answer = ErrorAnswer::from_error(&err);
                let after = answer.retry_after.unwrap_or(self.retry_after);
                response.status = AckStatus::Retry as i32;
                response.message = answer.message;
                response.retry_after = Some(pbjson_types::Duration {
                    seconds: after.as_secs() as i64,
                    nanos: after.subsec_nanos() as i32,
                });
            }
        }
        Ok(response)
    }
}

/// Rejects technique ids `kb` does not hold in any state (revoked and deprecated ones pass:
/// events attributed with an older release keep them).
fn known_techniques(kb: &Kb, event: &EnrichedEvent) -> Result<(), Vec<FieldViolation>> {
    let techniques = event.metadata.iter().flat_map(|m| m.techniques.iter());
    // Field names are built only for the ids refused: every accepted event passes here.
    let ids = event
        .technique_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (false, i, id))
        .chain(techniques.enumerate().map(|(i, t)| (true, i, &t.id)));
    let unknown: Vec<FieldViolation> = ids
        .filter(|(_, _, id)| kb.technique(id).is_none())
        .map(|(in_metadata, i, id)| FieldViolation {
            field: if in_metadata {
                format!("metadata.techniques[{i}].id")
            } else {
                format!("technique_ids[{i}]")
            },
            description: format!("`{id}` is not a technique of ATT&CK {}", kb.attack_version()),
        })
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(unknown) }
}

/// In a compact batch: every technique and threat actor of `event` left without a name must be,
/// exactly as ATT&CK writes its id, an active technique or group of `kb`, which fills it in.
fn fillable(kb: &Kb, event: &EnrichedEvent) -> Vec<FieldViolation> {
    let Some(metadata) = &event.metadata else {
        return Vec::new();
    };
    let techniques = metadata
        .techniques
        .iter()
        .enumerate()
        .filter(|(_, t)| t.name.is_empty() && !kb.exact_technique(&t.id).is_some_and(|t| t.is_active()));
    let actors = metadata
        .threat_actors
        .iter()
        .enumerate()
        .filter(|(_, a)| a.name.is_empty() && !kb.exact_group(&a.group_id).is_some_and(|g| g.is_active()));
    techniques
        .map(|(i, t)| FieldViolation {
            field: format!("metadata.techniques[{i}].id"),
            description: format!(
                "`{}` is not an active technique of ATT&CK {}, so a compact batch cannot leave its details out",
                attackmesh::text::clip(&t.id, 16),
                kb.attack_version()
            ),
        })
        .chain(actors.map(|(i, a)| FieldViolation {
            field: format!("metadata.threat_actors[{i}].group_id"),
            description: format!(
                "`{}` is not an active group of ATT&CK {}, so a compact batch cannot leave its details out",
                attackmesh::text::clip(&a.group_id, 16),
                kb.attack_version()
            ),
        }))
        .collect()
}

/// Decodes every event of a batch, keeping its bytes; the first that does not decode is the
/// caller's mistake, told as a message that does not decode is.
fn decode_events(events: Vec<Bytes>) -> Result<Vec<ReceivedEvent>, Status> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            ReceivedEvent::decode(bytes).map_err(|e| Status::invalid_argument(format!("events[{i}]: {e}")))
        })
        .collect()
}

/// The tonic service for `state`, accepting and sending gzip.
pub fn grpc_service(state: ExportState) -> ExportServer {
    ExportServer::new(state)
}
