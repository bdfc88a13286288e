//! Wiring: builds the engine from config, registers the service on a runtime [`GrpcServer`],
//! reports SERVING once the knowledge base and rule packs are loaded, watches the rules
//! directory, and serves until shutdown.

use std::future::Future;

use attackmesh_runtime::server::GrpcServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::AttributionConfig,
    error::Error,
    service::{AttributionServer, AttributionState, grpc_service, watch_rules},
};

/// Serves the attribution service on `listener` until `shutdown` completes.
pub async fn serve(
    config: &AttributionConfig,
    server: GrpcServer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let build = config.clone();
    let engine = tokio::task::spawn_blocking(move || build.build_engine())
        .await
        .map_err(|e| Error::Internal(format!("engine build task failed: {e}")))??;
    tracing::info!(
        attack_version = engine.kb().attack_version(),
        rule_pack_version = engine.rule_pack_version(),
        rules = engine.rules().len(),
        "attribution engine ready"
    );
    crate::metrics::rules_loaded(engine.rules().len());
    let state = AttributionState::new(engine, config);
    let stop_watch = CancellationToken::new();
    if let Some(dir) = config.rules_dir.clone() {
        tokio::spawn(watch_rules(
            dir,
            config.reload_interval,
            state.engine.clone(),
            stop_watch.clone().cancelled_owned(),
        ));
    }
    let server = server.add_service(grpc_service(state)).await;
    server.health().serving::<AttributionServer>().await;
    let result = server.serve(listener, shutdown).await;
    stop_watch.cancel();
    result.map_err(Error::from)
}
