//! The path every detection takes, whichever door it came in by (gRPC `Ingest`, `Enrich`, Falco
//! over HTTP, or OTLP logs): validate → attribute (or degrade) → export durably → (queue degraded events
//! for re-attribution) → answer.
//!
//! A batch is answered DURABLE only after export acknowledged it and, for degraded events, after
//! the re-attribution log holds them on disk. Any other outcome is RETRY: the detector resends,
//! and `event_id` makes that safe. Invalid events are rejected one by one and never reach
//! attribution; the others go on. This module holds no socket and no stream state.

use std::{collections::HashMap, sync::Arc, time::Instant};

use attackmesh::{
    proto::{
        AckStatus, AttributeRequest, AttributionStatus, DetectionEvent, EnrichedEvent, EventRejection, IngestResponse,
    },
    validate::InBatch,
};
use attackmesh_runtime::{receive::Reservation, telemetry};
use tracing::Instrument as _;

use crate::{
    admission::{Admission, Permit, Refused},
    attribute::Attributor,
    config::{EnrichmentConfig, WhenFull},
    detection::Detection,
    encode::EventEncoder,
    error::Error,
    export::{Exported, Exporter, to_proto_duration},
    metrics::{self, METRICS},
    reattribute::ReattributeLog,
    upstream::link::LinkError,
};

/// Revision of a first enrichment.
const FIRST_REVISION: u32 = 1;

/// What a delivered batch came to.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// Events export refused, by index in the batch given to [`Pipeline::deliver`].
    pub(crate) rejections: Vec<EventRejection>,
    /// The events as exported, when asked for.
    pub(crate) enriched: Vec<EnrichedEvent>,
}

/// Everything a batch needs on its way through.
pub(crate) struct Pipeline {
    pub(crate) attributor: Arc<Attributor>,
    pub(crate) exporter: Arc<Exporter>,
    pub(crate) log: Option<ReattributeLog>,
    pub(crate) admission: Admission,
    pub(crate) when_full: WhenFull,
    pub(crate) reattribute: bool,
}

impl Pipeline {
    /// Assembles the pipeline from its parts.
    pub(crate) fn new(
        config: &EnrichmentConfig,
        attributor: Arc<Attributor>,
        exporter: Arc<Exporter>,
        log: Option<ReattributeLog>,
    ) -> Self {
        Self {
            attributor,
            exporter,
            log,
            admission: Admission::new(&config.ingest, &config.rate_limits),
            when_full: config.reattribute.when_full,
            reattribute: config.reattribute.enabled,
        }
    }

    /// Takes room for a batch, or says why not (see [`Admission::admit`]).
    pub(crate) fn admit(
        &self,
        caller: &str,
        events: usize,
        bytes: usize,
        received: Option<Reservation>,
    ) -> Result<Permit, Refused> {
        let result = self.admission.admit(caller, events, bytes, received);
        if let Err(refused) = &result {
            metrics::retried(refused.reason);
        }
        result
    }

    /// Validates, enriches and exports one detector batch, and builds its acknowledgement.
    /// `_permit` is held until the answer is ready.
    pub(crate) async fn ingest(
        &self,
        caller: &str,
        batch_id: u64,
        events: Vec<Detection>,
        trace_context: HashMap<String, String>,
        _permit: Permit,
    ) -> IngestResponse {
        self.ingest_admitted(caller, batch_id, events, trace_context).await
    }

    /// [`Pipeline::ingest`] for a batch whose caller holds its permit (a request of several
    /// batches, one per trace).
    pub(crate) async fn ingest_admitted(
        &self,
        caller: &str,
        batch_id: u64,
        events: Vec<Detection>,
        trace_context: HashMap<String, String>,
    ) -> IngestResponse {
        let started = Instant::now();
        METRICS.received.inc_by(events.len() as u64);
        METRICS.in_flight.inc();
        let span = tracing::info_span!("ingest_batch", caller, batch_id, events = events.len());
        telemetry::set_parent_from_map(&span, &trace_context);
        let response = self
            .ingest_inner(caller, batch_id, events, trace_context)
            .instrument(span)
            .await;
        METRICS.in_flight.dec();
        METRICS.ack_latency.observe(started.elapsed().as_secs_f64());
        response
    }

