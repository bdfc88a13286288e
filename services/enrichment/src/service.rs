//! The gRPC `IngestService`: detector streams (`Ingest`) and manual enrichment (`Enrich`).
//!
//! Each `Ingest` stream is served by one task that reads batches, admits or refuses each one
//! at once, runs admitted batches concurrently, and answers strictly in request order. A stream
//! holds at most `max_in_flight_batches_per_stream` batches in processing; batches beyond that,
//! or beyond the global limits or the caller's rate, are answered RETRY right away. When the
//! answers are not read the task stops reading requests, so a slow reader cannot make it buffer.
//! A stream with nothing sent and nothing unanswered for `idle_timeout` is ended, and no caller
//! holds more streams than its quota. Request messages count against the in-flight byte budget
//! from their first byte ([`attackmesh_runtime::receive`]); each batch takes over what its message
//! held. Authentication and roles are checked by the runtime's tower layer before any of this
//! runs.
//!
//! The service is routed by hand rather than generated so that `Ingest` reads its batches as
//! [`IngestBatch`]es: each event keeps the bytes it arrived as, which go on to attribution, and
//! a batch's size is that of those bytes, not a walk over every decoded event. `Enrich` is
//! served as generated code would serve it.

use std::{convert::Infallible, pin::Pin, sync::Arc};

use attackmesh::{
    codec::grpc,
    grpc_path,
    proto::{EnrichRequest, EnrichResponse, IngestResponse, ingest_service_server::SERVICE_NAME},
};
use attackmesh_runtime::{
    auth,
    receive::{Receipts, Receive, ReceiveLimits},
    telemetry,
};
use futures::{Stream, StreamExt, stream::FuturesOrdered};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{
    Request, Response, Status, Streaming,
    body::Body,
    codegen::{BoxFuture, Context, Poll, Service},
    server::{NamedService, StreamingService, UnaryService},
};
use tracing::Instrument as _;

use crate::{
    admission::StreamSlots,
    config::IngestLimits,
    detection::IngestBatch,
    error::Error,
    metrics::METRICS,
    pipeline::{Pipeline, refused_response, retry_response},
};

/// What the service shares with every stream and with the HTTP endpoint.
pub struct IngestState {
    pub(crate) pipeline: Pipeline,
    pub(crate) limits: IngestLimits,
    pub(crate) streams: StreamSlots,
    /// Cancelled when the service starts draining: streams take no new batches.
    pub(crate) draining: CancellationToken,
}

impl IngestState {
    pub(crate) fn new(pipeline: Pipeline, limits: IngestLimits, draining: CancellationToken) -> Self {
        Self {
            pipeline,
            streams: StreamSlots::new(&limits),
            limits,
            draining,
        }
    }
}

const INGEST: &str = grpc_path!(SERVICE_NAME, "Ingest");
const ENRICH: &str = grpc_path!(SERVICE_NAME, "Enrich");

/// `attackmesh.v1.IngestService` over an [`IngestState`], accepting and sending gzip.
#[derive(Clone)]
pub struct IngestServer {
    state: Arc<IngestState>,
}

impl NamedService for IngestServer {
    const NAME: &'static str = SERVICE_NAME;
}

/// The tonic service for `state`, accepting and sending gzip, its request messages counted
/// against the in-flight byte budget and timed from their first byte.
pub fn grpc_service(state: Arc<IngestState>) -> Receive<IngestServer> {
    let limits = ReceiveLimits {
        message_timeout: state.limits.message_timeout,
        budget: Some(state.pipeline.admission.budget().clone()),
        retry_after: state.limits.retry_after,
    };
    Receive::new(IngestServer { state }, limits)
}

impl Service<http::Request<Body>> for IngestServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        match request.uri().path() {
            INGEST => {
                let mut grpc = grpc(self.state.limits.max_message_bytes);
                Box::pin(async move { Ok(grpc.streaming(Ingest(state), request).await) })
            }
            ENRICH => {
                let mut grpc = grpc(self.state.limits.max_message_bytes);
                Box::pin(async move { Ok(grpc.unary(Enrich(state), request).await) })
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

type IngestStream = Pin<Box<dyn Stream<Item = Result<IngestResponse, Status>> + Send>>;

pub(crate) fn caller_name<T>(request: &Request<T>) -> Arc<str> {
    auth::caller(request)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| Arc::from("anonymous"))
}

/// `Ingest`: one task per stream (see the module docs).
struct Ingest(Arc<IngestState>);

impl StreamingService<IngestBatch> for Ingest {
    type Response = IngestResponse;
    type ResponseStream = IngestStream;
    type Future = BoxFuture<Response<IngestStream>, Status>;

