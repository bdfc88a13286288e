//! End-to-end delivery figures on this machine (run with `cargo bench --bench delivery`):
//!
//! 1. delivered events/s into the file sink, a local Splunk HEC receiver and, when `ES_URL`
//!    points at an Elasticsearch-API server (e.g. noida-db), Elasticsearch (`ES_EVENTS` events,
//!    default 5,000: test servers index far slower than a real cluster);
//! 2. enqueue → sink 2xx latency (p50/p99) at a steady 10,000 events/s into the HEC receiver;
//!    (`ONLY=throughput|latency|outage` runs one part);
//! 3. resident memory while the HEC sink is down and 10,000 events/s keep arriving for
//!    `OUTAGE_SECS` seconds (default 60), and the queue's disk bytes per event.
//!
//! Events go through the same `ExportState::enqueue` the Export RPC uses (validation aside).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use attackmesh_runtime::secret::Secret;
use attackmesh_siem_export::{SiemExportConfig, server::open_sinks, service::ExportState};
use attackmesh_testkit::fixtures;
use axum::{Router, body::Bytes, extract::State, routing::post};
use tokio_util::sync::CancellationToken;

const BATCH: u64 = 500;

struct Running {
    state: ExportState,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

async fn start(config: &SiemExportConfig) -> Running {
    let sinks = open_sinks(config).await.expect("sinks");
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for d in sinks.drivers {
        tasks.spawn(d.run(stop.clone(), Duration::from_secs(1)));
    }
    Running {
        state: ExportState::new(sinks.handles, Duration::from_secs(1)),
        stop,
        tasks,
    }
}

impl Running {
    async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn base_config() -> (tempfile::TempDir, SiemExportConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = SiemExportConfig {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    c.queue.max_bytes = 4 << 30;
    c.retry.max_backoff = Duration::from_millis(500);
    (dir, c)
}

/// A HEC receiver that counts events and records enqueue → receipt latency (from `enriched_at`,
/// which the producer sets at enqueue time).
#[derive(Default)]
struct Hec {
    events: AtomicU64,
    latencies: Mutex<Vec<f64>>,
}

async fn hec_event(State(h): State<Arc<Hec>>, body: Bytes) -> &'static str {
    // A receiver on the same two cores must cost little: find each event's `enriched_at`
    // by scanning, without parsing whole documents.
    let now = chrono::Utc::now();
    let text = String::from_utf8_lossy(&body);
    let key = "\"enriched_at\":\"";
    let mut n = 0;
    let mut lat = Vec::new();
    for (at, _) in text.match_indices(key) {
        n += 1;
        let rest = &text[at + key.len()..];
        if let Some(end) = rest.find('"')
            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(&rest[..end])
        {
            lat.push((now - t.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    h.events.fetch_add(n, Ordering::Relaxed);
    if let Ok(mut l) = h.latencies.lock() {
        l.extend(lat);
    }
    "{\"text\":\"Success\",\"code\":0}"
}

async fn hec_receiver() -> (String, Arc<Hec>) {
    let h = Arc::new(Hec::default());
    let app = Router::new()
        .route("/services/collector/event", post(hec_event))
        .with_state(h.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), h)
}

/// A typical event (the fixture without the detector's original record and with two
/// indicators), stamped with the enqueue time in `enriched_at`.
fn stamped(i: u64) -> attackmesh::proto::EnrichedEvent {
    let mut ev = fixtures::event(i);
    ev.original.clear();
    ev.related_indicators.truncate(2);
    let now = chrono::Utc::now();
    ev.enriched_at = Some(pbjson_types::Timestamp {
        seconds: now.timestamp(),
        nanos: now.timestamp_subsec_nanos() as i32,
    });
    ev
}

/// Enqueues `n` events as fast as possible; returns (enqueue events/s, delivered events/s).
async fn throughput(config: &SiemExportConfig, sink: &str, n: u64) -> (f64, f64) {
    let r = start(config).await;
    let t0 = Instant::now();
    for b in 0..n / BATCH {
        let events = (b * BATCH..(b + 1) * BATCH).map(fixtures::event).collect();
        r.state.enqueue(events, HashMap::new()).await.expect("enqueue");
    }
    let enq = t0.elapsed().as_secs_f64();
    let handle = r.state.sinks().iter().find(|s| s.name == sink).expect("sink").clone();
    while handle.status().delivered < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{sink}: delivery stalled: {:?}",
            handle.status()
        );
    }
    let total = t0.elapsed().as_secs_f64();
    r.shutdown().await;
    (n as f64 / enq, n as f64 / total)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Feeds `rate` events/s for `secs` seconds in 10 ms ticks.
async fn steady(state: &ExportState, rate: u64, secs: u64, mut on_tick: impl FnMut(u64)) -> u64 {
    let per_tick = rate / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut i = 0;
    for t in 0..secs * 100 {
        tick.tick().await;
        let events = (i..i + per_tick).map(stamped).collect();
        state.enqueue(events, HashMap::new()).await.expect("enqueue");
        i += per_tick;
        on_tick(t);
    }
    i
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let only = std::env::var("ONLY").unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        throughput_section(n).await;
    }
    if only.is_empty() || only == "latency" {
        latency_section().await;
    }
    if only.is_empty() || only == "outage" {
        outage_section().await;
    }
}

async fn throughput_section(n: u64) {
    println!(
        "== delivered events/s ({n} events of ~{} bytes, batches of {BATCH})",
        attackmesh::json::to_json(&fixtures::event(0)).len()
    );
    let (_d, mut c) = base_config();
    c.file.path = Some(c.data_dir.join("out.ndjson"));
    c.file.rotate_bytes = 1 << 30;
    let (e, d) = throughput(&c, "file", n).await;
    println!("file sink:        enqueue {e:>9.0} ev/s   delivered {d:>9.0} ev/s");

    let (url, _hec) = hec_receiver().await;
    let (_d, mut c) = base_config();
    c.splunk_hec.url = Some(url.clone());
    c.splunk_hec.token = Some(Secret::new("bench"));
    let (e, d) = throughput(&c, "splunk_hec", n).await;
    println!("splunk_hec sink:  enqueue {e:>9.0} ev/s   delivered {d:>9.0} ev/s");

    if let Ok(es) = std::env::var("ES_URL") {
        let es_n: u64 = std::env::var("ES_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000);
        let (_d, mut c) = base_config();
        c.elasticsearch.url = Some(es);
        c.elasticsearch.index = format!("attackmesh-bench-{}", std::process::id());
        let (e, d) = throughput(&c, "elasticsearch", es_n).await;
        println!("elasticsearch:    enqueue {e:>9.0} ev/s   delivered {d:>9.0} ev/s   ({es_n} events)");
    } else {
        println!("elasticsearch:    skipped (set ES_URL)");
    }
}

async fn latency_section() {
    println!(
        "== enqueue → HEC 2xx latency at a steady 10,000 events/s for 20 s (events of ~{} bytes)",
        attackmesh::json::to_json(&stamped(0)).len()
    );
    let (url, hec) = hec_receiver().await;
    let (_d, mut c) = base_config();
    c.splunk_hec.url = Some(url);
    c.splunk_hec.token = Some(Secret::new("bench"));
    let r = start(&c).await;
    let sent = steady(&r.state, 10_000, 20, |_| {}).await;
    let t0 = Instant::now();
    while hec.events.load(Ordering::Relaxed) < sent && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat = hec.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{} events: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    r.shutdown().await;
}

async fn outage_section() {
    let secs: u64 = std::env::var("OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    println!("== HEC sink down for {secs} s at 10,000 events/s");
    let (_d, mut c) = base_config();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    c.splunk_hec.url = Some(format!("http://{closed}"));
    c.splunk_hec.token = Some(Secret::new("bench"));
    let r = start(&c).await;
    let before = rss_kib();
    let mut peak = before;
    let sent = steady(&r.state, 10_000, secs, |t| {
        if t % 100 == 0 {
            peak = peak.max(rss_kib());
        }
    })
    .await;
    let status = r.state.sinks()[0].status();
    println!(
        "RSS before {} MiB, peak {} MiB, after {} MiB; queued {} events in {} MiB on disk = {:.0} bytes/event",
        before / 1024,
        peak / 1024,
        rss_kib() / 1024,
        status.queue_depth,
        status.queue_bytes >> 20,
        status.queue_bytes as f64 / status.queue_depth.max(1) as f64
    );
    assert_eq!(status.queue_depth, sent);
    r.shutdown().await;
}
