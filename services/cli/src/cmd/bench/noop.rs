//! The benchmark's baseline: services that make the same gRPC hops as the real pipeline and do
//! no work. The no-op ingest forwards each batch's events as they are to the no-op attribution,
//! turns the answer into enriched events, sends those to the no-op export and acknowledges the
//! batch DURABLE once export did, pipelined like the real one; attribution answers empty
//! attributions and export acknowledges at once, storing nothing.
//!
//! These services must stay free of real work: whatever they do is counted as transport cost.
//! So none of them decodes an event. Each batch is read with its events left as the bytes they
//! arrived as (`attackmesh::codec`'s wire-compatible batch messages), forwarded as those bytes,
//! and an enriched event is the detection's bytes renumbered (`attackmesh::enriched`), as the
//! real enrichment writes its detection part. Decoding a batch of real detector records into
//! prost's structures costs more than carrying it: a baseline that did would measure prost,
//! not the transport.

use std::{convert::Infallible, future::Future, pin::Pin};

use anyhow::Context as _;
use attackmesh::{
    codec::{EncodedExport, EncodedIngest, ProstCodec, grpc},
    grpc_path,
    proto::{
        AckStatus, AttributeResponse, Attribution, ExportResponse, IngestResponse, attribution_service_server,
        export_service_server, ingest_service_server,
    },
};
use attackmesh_runtime::server::{GrpcServer, ServeOptions};
use bytes::{Bytes, BytesMut};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{
    Request, Response, Status, Streaming,
    body::Body,
    codegen::{BoxFuture, Context, Poll, Service},
    metadata::MetadataValue,
    server::{NamedService, StreamingService},
    transport::Channel,
};

use crate::config::Config;

/// Largest message the no-op services take (the contract's batch limit fits well below it).
const MAX_MESSAGE: usize = 64 << 20;

/// Batches in flight between two no-op hops.
const WINDOW: usize = 64;

const ATTRIBUTE: &str = grpc_path!(attribution_service_server::SERVICE_NAME, "Attribute");
const EXPORT: &str = grpc_path!(export_service_server::SERVICE_NAME, "Export");
const INGEST: &str = grpc_path!(ingest_service_server::SERVICE_NAME, "Ingest");

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
        Role::Attribution => with(server, NoopAttribution).await,
        Role::Export => with(server, NoopExport).await,
        Role::Ingest => with(server, NoopIngest::new(config)?).await,
    };
    server.serve(listener, shutdown).await?;
    Ok(())
}

/// `server` with `method` added and reported serving.
async fn with<M: Method>(server: GrpcServer, method: M) -> GrpcServer {
    let server = server.add_service(Route(method)).await;
    server.health().serving::<Route<M>>().await;
    server
}

/// The one streaming method a no-op service answers.
trait Method: Clone + Send + Sync + 'static {
    /// The service's full name.
    const SERVICE: &'static str;
    /// The method's path.
    const PATH: &'static str;
    /// A batch, its events left encoded.
    type Batch: prost::Message + Default + Send + 'static;
    /// What each batch is answered with.
    type Answer: prost::Message + Send + 'static;
    /// The answers to a stream of batches.
    fn answer(&self, batches: Streaming<Self::Batch>) -> BoxFuture<BoxStream<Self::Answer>, Status>;
}

/// A no-op service: its method read with [`grpc`] (the limits and codec of every attackmesh
/// service), every other path `UNIMPLEMENTED`.
#[derive(Clone)]
struct Route<M>(M);

impl<M: Method> NamedService for Route<M> {
    const NAME: &'static str = M::SERVICE;
}

impl<M: Method> Service<http::Request<Body>> for Route<M> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == M::PATH {
            let method = Handler(self.0.clone());
            Box::pin(async move {
                Ok(grpc::<M::Answer, M::Batch>(MAX_MESSAGE)
                    .streaming(method, request)
                    .await)
            })
        } else {
            Box::pin(async { Ok(Status::unimplemented("a no-op service answers one method").into_http()) })
        }
    }
}

