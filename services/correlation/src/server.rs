//! Wiring: builds the engine from the config, opens the replica's state, registers
//! `CorrelationService` on a runtime [`GrpcServer`], starts the delivery of findings to
//! enrichment, and stops both on shutdown.

use std::{future::Future, sync::Arc};

use attackmesh::proto::correlation_service_server::CorrelationServiceServer;
use attackmesh_runtime::server::GrpcServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::CorrelationConfig,
    error::Error,
    service::{CorrelationApi, Replica, grpc_service},
    store::Store,
};

/// Serves gRPC on `listener` until `shutdown` completes.
pub async fn serve(
    config: &CorrelationConfig,
    server: GrpcServer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    config.validate()?;
    if !config.enrichment.has_endpoints() {
        return Err(Error::Config(
            "enrichment.endpoints must be set: findings go to enrichment's Ingest".into(),
        ));
    }
    crate::metrics::register();
    let replica = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Replica::open(config.engine()?, Store::new(&config.data_dir)))
            .await
            .map_err(|e| Error::Config(format!("state task: {e}")))??
    };
    let replica = Arc::new(replica);
    let stop = CancellationToken::new();
    let outbox = tokio::spawn(crate::outbox::run(
        replica.clone(),
        config.enrichment.clone(),
        stop.clone(),
    ));
    let server = server.add_service(grpc_service(CorrelationApi::new(replica))).await;
    server
        .health()
        .serving::<CorrelationServiceServer<CorrelationApi>>()
        .await;
    tracing::info!(data_dir = %config.data_dir.display(), "correlation service ready");
    let result = server.serve(listener, shutdown).await;
    stop.cancel();
    let _ = outbox.await;
    result?;
    Ok(())
}
