//! Wiring: builds the engine from the config, opens the replica's state, registers
//! `CorrelationService` on a runtime [`GrpcServer`], starts the delivery of findings to
//! enrichment and of campaign alerts to siem-export, and stops them on shutdown.

use std::{future::Future, sync::Arc};

use attackmesh::proto::correlation_service_server::CorrelationServiceServer;
use attackmesh_attack::Kb;
use attackmesh_runtime::server::GrpcServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    campaigns::Campaigns,
    config::CorrelationConfig,
    error::Error,
    outbox::Route,
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
    if config.build_campaigns && !config.campaigns_on() {
        tracing::warn!("export.endpoints is not set: campaigns are not built (campaign alerts go to siem-export)");
    }
    let replica = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let campaigns = match config.campaigns_on() {
                true => {
                    let kb = Kb::open(config.kb_path.as_deref()).map_err(|e| Error::Config(format!("kb_path: {e}")))?;
                    Some(Campaigns::new(kb, config.campaigns.clone())?)
                }
                false => None,
            };
            Replica::open_with(config.engine()?, campaigns, Store::new(&config.data_dir))
        })
        .await
        .map_err(|e| Error::Config(format!("state task: {e}")))??
    };
    let replica = Arc::new(replica);
    let stop = CancellationToken::new();
    let alerts = config.campaigns_on().then(|| {
        tokio::spawn(crate::outbox::run(
            Route::CampaignAlerts,
            replica.clone(),
            config.export.clone(),
            stop.clone(),
        ))
    });
    let outbox = tokio::spawn(crate::outbox::run(
        Route::Findings,
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
    if let Some(alerts) = alerts {
        let _ = alerts.await;
    }
    result?;
    Ok(())
}
