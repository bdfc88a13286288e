//! Wiring: builds the links to attribution and export, the re-attribution worker and the
//! pipeline, registers `IngestService` and OpenTelemetry's `LogsService` on a runtime
//! [`GrpcServer`] (with the Falco and OTLP/HTTP endpoints beside it when a listener is given), and
//! serves until shutdown.
//!
//! Health follows export: SERVING while a stream to export is open (detectors' batches can be
//! made durable), NOT_SERVING otherwise. Attribution being down does not make the service
//! unhealthy: events flow on DEGRADED. On shutdown, streams stop taking batches, answer the
//! ones they hold, and end with UNAVAILABLE; only then are the upstream links closed.

use std::{future::Future, sync::Arc};

use attackmesh::formats::otlp::proto::collector::logs_service_server::LogsServiceServer;
use attackmesh_attack::Kb;
use attackmesh_runtime::server::{GrpcServer, Health};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::{
    attribute::{AttributeRpc, Attributor},
    config::EnrichmentConfig,
    error::Error,
    export::{ExportRpc, Exporter},
    http,
    otlp::LogsApi,
    pipeline::Pipeline,
    reattribute::{self, ReattributeLog},
    service::{IngestServer, IngestState, grpc_service},
    upstream::{Upstream, link::Link},
};

/// Serves the enrichment service on `listener` (and Falco's HTTP output on `http_listener`)
/// until `shutdown` completes.
pub async fn serve(
    config: &EnrichmentConfig,
    server: GrpcServer,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    config.validate()?;
    crate::metrics::register();
    let links = CancellationToken::new();
    let draining = CancellationToken::new();
    let kb = load_kb(config).await?;

    let upstream = Upstream::start("attribution", &config.attribution, config.dns_refresh).await?;
    let link = Link::start(
        AttributeRpc::compact_for(&kb),
        upstream,
        &config.attribution,
        links.clone(),
    );
    let attack_version = kb.attack_version().to_owned();
    let attributor = Arc::new(Attributor::new(link, kb, config.attribution.max_batch));
    let upstream = Upstream::start("export", &config.export, config.dns_refresh).await?;
    let exporter = Arc::new(Exporter::new(
        Link::start(ExportRpc, upstream, &config.export, links.clone()),
        config.export.max_batch,
        attack_version,
    ));

    let log = if config.reattribute.enabled {
        let dir = config.data_dir.join("reattribute");
        let log = ReattributeLog::open(&dir, config.reattribute.max_bytes)?;
        tokio::spawn(reattribute::run(
            log.clone(),
            attributor.clone(),
            exporter.clone(),
            links.clone(),
        ));
        Some(log)
    } else {
        None
    };
    let pipeline = Pipeline::new(config, attributor, exporter.clone(), log);
    let state = Arc::new(IngestState::new(pipeline, config.ingest.clone(), draining.clone()));

    let auth = server.authenticator();
    let http_options = server.http_options();
    let server = server
        .add_service(grpc_service(state.clone()))
        .await
        .add_service(crate::otlp::logs_service(state.clone()))
        .await;
    tokio::spawn(follow_export(server.health(), exporter.watch(), draining.clone()));
    let http = http_listener.map(|l| {
        let router = http::router(state.clone(), auth, config.max_body_bytes);
        let stop = draining.clone().cancelled_owned();
        tokio::spawn(async move { attackmesh_runtime::http::serve(l, router, http_options, stop).await })
    });

    let drain = draining.clone();
    let result = server
        .serve(listener, async move {
            shutdown.await;
            drain.cancel();
        })
        .await;
    draining.cancel();
    if let Some(http) = http {
        match http.await {
            Ok(Err(error)) => tracing::warn!(%error, "falco http listener failed"),
            Err(error) => tracing::warn!(%error, "falco http listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    links.cancel();
    result.map_err(Error::from)
}

async fn load_kb(config: &EnrichmentConfig) -> Result<Arc<Kb>, Error> {
    let path = config.kb_path.clone();
    tokio::task::spawn_blocking(move || Kb::open(path.as_deref()))
        .await
        .map_err(|e| Error::Rpc(format!("knowledge base task failed: {e}")))?
        .map_err(Error::from)
}

/// Reports SERVING while export is reachable, until draining starts.
async fn follow_export(health: Health, mut up: watch::Receiver<bool>, draining: CancellationToken) {
    let mut was_serving = false;
    loop {
        let serving = *up.borrow_and_update();
        if draining.is_cancelled() {
            return;
        }
        if serving {
            tracing::info!("export reachable; serving");
            health.serving::<IngestServer>().await;
            health.serving::<LogsServiceServer<LogsApi>>().await;
        } else {
            // Before the first connection this is start-up, not an outage.
            if was_serving {
                tracing::warn!("export unreachable; not serving");
            } else {
                tracing::info!("waiting for export; not serving yet");
            }
            health.not_serving::<IngestServer>().await;
            health.not_serving::<LogsServiceServer<LogsApi>>().await;
        }
        was_serving = serving;
        tokio::select! {
            changed = up.changed() => if changed.is_err() { return },
            () = draining.cancelled() => return,
        }
    }
}
