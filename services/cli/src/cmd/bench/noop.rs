//! The benchmark's baseline: services that make the same gRPC hops as the real pipeline and do
//! no work. The no-op ingest forwards each batch's events as they are to the no-op attribution,
//! turns the answer into enriched events, sends those to the no-op export and acknowledges the
//! batch DURABLE once export did, pipelined like the real one; attribution answers empty
//! attributions and export acknowledges at once, storing nothing.
//!
//! These services must stay free of real work: whatever they do is counted as transport cost.

use std::{future::Future, pin::Pin};

use anyhow::Context as _;
use attackmesh::proto::{
    AckStatus, AttributeRequest, AttributeResponse, Attribution, DetectionEvent, EnrichRequest, EnrichResponse,
    ExportRequest, ExportResponse, GetGroupRequest, GetGroupResponse, GetKnowledgeBaseInfoRequest,
    GetKnowledgeBaseInfoResponse, GetSinkStatusRequest, GetSinkStatusResponse, GetTechniqueRequest,
    GetTechniqueResponse, IngestRequest, IngestResponse, MapPatternsRequest, MapPatternsResponse,
    attribution_service_client::AttributionServiceClient,
    attribution_service_server::{AttributionService, AttributionServiceServer},
    export_service_client::ExportServiceClient,
    export_service_server::{ExportService, ExportServiceServer},
    ingest_service_server::{IngestService, IngestServiceServer},
};
use attackmesh_runtime::server::{GrpcServer, ServeOptions};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming, metadata::MetadataValue, transport::Channel};

use crate::config::Config;

/// Largest message the no-op services take (the contract's batch limit fits well below it).
const MAX_MESSAGE: usize = 64 << 20;

/// Batches in flight between two no-op hops.
const WINDOW: usize = 64;

/// Which no-op service to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Role {
    /// Stands in for enrichment: forwards to attribution, then to export.
    Ingest,
    /// Stands in for attribution: empty attributions.
    Attribution,
    /// Stands in for siem-export: acknowledges at once.
    Export,
}

