//! Wiring: opens every configured sink's queue and dead-letter directory, starts one driver
//! per sink in the background, loads the knowledge base technique ids are checked against,
//! registers the Export service on a runtime [`GrpcServer`],
//! reports SERVING once the queues are open (NOT_SERVING while their disk is full, see
//! [`crate::disk`]; never for a sink outage, which the queues absorb), and on shutdown stops accepting, lets the sinks
//! deliver what they can within `drain_grace`, and leaves the rest queued on disk.

use std::{future::Future, sync::Arc};

use attackmesh_attack::Kb;
use attackmesh_runtime::server::{GrpcServer, Health};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    config::SiemExportConfig,
    disk::DiskState,
    dlq::DeadLetterQueue,
    driver::Driver,
    error::Error,
    queue::{Queue, QueueSettings},
    service::{ExportServer, ExportState, grpc_service},
    status::{SinkHandle, SinkStats},
};

/// The sinks of a configuration with their queues open and drivers not yet started.
pub struct Sinks {
    /// One handle per sink (for the service and status).
    pub handles: Vec<SinkHandle>,
    /// One driver per sink.
    pub drivers: Vec<Driver>,
    /// The knowledge base (`kb_path`, else the embedded one) that compact events are filled in
    /// and written from.
    pub kb: Arc<Kb>,
    /// Whether every sink writes compact events itself.
    pub all_write_compact: bool,
}

/// Opens queues (recovering them), dead-letter directories and sink clients.
pub async fn open_sinks(config: &SiemExportConfig) -> Result<Sinks, Error> {
    config.validate()?;
    let kb = load_kb(config).await?;
    let settings = QueueSettings {
        max_bytes: config.queue.max_bytes,
        segment_bytes: config.queue.segment_bytes,
        fsync: config.queue.fsync,
    };
    let mut handles = Vec::new();
    let mut drivers = Vec::new();
    for spec in config.sinks() {
        let name = crate::sinks::static_name(spec.name());
        let sink = spec.build(&config.data_dir, &kb)?;
        let dir = config.data_dir.join("queues").join(name);
        let data_dir = config.data_dir.clone();
        let (queue, dlq, recovery) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let (queue, recovery) = Queue::open(name, &dir, settings)?;
            let dlq = DeadLetterQueue::open(&data_dir, name)?;
            Ok((queue, dlq, recovery))
        })
        .await
        .map_err(|e| Error::sink(name, format!("queue open task failed: {e}")))??;
        tracing::info!(
            sink = name,
            depth = recovery.depth,
            truncated_bytes = recovery.truncated_bytes,
            "queue open"
        );
        let Some(reader) = queue.reader() else {
            return Err(Error::sink(name, "queue reader already taken"));
        };
        let stats = Arc::new(SinkStats::default());
        handles.push(SinkHandle {
            name,
            kind: spec.kind(),
            queue,
            stats: stats.clone(),
        });
        drivers.push(Driver {
            name,
            sink,
            reader,
            dlq: Arc::new(dlq),
            stats,
            batch: config.batch.clone(),
            retry: spec.retry(&config.retry),
            kb: kb.clone(),
        });
    }
    let all_write_compact = drivers.iter().all(|d| d.sink.writes_compact());
    Ok(Sinks {
        handles,
        drivers,
        kb,
        all_write_compact,
    })
}

/// Serves the siem-export service on `listener` until `shutdown` completes.
pub async fn serve(
    config: &SiemExportConfig,
    server: GrpcServer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    std::sync::LazyLock::force(&crate::metrics::METRICS);
    let sinks = open_sinks(config).await?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for driver in sinks.drivers {
        tasks.spawn(driver.run(stop.clone(), config.drain_grace));
    }
    let names: Vec<&str> = sinks.handles.iter().map(|h| h.name).collect();
    names.iter().for_each(|name| crate::metrics::register_sink(name));
    tracing::info!(sinks = ?names, data_dir = %config.data_dir.display(), "siem export ready");
    let state = ExportState::new(sinks.handles, config.queue.retry_after)
        .with_kb(sinks.kb)
        .with_sinks_writing_compact(sinks.all_write_compact);
    let disk = state.disk().clone();
    let server = server.add_service(grpc_service(state)).await;
    server.health().serving::<ExportServer>().await;
    let probe_every = config.queue.retry_after.max(std::time::Duration::from_millis(100));
    tasks.spawn(
        disk.clone()
            .probe(config.data_dir.join("queues"), probe_every, stop.clone()),
    );
    tasks.spawn(report_disk(disk, server.health(), stop.clone()));
    let result = server.serve(listener, shutdown).await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    result.map_err(Error::from)
}

/// Mirrors the queues' disk state in gRPC health until `stop`.
async fn report_disk(disk: DiskState, health: Health, stop: CancellationToken) {
    let mut changes = disk.subscribe();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        if *changes.borrow_and_update() {
            health.not_serving::<ExportServer>().await;
        } else {
            health.serving::<ExportServer>().await;
        }
    }
}

async fn load_kb(config: &SiemExportConfig) -> Result<Arc<Kb>, Error> {
    let path = config.kb_path.clone();
    tokio::task::spawn_blocking(move || Kb::open(path.as_deref()))
        .await
        .map_err(|e| Error::Config(format!("knowledge base task failed: {e}")))?
        .map_err(|e| Error::Config(format!("kb_path: {e}")))
}