    fn call(&mut self, request: Request<Streaming<IngestBatch>>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { ingest(state, request) })
    }
}

/// Opens an `Ingest` stream: refused while draining or over the caller's stream quota, else
/// served by its own task.
fn ingest(state: Arc<IngestState>, request: Request<Streaming<IngestBatch>>) -> Result<Response<IngestStream>, Status> {
    if state.draining.is_cancelled() {
        return Err(Error::Unavailable("enrichment is shutting down; reconnect to another replica".into()).into());
    }
    let caller = caller_name(&request);
    let slot = state.streams.open(&caller).map_err(|message| Error::Exhausted {
        after: std::time::Duration::from_secs(1),
        message,
    })?;
    let receipts = Receipts::of(&request).unwrap_or_default();
    let (tx, rx) = mpsc::channel(state.limits.max_in_flight_batches_per_stream + 1);
    // A detector instrumented at the gRPC layer sends its context as stream metadata; it
    // parents every batch that carries no trace_context of its own.
    let mut stream_trace = std::collections::HashMap::new();
    opentelemetry_inject(&request, &mut stream_trace);
    let inbound = request.into_inner();
    let span = tracing::info_span!("ingest_stream", caller = %caller);
    tokio::spawn(
        async move {
            let inbound = Inbound {
                messages: inbound,
                receipts,
            };
            run_stream(&state, &caller, &stream_trace, inbound, tx).await;
            drop(slot);
        }
        .instrument(span),
    );
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// `Enrich`: one detection, enriched and exported before the answer.
struct Enrich(Arc<IngestState>);

impl UnaryService<EnrichRequest> for Enrich {
    type Response = EnrichResponse;
    type Future = BoxFuture<Response<EnrichResponse>, Status>;

    fn call(&mut self, request: Request<EnrichRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { enrich(&state, request).await })
    }
}

/// Validates, attributes and exports one detection, answering with the enriched event.
async fn enrich(state: &IngestState, request: Request<EnrichRequest>) -> Result<Response<EnrichResponse>, Status> {
    let caller = caller_name(&request);
    let received = Receipts::of(&request).and_then(|r| r.take());
    let mut trace = std::collections::HashMap::new();
    opentelemetry_inject(&request, &mut trace);
    let Some(mut event) = request.into_inner().event else {
        return Err(Error::invalid("event", "is required").into());
    };
    METRICS.received.inc();
    crate::pipeline::prepare(&caller, &mut event);
    if let Err(violations) = attackmesh::validate::detection_event(&event) {
        METRICS.rejected.inc();
        return Err(attackmesh::validate::to_status("event", &violations));
    }
    let bytes = prost::Message::encoded_len(&event);
    let _permit = state
        .pipeline
        .admit(&caller, 1, bytes, received)
        .map_err(|r| Error::Retry {
            after: r.after,
            message: r.message,
        })?;
    let span = tracing::info_span!("enrich", caller = %caller, event_id = %event.event_id);
    telemetry::set_parent_from_map(&span, &trace);
    let delivered = state
        .pipeline
        .deliver(vec![event.into()], trace, true)
        .instrument(span)
        .await?;
    if let Some(rejection) = delivered.rejections.into_iter().next() {
        METRICS.rejected.inc();
        return Err(attackmesh::validate::to_status("event", &rejection.violations));
    }
    METRICS.accepted.inc();
    let event = delivered.enriched.into_iter().next();
    Ok(Response::new(EnrichResponse { event }))
}

/// Copies a W3C context from the request's metadata into a `trace_context` map.
pub(crate) fn opentelemetry_inject<T>(request: &Request<T>, map: &mut std::collections::HashMap<String, String>) {
    for key in ["traceparent", "tracestate"] {
        if let Some(value) = request.metadata().get(key).and_then(|v| v.to_str().ok()) {
            map.insert(key.to_owned(), value.to_owned());
        }
    }
}

type Answer = Pin<Box<dyn std::future::Future<Output = (IngestResponse, bool)> + Send>>;

/// The requests of a stream, and what each message held of the byte budget while it arrived.
struct Inbound {
    messages: Streaming<IngestBatch>,
    receipts: Receipts,
}

