//! Shared harness of the integration tests: sinks with their drivers running in the
//! background, fed through the same `ExportState` the gRPC service uses.

#![allow(dead_code, unreachable_pub)]

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use attackmesh_siem_export::{SiemExportConfig, dlq, server::open_sinks, service::ExportState, status::SinkHandle};
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub state: ExportState,
    pub stop: CancellationToken,
    pub tasks: tokio::task::JoinSet<()>,
}

impl Harness {
    pub async fn start(config: &SiemExportConfig) -> Harness {
        let sinks = open_sinks(config).await.expect("sinks open");
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for d in sinks.drivers {
            tasks.spawn(d.run(stop.clone(), Duration::from_secs(2)));
        }
        Harness {
            state: ExportState::new(sinks.handles, Duration::from_millis(500)),
            stop,
            tasks,
        }
    }

    pub fn sink(&self, name: &str) -> &SinkHandle {
        self.state.sinks().iter().find(|s| s.name == name).expect("sink")
    }

    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A configuration with fast retries for tests.
pub fn config(data_dir: &Path) -> SiemExportConfig {
    let mut c = SiemExportConfig {
        data_dir: data_dir.to_owned(),
        ..Default::default()
    };
    c.retry.initial_backoff = Duration::from_millis(10);
    c.retry.max_backoff = Duration::from_millis(100);
    c.retry.request_timeout = Duration::from_secs(5);
    c.batch.max_age = Duration::from_millis(20);
    c
}

/// Waits until `cond` holds, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Dead letters of `sink`.
pub fn dead_letters(data_dir: &Path, sink: &str) -> Vec<dlq::Listed> {
    dlq::list(data_dir, &[sink.to_owned()], Some(sink))
        .expect("dlq list")
        .entries
}

/// The events of a queue directory, read from a copy of it as a process started after a crash
/// reads them (damaged regions left out).
pub fn recovered(queue_dir: &Path) -> Vec<Arc<attackmesh_siem_export::sinks::QueuedEvent>> {
    use attackmesh_siem_export::queue::{Queue, QueueSettings, ReadItem};
    let copy = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(queue_dir).expect("queue directory") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, copy.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let settings = QueueSettings {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 26,
        fsync: Default::default(),
    };
    let (q, _) = Queue::open("copy", copy.path(), settings).expect("queue open");
    let mut reader = q.reader().expect("reader");
    let items = reader.read_available(100_000, usize::MAX).expect("read");
    items
        .into_iter()
        .filter_map(|i| match i {
            ReadItem::Event(e) => Some(e),
            ReadItem::Damaged { .. } => None,
        })
        .collect()
}

/// Sends Export batches on one stream as the admin `adm-token` and collects the answers, one
/// per batch.
pub async fn export(
    channel: &tonic::transport::Channel,
    batches: Vec<attackmesh::proto::ExportRequest>,
) -> Vec<attackmesh::proto::ExportResponse> {
    use tokio_stream::StreamExt;
    let n = batches.len();
    let mut client = attackmesh::proto::export_service_client::ExportServiceClient::new(channel.clone());
    let mut answers = client
        .export(attackmesh_testkit::with_token(tokio_stream::iter(batches), "adm-token"))
        .await
        .expect("export stream")
        .into_inner();
    let mut out = Vec::new();
    while let Some(a) = answers.next().await {
        out.push(a.expect("answer"));
    }
    assert_eq!(out.len(), n);
    out
}
