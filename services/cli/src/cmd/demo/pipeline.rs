//! The whole pipeline in this process for the demo: attribution, enrichment, siem-export and
//! intel, each on its own loopback listener and talking real gRPC to the others, exactly as
//! `serve` starts them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use attackmesh::proto::{
    AckStatus, EnrichedEvent, ExportRequest, GetSinkStatusRequest, SinkStatus,
    export_service_client::ExportServiceClient, ingest_service_client::IngestServiceClient,
};
use attackmesh_runtime::{
    auth::{Role, TokenEntry, hash_token},
    client::BearerToken,
    token::new_token,
};
use attackmesh_siem_export::sinks::file::{FileShape, FileSinkConfig};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{
    cmd::serve::{self, Service},
    config::Config,
};

/// The result files the sinks write, relative to the output folder.
pub(crate) const ENRICHED: &str = "enriched.ndjson";
/// ECS documents, as the Elasticsearch sink sends them.
pub(crate) const ECS: &str = "ecs.ndjson";
/// HEC envelopes, as the Splunk sink sends them.
pub(crate) const HEC: &str = "hec.ndjson";
/// OCSF Detection Findings, one per line, for security data lakes.
pub(crate) const OCSF: &str = "ocsf.ndjson";
/// Queues, dead letters and the intel store of one run.
const STATE: &str = ".state";

/// A gRPC client that authenticates with a bearer token.
pub(crate) type Authed = InterceptedService<Channel, BearerToken>;

