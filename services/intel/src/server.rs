//! Wiring: opens the store, builds the attributor (attribution service or embedded engine),
//! registers `IntelService` on a runtime [`GrpcServer`], serves TAXII 2.1 and the live matrix
//! page on its own HTTP listener with the same tokens, starts the push tasks, and stops all of
//! them on shutdown.
//!
//! gRPC health follows the database: a probe every `db_probe_interval` turns it NOT_SERVING
//! while the store cannot be reached or written, and SERVING again when it can.

use std::{future::Future, sync::Arc};

use attackmesh::proto::intel_service_server::IntelServiceServer;
use attackmesh_attack::{Engine, Kb, RulePack};
use attackmesh_runtime::server::{GrpcServer, Health};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    attribution::Attributor,
    config::IntelConfig,
    error::Error,
    ingest::Intel,
    push::Pusher,
    service::{IntelApi, grpc_service},
    store::Store,
    taxii::{TaxiiState, router},
    ui::UiState,
};

/// Loads the knowledge base `config` names (or the embedded one) off the async threads.
pub async fn load_kb(config: &IntelConfig) -> Result<Arc<Kb>, Error> {
    let path = config.kb_path.clone();
    tokio::task::spawn_blocking(move || Kb::open(path.as_deref()))
        .await
        .map_err(|e| Error::Storage(format!("knowledge base task: {e}")))?
        .map_err(Error::from)
}

/// The attributor `config` asks for.
pub async fn attributor(config: &IntelConfig, kb: Arc<Kb>) -> Result<Attributor, Error> {
    match config.attribution.has_endpoints() {
        true => {
            let backoff = config
                .attribution
                .backoff_or(crate::config::DEFAULT_ATTRIBUTION_BACKOFF);
            Attributor::remote(&config.attribution, config.attribution_timeout(), backoff, kb).await
        }
        false => {
            let engine = tokio::task::spawn_blocking(move || Engine::new(kb, RulePack::embedded()?))
                .await
                .map_err(|e| Error::Storage(format!("attribution engine task: {e}")))??;
            Ok(Attributor::Embedded(Arc::new(engine)))
        }
    }
}

/// Longest a database probe may take before the database counts as unreachable.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Probes the store every `every` and mirrors the outcome in gRPC health until `stop`.
async fn watch_db(store: Store, health: Health, every: std::time::Duration, stop: CancellationToken) {
    let mut up = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await {
            Ok(result) => result,
            Err(_) => Err(Error::StorageUnavailable(format!("no answer within {PROBE_TIMEOUT:?}"))),
        };
        match (outcome, up) {
            (Ok(()), false) => {
                tracing::info!("database reachable again; serving");
                health.serving::<IntelServiceServer<IntelApi>>().await;
                up = true;
            }
            (Err(e), true) => {
                tracing::error!(error = %e, "database unusable; not serving until it is back");
                health.not_serving::<IntelServiceServer<IntelApi>>().await;
                up = false;
            }
            _ => {}
        }
    }
}

/// Serves gRPC on `listener` and TAXII on `http_listener` until `shutdown` completes.
pub async fn serve(
    config: &IntelConfig,
    server: GrpcServer,
    listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    config.validate()?;
    crate::metrics::register();
    let kb = load_kb(config).await?;
    let intel = Intel::open(config, kb.clone()).await?;
    let attributor = attributor(config, kb.clone()).await?;
    tracing::info!(
        attack_version = kb.attack_version(),
        collections = config.collections().len(),
        push_targets = config.push.len(),
        remote_attribution = config.attribution.has_endpoints(),
        "intel service ready"
    );
    let stop = CancellationToken::new();
    let taxii = TaxiiState::new(config, intel.clone(), server.authenticator());
    let ui = UiState::new(config, intel.clone(), server.authenticator());
    let http_options = server.http_options();
    let http = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let result = attackmesh_runtime::http::serve(
                http_listener,
                crate::ui::router(ui).merge(router(taxii)),
                http_options,
                stop.clone().cancelled_owned(),
            )
            .await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "taxii listener failed");
            }
            stop.cancel();
            result
        })
    };
    let mut pushers = tokio::task::JoinSet::new();
    for target in &config.push {
        let collection = target
            .collection
            .clone()
            .unwrap_or_else(|| config.default_collection_id());
        let pusher = Pusher::new(target.clone(), collection, intel.store().clone())?;
        pushers.spawn(pusher.run(stop.clone()));
    }
    let store = intel.store().clone();
    let api = IntelApi::new(intel, attributor, config.collections());
    let server = server.add_service(grpc_service(api)).await;
    server.health().serving::<IntelServiceServer<IntelApi>>().await;
    pushers.spawn(watch_db(store, server.health(), config.db_probe_interval, stop.clone()));
    let grpc_stop = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
            }
            stop.cancel();
        }
    };
    let result = server.serve(listener, grpc_stop).await;
    stop.cancel();
    while pushers.join_next().await.is_some() {}
    let http_result = http.await.map_err(|e| Error::Storage(format!("taxii task: {e}")))?;
    result?;
    http_result?;
    Ok(())
}
