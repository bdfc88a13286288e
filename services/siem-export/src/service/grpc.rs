//! The tonic service of `attackmesh.v1.ExportService`, routed by hand rather than generated so
//! that `Export` reads its batches as [`EncodedExport`]: the events stay the bytes that arrived,
//! each decoded once for validation and the sinks and queued as it came, never encoded again.
//! `GetSinkStatus` is answered as generated code would. Compression, message size limits and
//! the `INVALID_ARGUMENT` answer to undecodable messages are the same for both methods and for
//! every other attackmesh service; authentication stays the runtime's tower layer.

use std::{convert::Infallible, pin::Pin};

use attackmesh::{
    codec::{EncodedExport, grpc},
    grpc_path,
    proto::{ExportResponse, GetSinkStatusRequest, GetSinkStatusResponse, export_service_server::SERVICE_NAME},
};
use futures::{Stream, StreamExt};
use tonic::{
    Request, Response, Status, Streaming,
    body::Body,
    codegen::{BoxFuture, Context, Poll, Service},
    server::{NamedService, StreamingService, UnaryService},
};
use tracing::Instrument;

use super::{ExportState, MAX_MESSAGE_BYTES};
use crate::status::SinkHandle;

const EXPORT: &str = grpc_path!(SERVICE_NAME, "Export");
const GET_SINK_STATUS: &str = grpc_path!(SERVICE_NAME, "GetSinkStatus");

/// `attackmesh.v1.ExportService` over an [`ExportState`], accepting and sending gzip.
#[derive(Debug, Clone)]
pub struct ExportServer {
    state: ExportState,
}

impl ExportServer {
    /// The service for `state`.
    pub fn new(state: ExportState) -> Self {
        Self { state }
    }
}

impl NamedService for ExportServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for ExportServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        match request.uri().path() {
            EXPORT => Box::pin(async move { Ok(grpc(MAX_MESSAGE_BYTES).streaming(Export(state), request).await) }),
            GET_SINK_STATUS => {
                Box::pin(async move { Ok(grpc(MAX_MESSAGE_BYTES).unary(GetSinkStatus(state), request).await) })
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportResponse, Status>> + Send>>;

/// `Export`: answers each batch, in order.
struct Export(ExportState);

impl StreamingService<EncodedExport> for Export {
    type Response = ExportResponse;
    type ResponseStream = ExportStream;
    type Future = BoxFuture<Response<ExportStream>, Status>;

    fn call(&mut self, request: Request<Streaming<EncodedExport>>) -> Self::Future {
        let state = self.0.clone();
        let responses = request.into_inner().then(move |batch| {
            let state = state.clone();
            async move {
                let batch = batch?;
                let span = tracing::info_span!("export_batch", batch_id = batch.batch_id, events = batch.events.len());
                attackmesh_runtime::telemetry::set_parent_from_map(&span, &batch.trace_context);
                state.export_batch(batch).instrument(span).await
            }
        });
        let stream: ExportStream = Box::pin(responses);
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

/// `GetSinkStatus`: every sink's queue and delivery counters.
struct GetSinkStatus(ExportState);

impl UnaryService<GetSinkStatusRequest> for GetSinkStatus {
    type Response = GetSinkStatusResponse;
    type Future = BoxFuture<Response<GetSinkStatusResponse>, Status>;

    fn call(&mut self, _request: Request<GetSinkStatusRequest>) -> Self::Future {
        let sinks = self.0.sinks().iter().map(SinkHandle::status).collect();
        Box::pin(async move { Ok(Response::new(GetSinkStatusResponse { sinks })) })
    }
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
