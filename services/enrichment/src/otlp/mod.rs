//! OpenTelemetry logs in: `opentelemetry.proto.collector.logs.v1.LogsService/Export` on the gRPC
//! port ([`logs_service`]) and OTLP/HTTP `POST /v1/logs` ([`http`]), each log record mapped to a
//! detection by [`attackmesh::formats::otlp`].
//!
//! An export request is one detector batch in every way that matters: the same tokens and roles
//! (the RBAC rows of `LogsService` and `HttpEndpoint::OtlpLogs` admit detectors and admins), the
//! same admission (in-flight events and bytes, per-caller rate), the same validation, and an
//! answer only once export holds every accepted event durably. Records that do not map or fail
//! validation are counted in `partial_success.rejected_log_records`, whose `error_message` names
//! the first of them by its path in the request; the others are delivered. When nothing can be
//! made durable now (export down, limits, shutdown) the whole request is refused with gRPC
//! UNAVAILABLE or RESOURCE_EXHAUSTED (with `RetryInfo`), HTTP 503 or 429 (with `Retry-After`),
//! all of which OTLP exporters retry; deterministic event ids make the resend harmless.
//!
//! Records of one trace travel as one batch whose trace context is theirs, so each continues the
//! trace it was logged in; records without valid ids take the request's own context. A request
//! whose records come from more than [`MAX_TRACE_BATCHES`] traces (an SDK batch of records
//! logged in many requests) travels as one batch under the request's own context instead: a
//! durable export per trace would cost more than the traces are worth, and each event keeps its
//! record's ids as `trace.id` / `span.id` attributes.

pub mod http;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use attackmesh::{
    formats::otlp::{
        OtlpEvent, OtlpRecord, otlp_from_request,
        proto::collector::{
            ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        record_count,
    },
    proto::{AckStatus, DetectionEvent},
};
use attackmesh_runtime::receive::{Receipts, Receive, ReceiveLimits, Reservation};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::{
    error::Error,
    export::proto_duration,
    metrics::METRICS,
    service::{IngestState, caller_name, opentelemetry_inject},
};

/// Most batches one export request is split into to keep each record's trace (see the module doc).
pub const MAX_TRACE_BATCHES: usize = 4;

/// Implementation of OpenTelemetry's `LogsService`.
pub struct LogsApi {
    state: Arc<IngestState>,
}

/// The tonic `LogsService` for `state`, under the same message limits as `IngestService`:
/// gzip accepted and sent, messages counted against the in-flight byte budget from their first
/// byte and bounded by `max_message_bytes`.
pub fn logs_service(state: Arc<IngestState>) -> Receive<LogsServiceServer<LogsApi>> {
    let limits = ReceiveLimits {
        message_timeout: state.limits.message_timeout,
        budget: Some(state.pipeline.admission.budget().clone()),
        retry_after: state.limits.retry_after,
    };
    let max = state.limits.max_message_bytes;
    let service = LogsServiceServer::new(LogsApi { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    Receive::new(service, limits)
}

#[tonic::async_trait]
impl LogsService for LogsApi {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let caller = caller_name(&request);
        let received = Receipts::of(&request).and_then(|r| r.take());
        let mut trace = HashMap::new();
        opentelemetry_inject(&request, &mut trace);
        let message = request.into_inner();
        let count = record_count(&message);
        let max = self.state.limits.max_batch_events;
        if count > max {
            let why = format!("at most {max} log records per request, got {count}");
            return Err(Error::invalid("resource_logs", why).into());
        }
        let bytes = prost::Message::encoded_len(&message);
        let records = otlp_from_request(message);
        let response = export(&self.state, &caller, records, trace, bytes, received).await?;
        Ok(Response::new(response))
    }
}

/// The events of one trace (or of none) and where each record sits in the request.
#[derive(Default)]
struct Group {
    positions: Vec<usize>,
    events: Vec<DetectionEvent>,
}

/// Delivers the mapped records of one export request (see the module doc); `trace` is the
/// request's own W3C context, `bytes` its size and `received` what its message held of the byte
/// budget.
pub(crate) async fn export(
    state: &IngestState,
    caller: &str,
    records: Vec<OtlpRecord>,
    trace: HashMap<String, String>,
    bytes: usize,
    received: Option<Reservation>,
) -> Result<ExportLogsServiceResponse, Error> {
    if state.draining.is_cancelled() {
        return Err(Error::Unavailable(
            "enrichment is shutting down; resend to another replica".into(),
        ));
    }
    let total = records.len();
    let mut paths = Vec::with_capacity(total);
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut groups: BTreeMap<Option<String>, Group> = BTreeMap::new();
    for (position, record) in records.into_iter().enumerate() {
        match record.result {
            Ok(OtlpEvent { event, traceparent }) => {
                let group = groups.entry(traceparent).or_default();
                group.positions.push(position);
                group.events.push(event);
            }
            Err(error) => problems.push((position, format!("{}: {error}", record.path))),
        }
        paths.push(record.path);
    }
    if groups.len() > MAX_TRACE_BATCHES {
        let mut one = Group::default();
        for group in std::mem::take(&mut groups).into_values() {
            one.positions.extend(group.positions);
            one.events.extend(group.events);
        }
        groups.insert(None, one);
    }
    METRICS.received.inc_by(problems.len() as u64);
    METRICS.rejected.inc_by(problems.len() as u64);
    let events: usize = groups.values().map(|g| g.events.len()).sum();
    if events > 0 {
        let _permit = state
            .pipeline
            .admit(caller, events, bytes, received)
            .map_err(|refused| Error::Retry {
                after: refused.after,
                message: refused.message,
            })?;
        let span = tracing::info_span!("otlp_export", caller, records = total, traces = groups.len());
        let batches = groups.into_iter().map(|(traceparent, group)| {
            let context = match traceparent {
                Some(traceparent) => HashMap::from([("traceparent".to_owned(), traceparent)]),
                None => trace.clone(),
            };
            async move {
                let events = group.events.into_iter().map(Into::into).collect();
                let answer = state.pipeline.ingest_admitted(caller, 0, events, context).await;
                (group.positions, answer)
            }
        });
        let answers = futures::future::join_all(batches).instrument(span).await;
        for (positions, answer) in answers {
            if answer.status != AckStatus::Durable as i32 {
                let after = answer.retry_after.map(proto_duration).unwrap_or(Duration::from_secs(1));
                return Err(Error::Retry {
                    after,
                    message: answer.message,
                });
            }
            for rejection in answer.rejections {
                let Some(&position) = positions.get(rejection.index as usize) else {
                    continue;
                };
                let why = attackmesh::validate::summary(&rejection.violations);
                problems.push((position, format!("{}: {why}", paths[position])));
            }
        }
    }
    problems.sort_by_key(|(position, _)| *position);
    let partial_success = problems.first().map(|(_, first)| ExportLogsPartialSuccess {
        rejected_log_records: problems.len() as i64,
        error_message: format!("{} of {total} log records rejected; first: {first}", problems.len()),
    });
    Ok(ExportLogsServiceResponse { partial_success })
}