    async fn ingest_inner(
        &self,
        caller: &str,
        batch_id: u64,
        events: Vec<Detection>,
        trace_context: HashMap<String, String>,
    ) -> IngestResponse {
        let Sorted {
            valid,
            positions,
            mut rejections,
            copies,
        } = validate(caller, events);
        METRICS.rejected.inc_by(rejections.len() as u64);
        let mut response = IngestResponse {
            batch_id,
            status: AckStatus::Durable as i32,
            ..Default::default()
        };
        if !valid.is_empty() {
            let count = valid.len() + copies.len();
            match self.deliver(valid, trace_context, false).await {
                Ok(delivered) => {
                    // A copy shares its original's fate.
                    let mut refused = Vec::with_capacity(delivered.rejections.len());
                    for r in delivered.rejections {
                        let of = r.index as usize;
                        for &(index, _) in copies.iter().filter(|(_, original)| *original == of) {
                            refused.push(EventRejection { index, ..r.clone() });
                        }
                        let index = positions.get(of).copied().unwrap_or(r.index);
                        refused.push(EventRejection { index, ..r });
                    }
                    METRICS.rejected.inc_by(refused.len() as u64);
                    response.accepted = (count - refused.len()) as u32;
                    rejections.extend(refused);
                    rejections.sort_by_key(|r| r.index);
                }
                Err(error) => return retry_response(batch_id, error),
            }
        }
        METRICS.accepted.inc_by(u64::from(response.accepted));
        response.rejected = rejections.len() as u32;
        response.rejections = rejections;
        response
    }

    /// Attributes and exports valid events; `Ok` once export holds them durably (and the
    /// re-attribution log holds the degraded ones), [`Error::Retry`] otherwise.
    pub(crate) async fn deliver(
        &self,
        events: Vec<Detection>,
        trace_context: HashMap<String, String>,
        keep: bool,
    ) -> Result<Delivered, Error> {
        // One detector batch is one trace: the batch's span (child of the detector's context)
        // travels to attribution and export; without a tracer, the detector's context does.
        let mut trace = telemetry::inject_map();
        if trace.is_empty() {
            trace = trace_context;
        }
        // Compact when export fills in this release (asked before attributing: the form is
        // chosen once per batch).
        let compact_for = self.exporter.compact_release();
        let attributed = self.attributor.attribute(events, &trace, compact_for.is_some()).await;
        let degraded_bytes: usize = attributed
            .iter()
            .filter(|(_, a)| a.status == AttributionStatus::Degraded as i32)
            .map(|(d, _)| d.encoded_len())
            .sum();
        let queue = match (&self.log, degraded_bytes) {
            (_, 0) => None,
            (Some(log), bytes) if log.has_room(bytes as u64 + 64) => Some(log),
            (Some(_), _) if self.when_full == WhenFull::Retry => {
                metrics::retried("reattribute_full");
                return Err(Error::Retry {
                    after: std::time::Duration::from_secs(5),
                    message: "attribution is unavailable and the re-attribution backlog is full".into(),
                });
            }
            _ => None,
        };
        let mut degraded = Vec::new();
        // Each event is encoded as soon as it is made and let go: export needs only its bytes.
        let mut encoder = EventEncoder::with_capacity(attributed.len());
        let mut kept = Vec::new();
        for (i, (mut detection, attribution)) in attributed.into_iter().enumerate() {
            if attribution.status == AttributionStatus::Degraded as i32 {
                degraded.push((i as u32, queue.is_some().then(|| detection.whole().clone())));
            }
            if keep {
                let event = attackmesh::enriched_event(detection.into_event(), attribution, FIRST_REVISION);
                encoder.push(&event);
                kept.push(event);
            } else {
                encoder.push_enriched(detection, attribution, FIRST_REVISION);
            }
        }
        let (_, result) = self.exporter.export(encoder.finish(), &trace, compact_for).await;
        let rejections = match result {
            Ok(Exported::Durable(rejections)) => rejections,
            Ok(Exported::Retry { after, message }) => {
                metrics::retried("export");
                return Err(Error::Retry { after, message });
            }
            Err(LinkError::Unavailable(message)) => {
                metrics::retried("export");
                return Err(Error::Retry {
                    after: std::time::Duration::from_secs(1),
                    message,
                });
            }
            Err(LinkError::Stopped) => return Err(Error::Unavailable("enrichment is shutting down".into())),
        };
        let refused = |i: u32| rejections.iter().any(|r| r.index == i);
        let degraded: Vec<(u32, Option<DetectionEvent>)> = degraded.into_iter().filter(|(i, _)| !refused(*i)).collect();
        if !degraded.is_empty() {
            METRICS.degraded.inc_by(degraded.len() as u64);
            match queue {
                Some(log) => {
                    let events = degraded.into_iter().filter_map(|(_, d)| d).collect();
                    log.append(AttributeRequest {
                        batch_id: 0,
                        events,
                        trace_context: trace,
                        ..Default::default()
                    })
                    .await?;
                }
                None => {
                    if self.reattribute {
                        tracing::warn!(
                            events = degraded.len(),
                            "re-attribution backlog full; events stay DEGRADED"
                        );
                    }
                    METRICS.reattribute_skipped.inc_by(degraded.len() as u64);
                }
            }
        }
        Ok(Delivered {
            rejections,
            enriched: kept,
        })
    }
}