struct Handler<M>(M);

impl<M: Method> StreamingService<M::Batch> for Handler<M> {
    type Response = M::Answer;
    type ResponseStream = BoxStream<M::Answer>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<M::Batch>>) -> Self::Future {
        let answers = self.0.answer(request.into_inner());
        Box::pin(async move { answers.await.map(Response::new) })
    }
}

/// Answers every batch with one empty attribution per event. An `AttributeRequest` reads as an
/// [`EncodedIngest`] (the same first three fields; `compact_for_attack_version` skipped).
#[derive(Clone)]
struct NoopAttribution;

impl Method for NoopAttribution {
    const SERVICE: &'static str = attribution_service_server::SERVICE_NAME;
    const PATH: &'static str = ATTRIBUTE;
    type Batch = EncodedIngest;
    type Answer = AttributeResponse;

    fn answer(&self, batches: Streaming<EncodedIngest>) -> BoxFuture<BoxStream<AttributeResponse>, Status> {
        let answers = batches.map(|batch| {
            let batch = batch?;
            Ok(AttributeResponse {
                batch_id: batch.batch_id,
                attributions: vec![Attribution::default(); batch.events.len()],
                ..Default::default()
            })
        });
        Box::pin(async move { Ok(Box::pin(answers) as BoxStream<_>) })
    }
}

/// Acknowledges every batch DURABLE at once without storing it.
#[derive(Clone)]
struct NoopExport;

impl Method for NoopExport {
    const SERVICE: &'static str = export_service_server::SERVICE_NAME;
    const PATH: &'static str = EXPORT;
    type Batch = EncodedExport;
    type Answer = ExportResponse;

    fn answer(&self, batches: Streaming<EncodedExport>) -> BoxFuture<BoxStream<ExportResponse>, Status> {
        let answers = batches.map(|batch| {
            let batch = batch?;
            Ok(ExportResponse {
                batch_id: batch.batch_id,
                status: AckStatus::Durable as i32,
                accepted: u32::try_from(batch.events.len()).unwrap_or(u32::MAX),
                ..Default::default()
            })
        });
        Box::pin(async move { Ok(Box::pin(answers) as BoxStream<_>) })
    }
}

/// Forwards batches to attribution and then export over one stream each per ingest stream.
#[derive(Clone)]
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

    /// Opens a stream of `Batch`es to `path` on `channel`, read back as `Answer`s.
    async fn call<Batch, Answer>(
        &self,
        channel: &Channel,
        path: &'static str,
        batches: mpsc::Receiver<Batch>,
    ) -> Result<Streaming<Answer>, Status>
    where
        Batch: prost::Message + Send + 'static,
        Answer: prost::Message + Default + Send + 'static,
    {
        let mut request = Request::new(ReceiverStream::new(batches));
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(path);
        let codec = ProstCodec::<Batch, Answer>::default();
        Ok(grpc.streaming(request, path, codec).await?.into_inner())
    }
}

/// The enriched event of `detection`, an encoded `DetectionEvent`, with an empty attribution:
/// its fields renumbered, then `enriched_at` (now) and revision 1, as `attackmesh::enriched_event`
/// makes it.
fn enriched(detection: &[u8], now: &pbjson_types::Timestamp, out: &mut BytesMut) -> Result<Bytes, Status> {
    attackmesh::enriched::write_detection_fields(detection, &[], out)
        .map_err(|e| Status::invalid_argument(format!("IngestRequest.events: {e}")))?;
    prost::encoding::message::encode(19, now, out);
    prost::encoding::uint32::encode(20, &1, out);
    Ok(out.split().freeze())
}

impl Method for NoopIngest {
    const SERVICE: &'static str = ingest_service_server::SERVICE_NAME;
    const PATH: &'static str = INGEST;
    type Batch = EncodedIngest;
    type Answer = IngestResponse;

