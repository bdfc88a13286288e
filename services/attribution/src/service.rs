//! The gRPC `AttributionService` and hot reload of rule packs.
//!
//! The engine sits in an [`EngineHandle`] (an `ArcSwap`): every batch takes the engine current
//! when it arrives, so a reload swaps rules between batches without disturbing open streams.
//! A pack set that fails to compile is logged and the running engine kept. Authentication and
//! roles are enforced by the runtime's tower layer, not here.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use attackmesh::codec::grpc;
use attackmesh::grpc_path;
use attackmesh::proto::attribution_service_server::{AttributionService, AttributionServiceServer, SERVICE_NAME};
use attackmesh::proto::{
    AttributeRequest, AttributeResponse, Attribution, DetectorKind, FieldViolation, GetGroupRequest, GetGroupResponse,
    GetKnowledgeBaseInfoRequest, GetKnowledgeBaseInfoResponse, GetTechniqueRequest, GetTechniqueResponse,
    MapPatternsRequest, MapPatternsResponse,
};
use futures::{Stream, StreamExt};
use tonic::{
    Request, Response, Status, Streaming,
    body::Body,
    codegen::{BoxFuture, Context, Poll, Service},
    server::{NamedService, StreamingService},
};
use tracing::{Instrument as _, info, warn};

use attackmesh_attack::{Engine, Resolved, compact};

use crate::batch::AttributeBatch;
use crate::config::{AttributionConfig, MAX_BATCH_LIMIT};
use crate::error::Error;
use crate::metrics;

/// Most patterns one `MapPatterns` request may hold.
pub const MAX_PATTERNS: usize = 1_000;
/// Longest pattern `MapPatterns` accepts, in bytes.
pub const MAX_PATTERN_BYTES: usize = 64 * 1024;
/// Largest request message the service decodes (a full batch of large events).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Batches larger than this are attributed on the blocking pool, off the async workers.
const INLINE_BATCH: usize = 64;

/// The current engine, swappable while requests run.
#[derive(Clone, Debug)]
pub struct EngineHandle(Arc<ArcSwap<Engine>>);

impl EngineHandle {
    /// Wraps an engine.
    pub fn new(engine: Engine) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(engine)))
    }

    /// The engine requests should use now.
    pub fn current(&self) -> Arc<Engine> {
        self.0.load_full()
    }

    /// Replaces the engine; requests already running finish with the old one.
    pub fn replace(&self, engine: Engine) {
        self.0.store(Arc::new(engine));
    }

    /// Recompiles the embedded packs overlaid with `dir` against the current knowledge base and
    /// swaps them in; on error the current engine stays. Returns the new rule-pack version.
    pub fn reload_from_dir(&self, dir: &Path) -> Result<String, Error> {
        let kb = self.current().kb().clone();
        let engine = Engine::with_rules_dir(kb, Some(dir))?;
        let version = engine.rule_pack_version().to_owned();
        self.replace(engine);
        Ok(version)
    }
}

/// What the service needs: the engine handle and request limits.
#[derive(Clone, Debug)]
pub struct AttributionState {
    /// The swappable engine.
    pub engine: EngineHandle,
    /// Most events per `Attribute` batch.
    pub max_batch: usize,
}

impl AttributionState {
    /// State for an engine with the limits of `config`.
    pub fn new(engine: Engine, config: &AttributionConfig) -> Self {
        Self {
            engine: EngineHandle::new(engine),
            max_batch: config.max_batch.clamp(1, MAX_BATCH_LIMIT),
        }
    }
}

/// The tonic service for `state`, accepting and sending gzip.
pub fn grpc_service(state: AttributionState) -> AttributionServer {
    let generated = AttributionServiceServer::new(AttributionApi { state: state.clone() })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    AttributionServer { state, generated }
}

const ATTRIBUTE: &str = grpc_path!(SERVICE_NAME, "Attribute");

/// `attackmesh.v1.AttributionService` over an [`AttributionState`]. `Attribute` is routed by
/// hand, so that its batches are read as [`AttributeBatch`]es (each detection's attributes left
/// in the bytes they arrived as); the other methods are the generated server's. Compression,
/// message size limits and the `INVALID_ARGUMENT` answer to undecodable messages are the same
/// for every method.
#[derive(Debug, Clone)]
pub struct AttributionServer {
    state: AttributionState,
    generated: AttributionServiceServer<AttributionApi>,
}

impl NamedService for AttributionServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for AttributionServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == ATTRIBUTE {
            let state = self.state.clone();
            Box::pin(async move { Ok(grpc(MAX_MESSAGE_BYTES).streaming(Attribute(state), request).await) })
        } else {
            self.generated.call(request)
        }
    }
}

