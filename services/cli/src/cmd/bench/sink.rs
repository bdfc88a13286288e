//! The far end of the benchmark: a minimal Splunk HEC receiver for `--sink http`, and the check
//! that the sink really holds what was acknowledged (NDJSON lines of the file sink, events
//! posted to the receiver).

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use attackmesh::proto::{GetSinkStatusRequest, export_service_client::ExportServiceClient};
use axum::{Json, Router, body::Bytes, extract::State, routing::post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::{Request, transport::Channel};

/// How long sinks may take to deliver what was queued once the driver is done.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// A Splunk HEC endpoint that accepts every event and counts it; stops when dropped.
pub(super) struct HecReceiver {
    /// Base URL for `siem_export.splunk_hec.url`.
    pub(super) url: String,
    received: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for HecReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl HecReceiver {
    /// Listens on a free loopback port.
    pub(super) async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let router = Router::new()
            .route("/services/collector/event", post(collect))
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(received.clone());
        let stop = CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(until).await {
                tracing::warn!(%error, "hec receiver stopped");
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            received,
            stop,
        })
    }

    /// Events received so far.
    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

async fn collect(State(received): State<Arc<AtomicU64>>, body: Bytes) -> Json<Value> {
    received.fetch_add(count_objects(&body), Ordering::Relaxed);
    Json(json!({"text": "Success", "code": 0}))
}

/// Top-level JSON objects in a HEC body (envelopes are concatenated, with or without
/// whitespace between them). Counts without parsing: the receiver stands in for a SIEM and
/// should cost the benchmark next to nothing.
fn count_objects(body: &[u8]) -> u64 {
    let (mut depth, mut in_string, mut escaped, mut objects) = (0u32, false, false, 0u64);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 && b == b'}' {
                    objects += 1;
                }
            }
            _ => {}
        }
    }
    objects
}

/// Lines in every file under `dir` (the file sink's file and any rotated beside it).
pub(super) fn count_lines(dir: &Path) -> anyhow::Result<u64> {
    let mut lines = 0u64;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            // Read in chunks: a soak's file holds gigabytes.
            let mut file = std::fs::File::open(&path)?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = std::io::Read::read(&mut file, &mut chunk)?;
                if n == 0 {
                    break;
                }
                lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
    }
    Ok(lines)
}

/// Waits until siem-export on `addr` reports at least `events` delivered and nothing queued.
pub(super) async fn wait_delivered(addr: SocketAddr, token: &str, events: u64) -> anyhow::Result<()> {
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut client = ExportServiceClient::new(channel);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let mut request = Request::new(GetSinkStatusRequest {});
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let sinks = client
            .get_sink_status(request)
            .await
            .context("sink status")?
            .into_inner()
            .sinks;
        let delivered: u64 = sinks.iter().map(|s| s.delivered).sum();
        let queued: u64 = sinks.iter().map(|s| s.queue_depth).sum();
        if delivered >= events && queued == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("sinks delivered {delivered} of {events} events within {DELIVERY_TIMEOUT:?} ({queued} queued)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_concatenated_envelopes_whatever_their_strings_hold() {
        let body = br#"{"event":{"a":"}{\"x"},"fields":{"b":[1,{}]}}{"event":{}}
{"event":"\\"}"#;
        assert_eq!(count_objects(body), 3);
        assert_eq!(count_objects(b""), 0);
    }
}