    fn answer(&self, mut incoming: Streaming<EncodedIngest>) -> BoxFuture<BoxStream<IngestResponse>, Status> {
        let this = self.clone();
        Box::pin(async move {
            let (attr_tx, attr_rx) = mpsc::channel::<EncodedIngest>(WINDOW);
            let mut attributed = this
                .call::<EncodedIngest, AttributeResponse>(&this.attribution, ATTRIBUTE, attr_rx)
                .await?;
            let (export_tx, export_rx) = mpsc::channel::<EncodedExport>(WINDOW);
            let mut exported = this
                .call::<EncodedExport, ExportResponse>(&this.export, EXPORT, export_rx)
                .await?;
            let (out_tx, out_rx) = mpsc::channel(WINDOW);
            // Events wait here for their attributions, then acknowledgement counts for export.
            let (held_tx, mut held) = mpsc::unbounded_channel::<(u64, Vec<Bytes>)>();
            let (sent_tx, mut sent) = mpsc::unbounded_channel::<(u64, u32)>();

            let fail = out_tx.clone();
            tokio::spawn(async move {
                let result: Result<(), Status> = async {
                    while let Some(batch) = incoming.message().await? {
                        // The same bytes, shared: an AttributeRequest's first three fields.
                        let (batch_id, events) = (batch.batch_id, batch.events.clone());
                        attr_tx
                            .send(batch)
                            .await
                            .map_err(|_| Status::unavailable("attribution stream closed"))?;
                        let _ = held_tx.send((batch_id, events));
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
                    let mut buf = BytesMut::new();
                    while attributed.message().await?.is_some() {
                        let (batch_id, detections) = held.recv().await.ok_or_else(|| Status::internal("batch lost"))?;
                        let now = chrono::Utc::now();
                        let now = pbjson_types::Timestamp {
                            seconds: now.timestamp(),
                            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
                        };
                        buf.reserve(detections.iter().map(|d| d.len() + 24).sum());
                        let events = detections
                            .iter()
                            .map(|d| enriched(d, &now, &mut buf))
                            .collect::<Result<Vec<_>, _>>()?;
                        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
                        let request = EncodedExport {
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
            Ok(Box::pin(ReceiverStream::new(out_rx)) as BoxStream<_>)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use attackmesh::proto::{DetectionEvent, EnrichedEvent, Indicator};
    use prost::Message as _;

    use super::*;

    /// The no-op ingest's enriched event is the one `attackmesh::enriched_event` makes from the
    /// decoded detection and an empty attribution, without decoding anything.
    #[test]
    fn enriched_bytes_are_the_enriched_event_of_an_empty_attribution() {
        let detection = DetectionEvent {
            event_id: "e-1".into(),
            timestamp: Some(pbjson_types::Timestamp { seconds: 5, nanos: 6 }),
            source_service: "suricata".into(),
            event_type: "alert".into(),
            description: "ET SCAN".into(),
            indicators: vec![Indicator {
                r#type: 1,
                value: "192.0.2.1".into(),
            }],
            technique_hints: vec!["T1046".into()],
            attributes: [("alert.signature_id".to_owned(), "2001219".to_owned())].into(),
            original: "{\"event_type\":\"alert\"}".into(),
            original_format: "suricata-eve".into(),
            submitted_by: "detector".into(),
            ..Default::default()
        };
        let now = pbjson_types::Timestamp { seconds: 9, nanos: 10 };
        let mut buf = BytesMut::new();
        let bytes = enriched(&detection.encode_to_vec(), &now, &mut buf).unwrap();
        let mut expected = attackmesh::enriched_event(detection, Attribution::default(), 1);
        expected.enriched_at = Some(now);
        assert_eq!(EnrichedEvent::decode(bytes).unwrap(), expected);

        let refused = enriched(&[0x0a, 0x05, b'a'], &now, &mut buf).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