type AttributeStream = Pin<Box<dyn Stream<Item = Result<AttributeResponse, Status>> + Send>>;

/// `Attribute`: answers each batch, in order.
struct Attribute(AttributionState);

impl StreamingService<AttributeBatch> for Attribute {
    type Response = AttributeResponse;
    type ResponseStream = AttributeStream;
    type Future = BoxFuture<Response<AttributeStream>, Status>;

    fn call(&mut self, request: Request<Streaming<AttributeBatch>>) -> Self::Future {
        let stream = answer(self.0.clone(), request.into_inner());
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

/// The answers to a stream of batches, in order.
fn answer(
    state: AttributionState,
    batches: impl Stream<Item = Result<AttributeBatch, Status>> + Send + 'static,
) -> AttributeStream {
    Box::pin(batches.then(move |batch| {
        let state = state.clone();
        async move {
            let batch = batch?;
            // One detector batch is one trace: the batch's span joins the context it carries.
            let span = tracing::info_span!(
                "attribute_batch",
                batch_id = batch.batch_id,
                events = batch.events.len()
            );
            attackmesh_runtime::telemetry::set_parent_from_map(&span, &batch.trace_context);
            let started = Instant::now();
            let result = attribute_batch(&state, batch).instrument(span).await;
            match &result {
                Ok(response) => metrics::batch_answered(&response.attributions, started.elapsed()),
                Err(Error::InvalidArgument(_)) => metrics::batch_refused(),
                Err(_) => {}
            }
            result.map_err(Status::from)
        }
    }))
}

/// The generated server's implementation of `attackmesh.v1.AttributionService`; its
/// `Attribute` reads prost-decoded requests, which [`AttributionServer`] routes past it.
#[derive(Debug)]
pub struct AttributionApi {
    state: AttributionState,
}

#[tonic::async_trait]
impl AttributionService for AttributionApi {
    type AttributeStream = AttributeStream;

    async fn attribute(
        &self,
        request: Request<Streaming<AttributeRequest>>,
    ) -> Result<Response<AttributeStream>, Status> {
        let batches = request.into_inner().map(|batch| batch.map(AttributeBatch::from));
        Ok(Response::new(answer(self.state.clone(), batches)))
    }

    async fn map_patterns(
        &self,
        request: Request<MapPatternsRequest>,
    ) -> Result<Response<MapPatternsResponse>, Status> {
        let req = request.into_inner();
        let mut violations = Vec::new();
        if req.patterns.len() > MAX_PATTERNS {
            violations.push(violation(
                "patterns",
                format!("at most {MAX_PATTERNS} patterns, got {}", req.patterns.len()),
            ));
        }
        for (i, p) in req
            .patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| p.len() > MAX_PATTERN_BYTES)
        {
            violations.push(violation(
                &format!("patterns[{i}]"),
                format!("must be at most {MAX_PATTERN_BYTES} bytes, got {}", p.len()),
            ));
        }
        let kind = DetectorKind::try_from(req.detector_kind)
            .map_err(|_| Error::invalid("detector_kind", format!("unknown detector kind {}", req.detector_kind)))?;
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations).into());
        }
        let engine = self.state.engine.current();
        let mappings = engine.map_patterns(&req.patterns, &req.event_type, kind);
        Ok(Response::new(MapPatternsResponse { mappings }))
    }

    async fn get_technique(
        &self,
        request: Request<GetTechniqueRequest>,
    ) -> Result<Response<GetTechniqueResponse>, Status> {
        let id = request.into_inner().id;
        let id = id.trim();
        if id.is_empty() {
            return Err(Error::invalid("id", "is required (e.g. T1110 or T1110.001)").into());
        }
        let engine = self.state.engine.current();
        let kb = engine.kb();
        let (technique, revoked_id) = match kb.resolve(id) {
            Resolved::Active(t) | Resolved::Deprecated(t) => (t, String::new()),
            Resolved::Revoked { requested, replacement } => (replacement, requested.id.clone()),
            Resolved::Unknown => {
                return Err(Error::NotFound(format!(
                    "technique `{}` is not in ATT&CK {}",
                    attackmesh::text::clip(id, 32),
                    kb.attack_version()
                ))
                .into());
            }
        };
        Ok(Response::new(GetTechniqueResponse {
            technique: Some(kb.technique_proto(technique)),
            revoked_id,
        }))
    }

    async fn get_group(&self, request: Request<GetGroupRequest>) -> Result<Response<GetGroupResponse>, Status> {
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            return Err(Error::invalid("id", "is required (a group id such as G0016, a name or an alias)").into());
        }
        let engine = self.state.engine.current();
        let kb = engine.kb();
        match kb.group(&id) {
            Some(g) => Ok(Response::new(GetGroupResponse {
                group: Some(kb.group_proto(g)),
            })),
            None => Err(Error::NotFound(format!(
                "no group with id, name or alias `{}` in ATT&CK {}",
                attackmesh::text::clip(id.trim(), 64),
                kb.attack_version()
            ))
            .into()),
        }
    }

    async fn get_knowledge_base_info(
        &self,
        _request: Request<GetKnowledgeBaseInfoRequest>,
    ) -> Result<Response<GetKnowledgeBaseInfoResponse>, Status> {
        Ok(Response::new(self.state.engine.current().info()))
    }
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

