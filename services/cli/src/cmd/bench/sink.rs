//! The far end of the benchmark: a minimal Splunk HEC receiver for `--sink http`, and the check
//! that the sink really holds what was acknowledged (distinct event ids in the file sink's NDJSON
//! and in the events posted to the receiver: an event attributed late arrives again as a higher
//! revision, which is the same event delivered, not another one).

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
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
    received: Received,
    stop: CancellationToken,
}

/// Event ids the receiver has seen.
type Received = Arc<Mutex<HashSet<u64>>>;

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
        let received = Received::default();
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

    /// Distinct events received so far.
    pub(super) fn received(&self) -> u64 {
        self.received.lock().map_or(0, |ids| ids.len() as u64)
    }
}

async fn collect(State(received): State<Received>, body: Bytes) -> Json<Value> {
    if let Ok(mut ids) = received.lock() {
        event_ids(&body, &mut ids);
    }
    Json(json!({"text": "Success", "code": 0}))
}

/// Adds every `"event_id":"…"` value in `bytes` to `ids`, as a 64-bit hash (a soak's millions of
/// ids then take a few bytes each; a collision among them is a one-in-a-trillion event). Scans
/// without parsing: the receiver stands in for a SIEM and should cost the benchmark next to
/// nothing. Event ids carry no characters JSON escapes, so a value ends at the next quote.
fn event_ids(bytes: &[u8], ids: &mut HashSet<u64>) {
    const KEY: &[u8] = b"\"event_id\":\"";
    let mut rest = bytes;
    while let Some(at) = find(rest, KEY) {
        rest = &rest[at + KEY.len()..];
        let Some(end) = rest.iter().position(|&b| b == b'"') else {
            break;
        };
        ids.insert(hash(&rest[..end]));
        rest = &rest[end..];
    }
}

/// The 64-bit hash an id is counted by.
fn hash(id: impl AsRef<[u8]>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hasher::write(&mut hasher, id.as_ref());
    std::hash::Hasher::finish(&hasher)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Distinct events in every file under `dir` (the file sink's file and any rotated beside it),
/// each line's id found at the JSON pointer `id_at`; read a line at a time: a soak's file holds
/// gigabytes. A line without an id is an error: the sink wrote something that is not an event.
pub(super) fn count_events(dir: &Path, id_at: &str) -> anyhow::Result<u64> {
    use std::io::BufRead as _;
    let mut ids = HashSet::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
                let line = line?;
                let id = serde_json::from_slice::<Value>(&line)
                    .ok()
                    .and_then(|v| v.pointer(id_at).and_then(Value::as_str).map(hash))
                    .with_context(|| format!("{} line {}: no event id at {id_at}", path.display(), n + 1))?;
                ids.insert(id);
            }
        }
    }
    Ok(ids.len() as u64)
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_event_once_whatever_its_revisions_and_copies() {
        let body = br#"{"event":{"event_id":"a","revision":1},"fields":{"event_id":"a"}}{"event":{"event_id":"b"}}
{"event":{"event_id":"a","revision":2}}{"event":{"description":"no id"}}"#;
        let mut ids = HashSet::new();
        event_ids(body, &mut ids);
        assert_eq!(ids.len(), 2);
        event_ids(b"", &mut ids);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn counts_distinct_events_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("events.ndjson"),
            "{\"event_id\":\"x\",\"revision\":2}\n{\"event_id\":\"y\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("events.1.ndjson"),
            "{\"event_id\":\"x\",\"revision\":1}\n",
        )
        .unwrap();
        assert_eq!(count_events(dir.path(), "/event_id").unwrap(), 2);
        std::fs::write(dir.path().join("events.2.ndjson"), "{\"event\":{\"id\":\"x\"}}\n").unwrap();
        let error = count_events(dir.path(), "/event_id").unwrap_err();
        assert!(
            format!("{error:#}").contains("events.2.ndjson line 1: no event id at /event_id"),
            "{error:#}"
        );
    }
}
