//! Test harness: attribution, enrichment and siem-export (file sink) as real gRPC services on
//! 127.0.0.1, each in its own runtime on its own thread so a test can kill one the way a crash
//! would (every task and socket of it gone at once) and start it again on the same port.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use attackmesh::proto::{IngestRequest, IngestResponse, ingest_service_client::IngestServiceClient};
use attackmesh_enrichment::EnrichmentConfig;
use attackmesh_runtime::{auth::Role, config::RuntimeConfig};
use attackmesh_testkit::{Tokens, channel, tokens::server, wait_serving, with_token};
use tokio::net::TcpListener;
use tonic::transport::Channel;

mod sink;
mod stub_attribution;
mod stub_export;
#[allow(unused_imports)]
pub use sink::*;
#[allow(unused_imports)]
pub use stub_attribution::start_stub_attribution;
#[allow(unused_imports)]
pub use stub_export::{Captured, CapturingExport, start_capturing_export};

/// Tokens of the callers of [`tokens`] (testkit's `<name>-token`).
pub const DETECTOR_TOKEN: &str = "det-token";
pub const LIMITED_TOKEN: &str = "limited-token";
pub const ANALYST_TOKEN: &str = "ana-token";
pub const ADMIN_TOKEN: &str = "adm-token";

/// Every service's callers: a detector, a rate-limited detector, an analyst and an admin (the
/// identity enrichment uses to call attribution and export).
pub fn tokens() -> Tokens {
    Tokens::new(&[
        ("det", Role::Detector),
        ("limited", Role::Detector),
        ("ana", Role::Analyst),
        ("adm", Role::Admin),
    ])
}

/// Every service's runtime config: [`tokens`] and a 2 s shutdown grace.
pub fn runtime() -> RuntimeConfig {
    tokens().runtime()
}

/// A service running in a runtime of its own.
pub struct Proc {
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
    kill: Option<tokio::sync::oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Binds `addr` (port 0 for any) and runs `serve(listener, http_listener, shutdown)`.
    fn start<F, Fut>(addr: SocketAddr, with_http: bool, serve: F) -> Self
    where
        F: FnOnce(TcpListener, Option<TcpListener>, tokio::sync::oneshot::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill, killed) = tokio::sync::oneshot::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = bind(addr).await;
                let http = if with_http {
                    Some(attackmesh_testkit::bind().await.0)
                } else {
                    None
                };
                ready_tx
                    .send((
                        listener.local_addr().unwrap(),
                        http.as_ref().map(|l| l.local_addr().unwrap()),
                    ))
                    .unwrap();
                serve(listener, http, killed).await;
            });
            // Dropping the runtime ends every task and closes every socket, like a crash.
            rt.shutdown_background();
        });
        let (addr, http) = ready_rx.recv().unwrap();
        Self {
            addr,
            http,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Ends the service abruptly: no drain, no flush.
    pub fn kill(mut self) -> SocketAddr {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(true);
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.addr
    }

    /// Stops the service gracefully (drain within its grace period).
    pub fn stop(mut self) -> SocketAddr {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(false);
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.addr
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(true);
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    // A restarted service takes its old port back; the old socket may need a moment to go.
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("cannot bind {addr}");
}

/// Runs `serve` until killed (abrupt) or stopped (graceful shutdown future resolves).
async fn until_killed<Fut>(
    killed: tokio::sync::oneshot::Receiver<bool>,
    serve: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
) where
    Fut: Future<Output = ()>,
{
    let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel();
    let serving = serve(graceful_rx);
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => {}
        abrupt = killed => {
            if abrupt.unwrap_or(true) {
                return;
            }
            let _ = graceful_tx.send(());
            serving.await;
        }
    }
}

pub fn start_attribution(addr: SocketAddr) -> Proc {
    start_attribution_with(addr, runtime())
}

pub fn start_attribution_with(addr: SocketAddr, runtime: RuntimeConfig) -> Proc {
    Proc::start(addr, false, move |listener, _, killed| async move {
        let server = server(&runtime).await;
        until_killed(killed, |graceful| async move {
            let config = attackmesh_attribution::AttributionConfig::default();
            attackmesh_attribution::server::serve(&config, server, listener, async {
                let _ = graceful.await;
            })
            .await
            .unwrap();
        })
        .await;
    })
}

pub fn export_config(dir: &Path) -> attackmesh_siem_export::config::SiemExportConfig {
    let mut config = attackmesh_siem_export::config::SiemExportConfig {
        data_dir: dir.join("export"),
        ..Default::default()
    };
    config.file.path = Some(sink_path(dir));
    config
}

