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

use std::{pin::Pin, sync::Arc, time::Duration};

use attackmesh::validate::InBatch;
use attackmesh::{
    error::ErrorAnswer,
    proto::{
        AckStatus, EnrichedEvent, EventRejection, ExportRequest, ExportResponse, FieldViolation, GetSinkStatusRequest,
        GetSinkStatusResponse,
        export_service_server::{ExportService, ExportServiceServer},
    },
};
use attackmesh_attack::Kb;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::{disk::DiskState, error::Error, metrics, queue::EncodedEvent, queue::lock, status::SinkHandle};

/// Largest request message the service decodes (a full batch of large events).
pub const MAX_MESSAGE_BYTES: usize = attackmesh::limits::MAX_MESSAGE_BYTES;

/// What the service needs: the sinks' queues, the retry hint and the knowledge base.
#[derive(Debug, Clone)]
pub struct ExportState {
    sinks: Arc<Vec<SinkHandle>>,
    retry_after: Duration,
    append: Arc<std::sync::Mutex<()>>,
    kb: Option<Arc<Kb>>,
    disk: DiskState,
}

impl ExportState {
    /// State over the running sinks, checking technique ids for their form only.
    pub fn new(sinks: Vec<SinkHandle>, retry_after: Duration) -> Self {
        Self {
            sinks: Arc::new(sinks),
            retry_after,
            append: Arc::default(),
            kb: None,
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

    /// The sinks.
    pub fn sinks(&self) -> &[SinkHandle] {
        &self.sinks
    }

    /// Appends `events` to every sink's queue, all or nothing as far as the size bound goes;
    /// returns when they are synced (per the fsync policy).
    pub async fn enqueue(
        &self,
        events: Vec<EnrichedEvent>,
        trace_context: std::collections::HashMap<String, String>,
    ) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now().timestamp_micros();
            let trace_context = Arc::new(trace_context);
            let encoded: Vec<EncodedEvent> = events
                .into_iter()
                .map(|e| EncodedEvent::new(Arc::new(e), trace_context.clone(), now))
                .collect();
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
    pub async fn export_batch(&self, batch: ExportRequest) -> Result<ExportResponse, Status> {
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
        let repeats = attackmesh::validate::repeats(&batch.events, |e| (e.event_id.as_str(), e.revision));
        let mut rejections = Vec::new();
        let mut valid = Vec::with_capacity(batch.events.len());
        let mut accepted = 0u32;
        for ((i, event), repeat) in batch.events.into_iter().enumerate().zip(repeats) {
            let mut violations = attackmesh::validate::enriched_event(&event).err().unwrap_or_default();
            if violations.is_empty()
                && let Some(kb) = &self.kb
                && let Err(unknown) = known_techniques(kb, &event)
            {
                violations = unknown;
            }
            let copy = matches!(repeat, InBatch::CopyOf(_));
            if let InBatch::Conflict(v) = repeat {
                violations.push(v);
            }
            if !violations.is_empty() {
                rejections.push(EventRejection {
                    index: i as u32,
                    event_id: event.event_id,
                    violations,
                });
                continue;
            }
            accepted += 1;
            // An identical copy is the same event: queued once.
            if !copy {
                valid.push(event);
            }
        }
        let mut response = ExportResponse {
            batch_id: batch.batch_id,
            rejections,
            ..Default::default()
        };
        // The queue records carry the context of the current (export batch) span, so the sink
        // request that delivers them is its child; without a tracer, the batch's own context.
        let mut trace_context = attackmesh_runtime::telemetry::inject_map();
        if trace_context.is_empty() {
            trace_context = batch.trace_context;
        }
        match self.enqueue(valid, trace_context).await {
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
    let ids = event
        .technique_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("technique_ids[{i}]"), id))
        .chain(
            techniques
                .enumerate()
                .map(|(i, t)| (format!("metadata.techniques[{i}].id"), &t.id)),
        );
    let unknown: Vec<FieldViolation> = ids
        .filter(|(_, id)| kb.technique(id).is_none())
        .map(|(field, id)| FieldViolation {
            field,
            description: format!("`{id}` is not a technique of ATT&CK {}", kb.attack_version()),
        })
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(unknown) }
}

/// The tonic service for `state`, accepting and sending gzip.
pub fn grpc_service(state: ExportState) -> ExportServiceServer<ExportApi> {
    ExportServiceServer::new(ExportApi { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Implementation of `attackmesh.v1.ExportService`.
#[derive(Debug)]
pub struct ExportApi {
    state: ExportState,
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExportService for ExportApi {
    type ExportStream = ExportStream;

    async fn export(&self, request: Request<Streaming<ExportRequest>>) -> Result<Response<ExportStream>, Status> {
        let state = self.state.clone();
        let responses = request.into_inner().then(move |batch| {
            let state = state.clone();
            async move {
                let batch = batch?;
                let span = tracing::info_span!("export_batch", batch_id = batch.batch_id, events = batch.events.len());
                attackmesh_runtime::telemetry::set_parent_from_map(&span, &batch.trace_context);
                state.export_batch(batch).instrument(span).await
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_sink_status(
        &self,
        _request: Request<GetSinkStatusRequest>,
    ) -> Result<Response<GetSinkStatusResponse>, Status> {
        let sinks = self.state.sinks.iter().map(SinkHandle::status).collect();
        Ok(Response::new(GetSinkStatusResponse { sinks }))
    }
}