/// A detector batch sorted out by [`validate`].
#[derive(Debug, Default)]
pub(crate) struct Sorted {
    /// Valid events (with ids filled in), each once.
    pub(crate) valid: Vec<Detection>,
    /// `positions[i]`: the index in the batch of `valid[i]`.
    pub(crate) positions: Vec<u32>,
    /// Invalid events, and every event whose id the batch gives to a different event too.
    pub(crate) rejections: Vec<EventRejection>,
    /// Identical copies of a valid event: (index in the batch, index in `valid` of the original).
    pub(crate) copies: Vec<(u32, usize)>,
}

/// Stamps a detection with the caller that submitted it (replacing whatever the detector put
/// there) and fills in what it may leave out.
pub(crate) fn prepare(caller: &str, event: &mut DetectionEvent) {
    caller.clone_into(&mut event.submitted_by);
    attackmesh::validate::prepare_detection(event);
}

/// Sorts a batch from `caller` into valid events (stamped, ids filled in), identical copies of
/// them (taken once) and rejections.
pub(crate) fn validate(caller: &str, mut events: Vec<Detection>) -> Sorted {
    events.iter_mut().for_each(|event| event.prepare(caller));
    let repeats = attackmesh::validate::repeats(&events, |e| (e.event_id(), 0));
    let mut sorted = Sorted {
        valid: Vec::with_capacity(events.len()),
        positions: Vec::with_capacity(events.len()),
        ..Default::default()
    };
    for ((index, event), repeat) in events.into_iter().enumerate().zip(repeats) {
        let mut violations = event.validate().err().unwrap_or_default();
        match repeat {
            InBatch::Conflict(v) => violations.push(v),
            InBatch::CopyOf(original) if violations.is_empty() => {
                // The original is valid too (it is identical), so it is in `valid`.
                if let Ok(at) = sorted.positions.binary_search(&(original as u32)) {
                    sorted.copies.push((index as u32, at));
                }
                continue;
            }
            InBatch::First | InBatch::CopyOf(_) => {}
        }
        if violations.is_empty() {
            sorted.valid.push(event);
            sorted.positions.push(index as u32);
        } else {
            sorted.rejections.push(EventRejection {
                index: index as u32,
                event_id: event.into_event().event_id,
                violations,
            });
        }
    }
    sorted
}

/// A RETRY acknowledgement for `error`, told as the error policy tells it.
pub(crate) fn retry_response(batch_id: u64, error: Error) -> IngestResponse {
    let answer = attackmesh::error::ErrorAnswer::from_error(&error);
    let after = answer.retry_after.unwrap_or(crate::error::UNAVAILABLE_RETRY_AFTER);
    IngestResponse {
        batch_id,
        status: AckStatus::Retry as i32,
        retry_after: Some(to_proto_duration(after)),
        message: answer.message,
        ..Default::default()
    }
}

/// A RETRY acknowledgement for a refused admission.
pub(crate) fn refused_response(batch_id: u64, refused: Refused) -> IngestResponse {
    retry_response(
        batch_id,
        Error::Retry {
            after: refused.after,
            message: refused.message,
        },
    )
}