impl Role {
    /// Where this role listens in `config` (the address of the service it stands in for).
    pub(super) fn addr(self, config: &Config) -> std::net::SocketAddr {
        match self {
            Role::Ingest => config.listen.enrichment,
            Role::Attribution => config.listen.attribution,
            Role::Export => config.listen.siem_export,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves `role` on `listener` until `shutdown`, with the tokens of `config`; the no-op ingest
/// calls the endpoints and token file of `config.enrichment`.
pub(super) async fn serve(
    role: Role,
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let server = GrpcServer::new(ServeOptions::from_config(&config.runtime())?).await?;
    let server = match role {
        Role::Attribution => {
            let svc = AttributionServiceServer::new(NoopAttribution).max_decoding_message_size(MAX_MESSAGE);
            let server = server.add_service(svc).await;
            server
                .health()
                .serving::<AttributionServiceServer<NoopAttribution>>()
                .await;
            server
        }
        Role::Export => {
            let svc = ExportServiceServer::new(NoopExport).max_decoding_message_size(MAX_MESSAGE);
            let server = server.add_service(svc).await;
            server.health().serving::<ExportServiceServer<NoopExport>>().await;
            server
        }
        Role::Ingest => {
            let ingest = NoopIngest::new(config)?;
            let svc = IngestServiceServer::new(ingest).max_decoding_message_size(MAX_MESSAGE);
            let server = server.add_service(svc).await;
            server.health().serving::<IngestServiceServer<NoopIngest>>().await;
            server
        }
    };
    server.serve(listener, shutdown).await?;
    Ok(())
}

/// Answers every batch with one empty attribution per event.
struct NoopAttribution;

#[tonic::async_trait]
impl AttributionService for NoopAttribution {
    type AttributeStream = BoxStream<AttributeResponse>;

    async fn attribute(
        &self,
        request: Request<Streaming<AttributeRequest>>,
    ) -> Result<Response<Self::AttributeStream>, Status> {
        let answers = request.into_inner().map(|batch| {
            let batch = batch?;
            Ok(AttributeResponse {
                batch_id: batch.batch_id,
                attributions: vec![Attribution::default(); batch.events.len()],
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn map_patterns(&self, _: Request<MapPatternsRequest>) -> Result<Response<MapPatternsResponse>, Status> {
        Err(Status::unimplemented("no-op attribution"))
    }

    async fn get_technique(&self, _: Request<GetTechniqueRequest>) -> Result<Response<GetTechniqueResponse>, Status> {
        Err(Status::unimplemented("no-op attribution"))
    }

    async fn get_group(&self, _: Request<GetGroupRequest>) -> Result<Response<GetGroupResponse>, Status> {
        Err(Status::unimplemented("no-op attribution"))
    }

    async fn get_knowledge_base_info(
        &self,
        _: Request<GetKnowledgeBaseInfoRequest>,
    ) -> Result<Response<GetKnowledgeBaseInfoResponse>, Status> {
        Err(Status::unimplemented("no-op attribution"))
    }
}

/// Acknowledges every batch DURABLE at once without storing it.
struct NoopExport;

#[tonic::async_trait]
impl ExportService for NoopExport {
    type ExportStream = BoxStream<ExportResponse>;

    async fn export(&self, request: Request<Streaming<ExportRequest>>) -> Result<Response<Self::ExportStream>, Status> {
        let answers = request.into_inner().map(|batch| {
            let batch = batch?;
            Ok(ExportResponse {
                batch_id: batch.batch_id,
                status: AckStatus::Durable as i32,
                accepted: u32::try_from(batch.events.len()).unwrap_or(u32::MAX),
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_sink_status(
        &self,
        _: Request<GetSinkStatusRequest>,
    ) -> Result<Response<GetSinkStatusResponse>, Status> {
        Ok(Response::new(GetSinkStatusResponse::default()))
    }
}

/// Forwards batches to attribution and then export over one stream each per ingest stream.
struct NoopIngest {
    attribution: Channel,
    export: Channel,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

impl NoopIngest {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let channel = |endpoints: &[String]| -> anyhow::Result<Channel> {
            let endpoint = endpoints.first().context("the no-op ingest needs upstream endpoints")?;
            Ok(Channel::from_shared(endpoint.clone())?.tcp_nodelay(true).connect_lazy())
        };
        let up = &config.enrichment;
        let token_file = up
            .attribution
            .peer
            .token_file
            .as_ref()
            .context("the no-op ingest needs a token file")?;
        let token =
            std::fs::read_to_string(token_file).with_context(|| format!("cannot read {}", token_file.display()))?;
        Ok(Self {
            attribution: channel(&up.attribution.peer.endpoints)?,
            export: channel(&up.export.peer.endpoints)?,
            authorization: format!("Bearer {}", token.trim()).parse()?,
        })
    }

    fn authed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }
}

#[tonic::async_trait]
impl IngestService for NoopIngest {
    type IngestStream = ReceiverStream<Result<IngestResponse, Status>>;

    async fn ingest(&self, request: Request<Streaming<IngestRequest>>) -> Result<Response<Self::IngestStream>, Status> {
        let mut incoming = request.into_inner();
        let (attr_tx, attr_rx) = mpsc::channel::<AttributeRequest>(WINDOW);
        let mut attributed = AttributionServiceClient::new(self.attribution.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .attribute(self.authed(ReceiverStream::new(attr_rx)))
            .await?
            .into_inner();
        let (export_tx, export_rx) = mpsc::channel::<ExportRequest>(WINDOW);
        let mut exported = ExportServiceClient::new(self.export.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .export(self.authed(ReceiverStream::new(export_rx)))
            .await?
            .into_inner();
        let (out_tx, out_rx) = mpsc::channel(WINDOW);
        // Events wait here for their attributions, then acknowledgement counts for export.
        let (held_tx, mut held) = mpsc::unbounded_channel::<(u64, Vec<DetectionEvent>)>();
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<(u64, u32)>();

        let fail = out_tx.clone();
        tokio::spawn(async move {
            let result: Result<(), Status> = async {
                while let Some(batch) = incoming.message().await? {
                    let copy = AttributeRequest {
                        batch_id: batch.batch_id,
                        events: batch.events.clone(),
                        trace_context: batch.trace_context,
                        ..Default::default()
                    };
                    attr_tx
                        .send(copy)
                        .await
                        .map_err(|_| Status::unavailable("attribution stream closed"))?;
                    let _ = held_tx.send((batch.batch_id, batch.events));
                }
                Ok(())
            }
            .await;
            if let Err(status) = result {
                let _ = fail.send(Err(status)).await;
            }
        });
        let fail = out_tx.clone();
        tokio::spawn(async move {
            let result: Result<(), Status> = async {
                while let Some(answer) = attributed.message().await? {
                    let (batch_id, events) = held.recv().await.ok_or_else(|| Status::internal("batch lost"))?;
                    let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
                    let events = events
                        .into_iter()
                        .zip(answer.attributions)
                        .map(|(event, attribution)| attackmesh::enriched_event(event, attribution, 1))
                        .collect();
                    let request = ExportRequest {
                        batch_id,
                        events,
                        ..Default::default()
                    };
                    export_tx
                        .send(request)
                        .await
                        .map_err(|_| Status::unavailable("export stream closed"))?;
                    let _ = sent_tx.send((batch_id, n));
                }
                Ok(())
            }
            .await;
            if let Err(status) = result {
                let _ = fail.send(Err(status)).await;
            }
        });
        tokio::spawn(async move {
            let result: Result<(), Status> = async {
                while exported.message().await?.is_some() {
                    let (batch_id, accepted) = sent.recv().await.ok_or_else(|| Status::internal("batch lost"))?;
                    let ack = IngestResponse {
                        batch_id,
                        status: AckStatus::Durable as i32,
                        accepted,
                        ..Default::default()
                    };
                    if out_tx.send(Ok(ack)).await.is_err() {
                        break;
                    }
                }
                Ok(())
            }
            .await;
            if let Err(status) = result {
                let _ = out_tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    async fn enrich(&self, _: Request<EnrichRequest>) -> Result<Response<EnrichResponse>, Status> {
        Err(Status::unimplemented("no-op ingest"))
    }
}