/// Serves one `Ingest` stream until the detector closes it (answering everything taken), it
/// breaks, or it stays idle for `idle_timeout`.
async fn run_stream(
    state: &Arc<IngestState>,
    caller: &Arc<str>,
    stream_trace: &std::collections::HashMap<String, String>,
    mut inbound: Inbound,
    tx: mpsc::Sender<Result<IngestResponse, Status>>,
) {
    let per_stream = state.limits.max_in_flight_batches_per_stream;
    let idle_timeout = state.limits.idle_timeout;
    // Answers waiting their turn, processing or not; refusals are cheap but still bounded.
    let max_pending = per_stream * 2 + 1;
    let mut pending: FuturesOrdered<Answer> = FuturesOrdered::new();
    let mut processing = 0usize;
    let mut reading = true;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased;
            Some((answer, processed)) = pending.next(), if !pending.is_empty() => {
                if processed {
                    processing -= 1;
                }
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
            }
            () = state.draining.cancelled(), if reading => reading = false,
            () = &mut idle, if reading && pending.is_empty() => {
                if inbound.receipts.arriving() {
                    // A message is on its way; its own deadline (message_timeout) applies.
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    continue;
                }
                tracing::debug!(?idle_timeout, "idle ingest stream closed");
                METRICS.idle_streams.inc();
                let error = Error::Unavailable(format!(
                    "no batch for {idle_timeout:?}: idle ingest stream closed; open a new one to send more"
                ));
                let _ = tx.send(Err(error.into())).await;
                return;
            }
            message = inbound.messages.message(), if reading && pending.len() < max_pending => match message {
                Ok(Some(mut batch)) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    let received = inbound.receipts.take();
                    if batch.trace_context.is_empty() {
                        batch.trace_context.clone_from(stream_trace);
                    }
                    if batch.events.len() > state.limits.max_batch_events {
                        let error = Error::invalid(
                            "events",
                            format!("at most {} events per batch, got {}", state.limits.max_batch_events, batch.events.len()),
                        );
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                    let admitted = processing < per_stream;
                    pending.push_back(admit(state, caller, batch, admitted.then_some(received)));
                    if admitted {
                        processing += 1;
                    }
                }
                Ok(None) => reading = false,
                Err(status) => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "ingest stream ended by the detector");
                    // Say why the stream ends (a message over max_message_bytes is OUT_OF_RANGE);
                    // without this the detector saw a clean end and no answer for its batch.
                    let _ = tx.try_send(Err(status));
                    return;
                }
            },
            else => break,
        }
        if !reading && pending.is_empty() {
            break;
        }
    }
    if state.draining.is_cancelled() {
        let _ = tx
            .send(Err(Error::Unavailable(
                "enrichment is shutting down; reconnect to resend unacknowledged batches".into(),
            )
            .into()))
            .await;
    }
}

/// Starts processing a batch the stream has room for (`room`: what its message held of the byte
/// budget), or answers RETRY at once; the bool says whether the answer comes from processing (and
/// so counts against the stream's in-flight limit).
fn admit(
    state: &Arc<IngestState>,
    caller: &Arc<str>,
    batch: IngestBatch,
    room: Option<Option<attackmesh_runtime::receive::Reservation>>,
) -> Answer {
    let batch_id = batch.batch_id;
    let Some(received) = room else {
        crate::metrics::retried("in_flight");
        let answer = retry_response(
            batch_id,
            Error::Retry {
                after: state.limits.retry_after,
                message: format!(
                    "at most {} batches may be unacknowledged on one stream",
                    state.limits.max_in_flight_batches_per_stream
                ),
            },
        );
        return Box::pin(std::future::ready((answer, false)));
    };
    let bytes = batch.encoded_len();
    match state.pipeline.admit(caller, batch.events.len(), bytes, received) {
        Err(refused) => Box::pin(std::future::ready((refused_response(batch_id, refused), true))),
        Ok(permit) => {
            let state = state.clone();
            let caller = caller.clone();
            let task = tokio::spawn(async move {
                state
                    .pipeline
                    .ingest(&caller, batch_id, batch.events, batch.trace_context, permit)
                    .await
            });
            Box::pin(async move {
                let answer = match task.await {
                    Ok(answer) => answer,
                    Err(error) => retry_response(batch_id, Error::Rpc(format!("batch task failed: {error}"))),
                };
                (answer, true)
            })
        }
    }
}