/// Validates and attributes one batch with the engine current when it arrived, in the compact
/// form (made directly, its rule-pack version sent once) when the caller asked for it with the
/// engine's own ATT&CK release.
async fn attribute_batch(state: &AttributionState, batch: AttributeBatch) -> Result<AttributeResponse, Error> {
    if batch.events.len() > state.max_batch {
        return Err(Error::invalid(
            "events",
            format!(
                "at most {} events per batch, got {}",
                state.max_batch,
                batch.events.len()
            ),
        ));
    }
    let mut violations = Vec::new();
    for (i, ev) in batch.events.iter().enumerate() {
        if let Err(found) = attackmesh::validate::detection_event(ev) {
            violations.extend(
                found
                    .into_iter()
                    .map(|v| violation(&format!("events[{i}].{}", v.field), v.description)),
            );
        }
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    let engine = state.engine.current();
    let batch_id = batch.batch_id;
    let batch_len = batch.events.len();
    let events = batch.events;
    let compact = compact::answers_compact(engine.kb(), &batch.compact_for_attack_version);
    let rule_pack_version = if compact {
        engine.rule_pack_version().to_owned()
    } else {
        String::new()
    };
    let attribute = move || -> Vec<Attribution> {
        if compact {
            events.iter().map(|e| engine.attribute_compact(e)).collect()
        } else {
            events.iter().map(|e| engine.attribute(e)).collect()
        }
    };
    let attributions = if batch_len <= INLINE_BATCH {
        attribute()
    } else {
        tokio::task::spawn_blocking(attribute)
            .await
            .map_err(|e| Error::Internal(format!("attribution task failed: {e}")))?
    };
    Ok(AttributeResponse {
        batch_id,
        attributions,
        compact,
        rule_pack_version,
    })
}

/// Polls `dir` every `interval` and reloads the rule packs when a pack or Sigma rule file was
/// added, removed or modified; stops when `shutdown` completes. A bad pack set is logged and the old one kept.
pub async fn watch_rules(dir: PathBuf, interval: Duration, handle: EngineHandle, shutdown: impl Future<Output = ()>) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut last = snapshot_blocking(dir.clone()).await;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let now = snapshot_blocking(dir.clone()).await;
        if now == last {
            continue;
        }
        last = now;
        let (dir2, handle2) = (dir.clone(), handle.clone());
        match tokio::task::spawn_blocking(move || handle2.reload_from_dir(&dir2)).await {
            Ok(Ok(version)) => {
                metrics::reloaded(true);
                metrics::rules_loaded(handle.current().rules().len());
                info!(dir = %dir.display(), rule_pack_version = %version, "reloaded rule packs");
            }
            Ok(Err(error)) => {
                metrics::reloaded(false);
                warn!(dir = %dir.display(), %error, "rule packs not reloaded; keeping the running ones");
            }
            Err(error) => {
                metrics::reloaded(false);
                warn!(dir = %dir.display(), %error, "rule pack reload task failed");
            }
        }
    }
}

type Snapshot = Vec<(PathBuf, Option<SystemTime>, u64)>;

async fn snapshot_blocking(dir: PathBuf) -> Snapshot {
    tokio::task::spawn_blocking(move || snapshot(&dir))
        .await
        .unwrap_or_default()
}

/// Name, modification time and size of every pack file in `dir` and Sigma rule file under
/// `dir/sigma/`.
fn snapshot(dir: &Path) -> Snapshot {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let sigma = attackmesh_attack::sigma::source::rule_files(&dir.join(attackmesh_attack::sigma::SIGMA_SUBDIR));
    let mut out: Snapshot = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| attackmesh_attack::rules::pack::is_pack_file(p))
        .chain(sigma)
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (p, modified, len)
        })
        .collect();
    out.sort();
    out
}