pub fn sink_path(dir: &Path) -> PathBuf {
    dir.join("sink").join("events.ndjson")
}

pub fn start_export(addr: SocketAddr, dir: &Path) -> Proc {
    start_export_with(addr, dir, runtime())
}

pub fn start_export_with(addr: SocketAddr, dir: &Path, runtime: RuntimeConfig) -> Proc {
    let config = export_config(dir);
    Proc::start(addr, false, move |listener, _, killed| async move {
        let server = server(&runtime).await;
        until_killed(killed, |graceful| async move {
            attackmesh_siem_export::server::serve(&config, server, listener, async {
                let _ = graceful.await;
            })
            .await
            .unwrap();
        })
        .await;
    })
}

/// Enrichment config pointing at `attribution` and `export`, with its data under `dir`.
pub fn enrichment_config(dir: &Path, attribution: SocketAddr, export: SocketAddr) -> EnrichmentConfig {
    let token_file = dir.join("enrichment.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let mut config = EnrichmentConfig {
        data_dir: dir.join("enrichment"),
        ..Default::default()
    };
    config.attribution.peer.endpoints = vec![format!("http://{attribution}")];
    config.attribution.peer.token_file = Some(token_file.clone());
    config.attribution.give_up_after = Duration::from_millis(500);
    config.attribution.peer.connect_timeout = Duration::from_millis(500);
    config.export.peer.endpoints = vec![format!("http://{export}")];
    config.export.peer.token_file = Some(token_file);
    config.export.give_up_after = Duration::from_secs(2);
    config.rate_limits.detectors.insert(
        "limited".into(),
        attackmesh_enrichment::config::RateLimit {
            events_per_second: 1.0,
            burst: 5.0,
        },
    );
    config
}

pub fn start_enrichment(addr: SocketAddr, config: EnrichmentConfig) -> Proc {
    start_enrichment_with(addr, config, runtime())
}

pub fn start_enrichment_with(addr: SocketAddr, config: EnrichmentConfig, runtime: RuntimeConfig) -> Proc {
    Proc::start(addr, true, move |listener, http, killed| async move {
        let server = server(&runtime).await;
        until_killed(killed, |graceful| async move {
            attackmesh_enrichment::server::serve(&config, server, listener, http, async {
                let _ = graceful.await;
            })
            .await
            .unwrap();
        })
        .await;
    })
}

/// The three services with a file sink, all on fresh ports.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub attribution: Option<Proc>,
    pub export: Option<Proc>,
    pub enrichment: Proc,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut EnrichmentConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let attribution = start_attribution(any);
        let export = start_export(any, dir.path());
        // Enrichment degrades batches while attribution is still loading; tests that want
        // attributed events start it once attribution answers.
        wait_serving(attribution.addr).await;
        let mut config = enrichment_config(dir.path(), attribution.addr, export.addr);
        adjust(&mut config);
        let enrichment = start_enrichment(any, config);
        let cluster = Self {
            dir,
            attribution: Some(attribution),
            export: Some(export),
            enrichment,
        };
        wait_serving(cluster.attribution.as_ref().unwrap().addr).await;
        wait_serving(cluster.enrichment.addr).await;
        cluster
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.enrichment.addr)
    }

    pub fn sink(&self) -> PathBuf {
        sink_path(self.dir.path())
    }

    pub fn ingest_client(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(channel(self.enrichment.addr))
    }
}

/// Sends `batches` on one stream and returns the answers.
pub async fn ingest(
    client: &mut IngestServiceClient<Channel>,
    token: &str,
    batches: Vec<IngestRequest>,
) -> Result<Vec<IngestResponse>, tonic::Status> {
    let count = batches.len();
    let mut answers = client
        .ingest(with_token(tokio_stream::iter(batches), token))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < count {
        match answers.message().await? {
            Some(answer) => out.push(answer),
            None => break,
        }
    }
    Ok(out)
}

/// `attackmesh_<name>` from the process's metrics.
pub fn metric(name: &str) -> f64 {
    let text = attackmesh_runtime::metrics::render();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("attackmesh_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A minimal HTTP/1.1 POST; returns the status, the headers (lower-cased names) and the body.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, HashMap<String, String>, String) {
    let (status, headers, body) = http_post_bytes(addr, path, headers, body).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// [`http_post`] with the body as bytes (protobuf answers).
pub async fn http_post_bytes(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}
