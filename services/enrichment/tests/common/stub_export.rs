//! A stand-in export service that acknowledges every batch at once and records what it saw
//! (trace context and event ids, and the events themselves), for checks the real service's
//! sinks cannot show.

use std::{collections::HashMap, net::SocketAddr};

use tonic::Request;

use super::{Proc, runtime, until_killed};

/// What a [`CapturingExport`] saw: each batch's trace context and event ids.
pub type Captured = std::sync::Arc<std::sync::Mutex<Vec<(HashMap<String, String>, Vec<String>)>>>;

/// An export service that acknowledges every batch at once and records it.
#[derive(Clone, Default)]
pub struct CapturingExport {
    pub seen: Captured,
    /// Every event exported, as received, in order.
    pub events: std::sync::Arc<std::sync::Mutex<Vec<attackmesh::proto::EnrichedEvent>>>,
    /// Each batch's `compact_for_attack_version`, in order.
    pub compact_for: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The ATT&CK release every answer names (none when empty, as a service that takes full
    /// events only).
    pub attack_version: String,
}

#[tonic::async_trait]
impl attackmesh::proto::export_service_server::ExportService for CapturingExport {
    type ExportStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<attackmesh::proto::ExportResponse, tonic::Status>> + Send>>;

    async fn export(
        &self,
        request: Request<tonic::Streaming<attackmesh::proto::ExportRequest>>,
    ) -> Result<tonic::Response<Self::ExportStream>, tonic::Status> {
        use futures::StreamExt;
        let (seen, events, compact_for) = (self.seen.clone(), self.events.clone(), self.compact_for.clone());
        let attack_version = self.attack_version.clone();
        let answers = request.into_inner().map(move |batch| {
            let batch = batch?;
            let ids = batch.events.iter().map(|e| e.event_id.clone()).collect();
            seen.lock().unwrap().push((batch.trace_context.clone(), ids));
            events.lock().unwrap().extend(batch.events.iter().cloned());
            compact_for
                .lock()
                .unwrap()
                .push(batch.compact_for_attack_version.clone());
            Ok(attackmesh::proto::ExportResponse {
                batch_id: batch.batch_id,
                status: attackmesh::proto::AckStatus::Durable as i32,
                accepted: batch.events.len() as u32,
                attack_version: attack_version.clone(),
                ..Default::default()
            })
        });
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn get_sink_status(
        &self,
        _request: Request<attackmesh::proto::GetSinkStatusRequest>,
    ) -> Result<tonic::Response<attackmesh::proto::GetSinkStatusResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }
}

pub fn start_capturing_export(addr: SocketAddr, export: CapturingExport) -> Proc {
    use attackmesh::proto::export_service_server::ExportServiceServer;
    Proc::start(addr, false, move |listener, _, killed| async move {
        let server = attackmesh_testkit::tokens::server(&runtime())
            .await
            .add_service(ExportServiceServer::new(export))
            .await;
        server.health().serving::<ExportServiceServer<CapturingExport>>().await;
        until_killed(killed, |graceful| async move {
            server
                .serve(listener, async {
                    let _ = graceful.await;
                })
                .await
                .unwrap();
        })
        .await;
    })
}