/// The running services.
pub(crate) struct Pipeline {
    /// Ingest (enrichment) address.
    pub(crate) enrichment: SocketAddr,
    /// Attribution address.
    pub(crate) attribution: SocketAddr,
    /// Export address.
    pub(crate) siem_export: SocketAddr,
    /// Intel gRPC address.
    pub(crate) intel: SocketAddr,
    /// TAXII 2.1 base URL of the default collection's objects.
    pub(crate) taxii_objects: String,
    /// Token of role detector.
    pub(crate) detector_token: String,
    /// Token of role admin.
    pub(crate) admin_token: String,
    /// Token of role analyst (the matrix page, TAXII reads).
    pub(crate) analyst_token: String,
    /// The live ATT&CK matrix page.
    pub(crate) ui: String,
    /// The configuration the services run with.
    pub(crate) config: Config,
    /// In start order; stopped in reverse, so nothing upstream is cut off mid-batch.
    running: Vec<(Service, CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl Pipeline {
    /// Starts every service with `config` (real SIEM sinks it configures are kept), writing its
    /// results under `out`: the canonical, ECS, HEC and OCSF files, and the intel store.
    pub(crate) async fn start(mut config: Config, out: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let state = out.join(STATE);
        if state.exists() {
            std::fs::remove_dir_all(&state).with_context(|| format!("cannot clear {}", state.display()))?;
        }
        for file in [ENRICHED, ECS, HEC, OCSF] {
            remove_if_present(&out.join(file))?;
        }

        let detector_token = new_token()?.expose().to_owned();
        let admin_token = new_token()?.expose().to_owned();
        let analyst_token = new_token()?.expose().to_owned();
        let token = |name: &str, role, secret: &str| TokenEntry {
            name: name.into(),
            role,
            sha256: hash_token(secret),
        };
        config
            .auth
            .tokens
            .push(token("demo-detector", Role::Detector, &detector_token));
        config.auth.tokens.push(token("demo-admin", Role::Admin, &admin_token));
        config
            .auth
            .tokens
            .push(token("demo-analyst", Role::Analyst, &analyst_token));
        // Loopback only: the demo's own listeners are plain gRPC.
        config.tls = Default::default();

        let mut listeners = Vec::new();
        for service in [
            Service::Attribution,
            Service::Correlation,
            Service::SiemExport,
            Service::Intel,
            Service::Enrichment,
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            match service {
                Service::Attribution => config.listen.attribution = addr,
                Service::SiemExport => config.listen.siem_export = addr,
                Service::Intel => config.listen.intel = addr,
                Service::Correlation => config.listen.correlation = addr,
                Service::Enrichment | Service::All => config.listen.enrichment = addr,
            }
            listeners.push((service, listener));
        }
        config.listen.metrics = None;
        config.enrichment.http_listen = None;
        config.enrichment.data_dir = state.join("enrichment");
        config.intel.http_listen = free_port()?;
        config.intel.data_dir = state.join("intel");
        config.intel.db = None;
        config.intel.push.clear();

        let export = &mut config.siem_export;
        export.data_dir = state.join("siem-export");
        export.file = file_sink(None, out.join(ENRICHED), FileShape::Canonical);
        export.files = vec![
            file_sink(Some("ecs"), out.join(ECS), FileShape::Ecs),
            file_sink(Some("hec"), out.join(HEC), FileShape::Hec),
            file_sink(Some("ocsf"), out.join(OCSF), FileShape::Ocsf),
        ];
        export.intel.peer.endpoints = vec![format!("http://{}", config.listen.intel)];
        export.intel.peer.token_file = None;
        export.intel.peer.token = None;
        export.correlation.peer = Default::default();
        config.correlation.data_dir = state.join("correlation");
        config.correlation.enrichment = Default::default();
        // The demo folds the delivered events into campaigns itself (see `campaign`): the
        // service's revisions depend on how the stream is cut into batches, the demo's output
        // must not.
        config.correlation.build_campaigns = false;
        config.correlation.export = Default::default();
        serve::wire_correlation(&mut config);
        serve::admit_run_tokens(&mut config)?;
        config.validate()?;

        // Neighbours first, each serving before the next starts, so enrichment finds its
        // upstreams ready and the detectors find enrichment ready.
        let mut running = Vec::new();
        for (service, listener) in listeners {
            let addr = listener.local_addr()?;
            let stop = CancellationToken::new();
            let run = serve::start(service, config.clone(), listener, stop.clone())
                .await
                .with_context(|| format!("cannot start {service:?}"))?;
            let task = tokio::spawn(run);
            wait_serving(addr, &admin_token)
                .await
                .with_context(|| format!("{service:?} did not become ready"))?;
            running.push((service, stop, task));
        }
        let taxii_objects = format!(
            "http://{}/{}/collections/{}/objects/",
            config.intel.http_listen,
            config.intel.api_root.trim_matches('/'),
            config.intel.default_collection_id()
        );
        let ui = format!("http://{}/ui/", config.intel.http_listen);
        Ok(Self {
            enrichment: config.listen.enrichment,
            attribution: config.listen.attribution,
            siem_export: config.listen.siem_export,
            intel: config.listen.intel,
            taxii_objects,
            detector_token,
            admin_token,
            analyst_token,
            ui,
            config,
            running,
        })
    }

    /// An Ingest client presenting the detector token.
    pub(crate) async fn ingest_client(&self) -> anyhow::Result<IngestServiceClient<Authed>> {
        let channel = connect(self.enrichment).await?;
        Ok(
            IngestServiceClient::with_interceptor(channel, bearer(&self.detector_token)?)
                .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES),
        )
    }

    /// Hands `events` to siem-export as one Export batch (as the enrichment service does),
    /// resending it while siem-export answers RETRY, and returns how many it queued.
    pub(crate) async fn export(&self, events: Vec<EnrichedEvent>) -> anyhow::Result<u64> {
        let channel = connect(self.siem_export).await?;
        let mut client = ExportServiceClient::with_interceptor(channel, bearer(&self.admin_token)?)
            .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES);
        loop {
            let request = ExportRequest {
                batch_id: 0,
                events: events.clone(),
                trace_context: attackmesh_runtime::telemetry::inject_map(),
                ..Default::default()
            };
            let mut responses = client.export(tokio_stream::iter([request])).await?.into_inner();
            let response = responses
                .message()
                .await?
                .context("siem-export closed the stream without an answer")?;
            if response.status == AckStatus::Durable as i32 {
                if let Some(r) = response.rejections.first() {
                    anyhow::bail!("siem-export refused campaign alert {}: {:?}", r.event_id, r.violations);
                }
                return Ok(u64::from(response.accepted));
            }
            let wait = response
                .retry_after
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::from_millis(200));
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until every sink has delivered (or dead-lettered) `expected` events, or `timeout`
    /// passed, and returns the sinks' status.
    pub(crate) async fn wait_delivered(&self, expected: u64, timeout: Duration) -> anyhow::Result<Vec<SinkStatus>> {
        let channel = connect(self.siem_export).await?;
        let mut client = ExportServiceClient::with_interceptor(channel, bearer(&self.admin_token)?);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let sinks = client
                .get_sink_status(GetSinkStatusRequest {})
                .await?
                .into_inner()
                .sinks;
            let done = sinks
                .iter()
                .all(|s| s.queue_depth == 0 && s.delivered + s.dead_lettered >= expected);
            if done || tokio::time::Instant::now() >= deadline {
                return Ok(sinks);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// After [`Pipeline::wait_delivered`]: waits until correlation's findings on the delivered
    /// events went through enrichment into every sink (some finding is in `canonical` and every
    /// queue is empty with the same count delivered), or `timeout` passes.
    pub(crate) async fn wait_findings(
        &self,
        expected: u64,
        canonical: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<Vec<SinkStatus>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let sinks = self.wait_delivered(expected, Duration::ZERO).await?;
            let settled = sinks
                .windows(2)
                .all(|w| w[0].delivered + w[0].dead_lettered == w[1].delivered + w[1].dead_lettered);
            let found = std::fs::read_to_string(canonical)
                .map(|t| t.contains(attackmesh::CORRELATION_DETECTOR))
                .unwrap_or(false);
            if (found && settled) || tokio::time::Instant::now() >= deadline {
                return Ok(sinks);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the services one by one, detectors' side first (sinks drain within
    /// `siem_export.drain_grace`).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for (service, stop, task) in self.running.into_iter().rev() {
            stop.cancel();
            let outcome = match task.await {
                Ok(outcome) => outcome.with_context(|| format!("{service:?} stopped with an error")),
                Err(e) => Err(e).with_context(|| format!("{service:?} panicked")),
            };
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Waits until the gRPC health service at `addr` reports SERVING (a few seconds at most).
async fn wait_serving(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let channel = connect(addr).await?;
    let mut health = HealthClient::with_interceptor(channel, bearer(token)?);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = health
            .check(HealthCheckRequest { service: String::new() })
            .await
            .map(|r| r.into_inner().status);
        match status {
            Ok(s) if s == ServingStatus::Serving as i32 => return Ok(()),
            _ if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("not serving after 15 s ({status:?})")
            }
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

fn file_sink(name: Option<&str>, path: PathBuf, shape: FileShape) -> FileSinkConfig {
    FileSinkConfig {
        name: name.map(str::to_owned),
        path: Some(path),
        shape,
        ..Default::default()
    }
}

fn bearer(token: &str) -> anyhow::Result<BearerToken> {
    Ok(BearerToken::fixed(token)?)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub(crate) fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}
