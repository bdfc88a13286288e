//! Load generator for the ingest path: detector → enrichment → attribution → siem-export.
//!
//! Without `--endpoint` it starts the three services in this process on 127.0.0.1 (export with a
//! file sink in a temporary directory, so every event really is queued, fsynced and written) and
//! drives them; with `--endpoint` it drives a running enrichment service.
//!
//! ```text
//! # throughput: batches of 500, 8 in flight, 200k events
//! cargo run --release -p attackmesh-enrichment --example loadgen -- --events 200000 --batch 500 --in-flight 8
//! # ack latency at a steady 20k events/s for 20 s
//! cargo run --release -p attackmesh-enrichment --example loadgen -- --rate 20000 --seconds 20 --batch 500
//! # the same without the export service's queues and sinks (it acknowledges at once)
//! cargo run --release -p attackmesh-enrichment --example loadgen -- --events 200000 --null-export
//! # keep the in-process pipeline up for other clients (prints endpoint and detector token)
//! cargo run --release -p attackmesh-enrichment --example loadgen -- --serve
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    time::{Duration, Instant},
};

use attackmesh::proto::{
    AckStatus, DetectionEvent, DetectorKind, Endpoint, ExportRequest, ExportResponse, GetSinkStatusRequest,
    GetSinkStatusResponse, IngestRequest, Severity,
    export_service_server::{ExportService, ExportServiceServer},
    ingest_service_client::IngestServiceClient,
};
use attackmesh_runtime::{
    auth::{AuthConfig, Role, TokenEntry, hash_token},
    config::RuntimeConfig,
    server::{GrpcServer, ServeOptions},
};
use tokio::{net::TcpListener, sync::mpsc};
use tonic::{Request, transport::Channel};

const DETECTOR_TOKEN: &str = "loadgen-detector-token";
const ADMIN_TOKEN: &str = "loadgen-admin-token";

struct Args {
    endpoint: Option<String>,
    token: String,
    batch: usize,
    in_flight: usize,
    events: usize,
    rate: Option<f64>,
    seconds: u64,
    serve: bool,
    null_export: bool,
}

fn args() -> Args {
    let mut a = Args {
        endpoint: None,
        token: DETECTOR_TOKEN.into(),
        batch: 500,
        in_flight: 8,
        events: 200_000,
        rate: None,
        seconds: 20,
        serve: false,
        null_export: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--endpoint" => a.endpoint = Some(value()),
            "--token-file" => a.token = std::fs::read_to_string(value()).unwrap().trim().to_owned(),
            "--batch" => a.batch = value().parse().unwrap(),
            "--in-flight" => a.in_flight = value().parse().unwrap(),
            "--events" => a.events = value().parse().unwrap(),
            "--rate" => a.rate = Some(value().parse().unwrap()),
            "--seconds" => a.seconds = value().parse().unwrap(),
            "--serve" => a.serve = true,
            "--null-export" => a.null_export = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn runtime_config() -> RuntimeConfig {
    let token = |name: &str, role, t: &str| TokenEntry {
        name: name.into(),
        role,
        sha256: hash_token(t),
    };
    RuntimeConfig {
        auth: AuthConfig {
            tokens: vec![
                token("loadgen", Role::Detector, DETECTOR_TOKEN),
                token("enrichment", Role::Admin, ADMIN_TOKEN),
            ],
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn server() -> GrpcServer {
    GrpcServer::new(ServeOptions::from_config(&runtime_config()).unwrap())
        .await
        .unwrap()
}

/// An export service that acknowledges every batch at once without storing it, to measure
/// ingest and attribution alone.
struct NullExport;

#[tonic::async_trait]
impl ExportService for NullExport {
    type ExportStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExportResponse, tonic::Status>> + Send>>;

    async fn export(
        &self,
        request: Request<tonic::Streaming<ExportRequest>>,
    ) -> Result<tonic::Response<Self::ExportStream>, tonic::Status> {
        use futures::StreamExt;
        let answers = request.into_inner().map(|batch| {
            let batch = batch?;
            Ok(ExportResponse {
                batch_id: batch.batch_id,
                status: AckStatus::Durable as i32,
                accepted: batch.events.len() as u32,
                ..Default::default()
            })
        });
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn get_sink_status(
        &self,
        _request: Request<GetSinkStatusRequest>,
    ) -> Result<tonic::Response<GetSinkStatusResponse>, tonic::Status> {
        Ok(tonic::Response::new(GetSinkStatusResponse::default()))
    }
}

/// Runs `make()` on a runtime of its own whose threads are all named `name`, so the CPU each
/// service uses can be read per thread name at the end.
fn in_runtime<F, Fut>(name: &'static str, make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(name)
                .thread_keep_alive(Duration::from_secs(3600))
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(make());
        })
        .unwrap();
}

fn std_listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Starts attribution, export (file sink under `dir`) and enrichment, each on its own runtime;
/// returns enrichment's gRPC and HTTP addresses.
async fn start_pipeline(dir: &std::path::Path, null_export: bool) -> (SocketAddr, Option<SocketAddr>) {
    let (attribution, export, enrichment, http) = (std_listener(), std_listener(), std_listener(), std_listener());
    let (a, e, n, h) = (
        attribution.local_addr().unwrap(),
        export.local_addr().unwrap(),
        enrichment.local_addr().unwrap(),
        http.local_addr().unwrap(),
    );
    in_runtime("attribution", move || async move {
        let s = server().await;
        let config = attackmesh_attribution::AttributionConfig::default();
        let l = TcpListener::from_std(attribution).unwrap();
        let _ = attackmesh_attribution::server::serve(&config, s, l, std::future::pending()).await;
    });
    let mut export_config = attackmesh_siem_export::config::SiemExportConfig {
        data_dir: dir.join("export"),
        ..Default::default()
    };
    export_config.file.path = Some(dir.join("sink/events.ndjson"));
    export_config.file.rotate_bytes = 1 << 30;
    in_runtime("export", move || async move {
        let s = server().await;
        let l = TcpListener::from_std(export).unwrap();
        if null_export {
            let s = s.add_service(ExportServiceServer::new(NullExport)).await;
            s.health().serving::<ExportServiceServer<NullExport>>().await;
            let _ = s.serve(l, std::future::pending()).await;
        } else {
            let _ = attackmesh_siem_export::server::serve(&export_config, s, l, std::future::pending()).await;
        }
    });
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let mut config = attackmesh_enrichment::EnrichmentConfig {
        data_dir: dir.join("enrichment"),
        ..Default::default()
    };
    config.attribution.endpoints = vec![format!("http://{a}")];
    config.attribution.token_file = Some(token_file.clone());
    config.export.endpoints = vec![format!("http://{e}")];
    config.export.token_file = Some(token_file);
    in_runtime("enrichment", move || async move {
        let s = server().await;
        let (l, h) = (
            TcpListener::from_std(enrichment).unwrap(),
            TcpListener::from_std(http).unwrap(),
        );
        let _ = attackmesh_enrichment::server::serve(&config, s, l, Some(h), std::future::pending()).await;
    });
    wait_serving(a).await;
    wait_serving(n).await;
    (n, Some(h))
}

/// CPU seconds (user + system) used so far by this process's threads, by thread name.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.filter_map(Result::ok) {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name.trim().to_owned()).or_insert(0.0) += ticks / 100.0;
    }
    out
}

fn print_cpu(before: &std::collections::BTreeMap<String, f64>, events: u64) {
    let after = cpu_by_thread();
    let mut total = 0.0;
    for (name, secs) in &after {
        let used = secs - before.get(name).copied().unwrap_or(0.0);
        if used > 0.005 {
            total += used;
            println!(
                "  cpu {name}: {used:.2} s = {:.1} µs/event",
                1e6 * used / events.max(1) as f64
            );
        }
    }
    println!(
        "  cpu total: {total:.2} s = {:.1} µs/event",
        1e6 * total / events.max(1) as f64
    );
}

async fn wait_serving(addr: SocketAddr) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut health = HealthClient::new(Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy());
    loop {
        if let Ok(r) = health.check(HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A traffic-monitor detection of about 600 bytes encoded, varied so rules and hints are exercised.
fn event(n: usize) -> DetectionEvent {
    let kinds = [
        ("port_scan", "SYN scan of 1024 ports", "T1046"),
        ("ssh_brute_force", "412 failed SSH logins in 60s", "T1110.001"),
        ("dns_tunnel", "high-entropy TXT queries to one domain", "T1071.004"),
        ("smb_lateral", "admin share access from a workstation", "T1021.002"),
    ];
    let (kind, description, hint) = kinds[n % kinds.len()];
    let src = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    DetectionEvent {
        event_id: format!("loadgen-{}-{n}", std::process::id()),
        timestamp: Some(chrono::Utc::now().into()),
        source_service: "netmon-loadgen".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: kind.into(),
        source: Some(Endpoint {
            ip: src.clone(),
            port: 40_000 + (n % 20_000) as u32,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.20.0.15".into(),
            port: 22,
            hostname: "db-01.internal".into(),
            ..Default::default()
        }),
        severity: Severity::High as i32,
        description: format!("{description} from {src}"),
        technique_hints: vec![hint.into()],
        detector_confidence: Some(0.8),
        attributes: [
            ("packets".to_owned(), (n % 5000).to_string()),
            ("bytes".to_owned(), (n % 900_000).to_string()),
            ("proto".to_owned(), "tcp".to_owned()),
            ("sensor".to_owned(), "edge-01".to_owned()),
        ]
        .into(),
        original: format!(
            "{{\"ts\":{n},\"src\":\"{src}\",\"dst\":\"10.20.0.15\",\"kind\":\"{kind}\",\"note\":\"{description}\",\"pad\":\"{}\"}}",
            "x".repeat(160)
        ),
        original_format: "ndjson".into(),
        ..Default::default()
    }
}

struct Stats {
    accepted: u64,
    retried: u64,
    latencies: Vec<Duration>,
}

/// Sends `batches` batches on one stream, at most `in_flight` unacknowledged; with `interval`,
/// one batch per interval (steady rate). Batches answered RETRY are counted, not resent.
async fn drive(
    client: &mut IngestServiceClient<Channel>,
    args: &Args,
    batches: usize,
    interval: Option<Duration>,
) -> Stats {
    let (tx, rx) = mpsc::channel::<IngestRequest>(args.in_flight);
    let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", args.token).parse().unwrap());
    let mut acks = client.ingest(request).await.unwrap().into_inner();
    let (permits_tx, mut permits) = mpsc::channel::<()>(args.in_flight);
    for _ in 0..args.in_flight {
        permits_tx.send(()).await.unwrap();
    }
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let batch = args.batch;
    let producer = tokio::spawn(async move {
        let start = Instant::now();
        for b in 0..batches {
            if let Some(interval) = interval {
                tokio::time::sleep_until((start + interval * b as u32).into()).await;
            }
            permits.recv().await;
            let events = (0..batch).map(|i| event(b * batch + i)).collect();
            sent_tx.send(Instant::now()).unwrap();
            tx.send(IngestRequest {
                batch_id: b as u64,
                events,
                trace_context: Default::default(),
            })
            .await
            .unwrap();
        }
    });
    let mut stats = Stats {
        accepted: 0,
        retried: 0,
        latencies: Vec::with_capacity(batches),
    };
    let mut sent = VecDeque::new();
    for _ in 0..batches {
        let ack = acks.message().await.unwrap().expect("an ack per batch");
        while let Ok(at) = sent_rx.try_recv() {
            sent.push_back(at);
        }
        if sent.is_empty() {
            sent.push_back(sent_rx.recv().await.unwrap());
        }
        let at = sent.pop_front().unwrap();
        stats.latencies.push(at.elapsed());
        if ack.status == AckStatus::Durable as i32 {
            stats.accepted += u64::from(ack.accepted);
        } else {
            stats.retried += 1;
        }
        let _ = permits_tx.try_send(());
    }
    producer.await.unwrap();
    stats
}

/// Sum and count of each upstream's batch latency histogram (in-process runs only).
fn upstream_totals() -> [(f64, f64); 2] {
    let text = attackmesh_runtime::metrics::render();
    let value = |name: String| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    ["attribution", "export"].map(|upstream| {
        let label = format!("{{upstream=\"{upstream}\"}}");
        (
            value(format!("attackmesh_enrichment_upstream_batch_seconds_sum{label}")),
            value(format!("attackmesh_enrichment_upstream_batch_seconds_count{label}")),
        )
    })
}

/// Mean time from send to answer per upstream since `before`.
fn upstream_breakdown(before: [(f64, f64); 2]) {
    for (upstream, ((sum, count), (sum0, count0))) in ["attribution", "export"]
        .iter()
        .zip(upstream_totals().into_iter().zip(before))
    {
        if count > count0 {
            println!(
                "  {upstream}: {:.0} batches, mean {:.1} ms from send to answer",
                count - count0,
                1000.0 * (sum - sum0) / (count - count0)
            );
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = match &args.endpoint {
        Some(e) => e.clone(),
        None => {
            let (addr, http) = start_pipeline(dir.path(), args.null_export).await;
            if args.serve {
                println!("enrichment: http://{addr}  falco: http://{}/falco", http.unwrap());
                println!("detector token: {DETECTOR_TOKEN}");
                println!("sink: {}", dir.path().join("sink/events.ndjson").display());
                tokio::signal::ctrl_c().await.unwrap();
                return;
            }
            format!("http://{addr}")
        }
    };
    let channel = Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
    let mut client = IngestServiceClient::new(channel).max_decoding_message_size(64 << 20);
    // Warm up: connections, streams, the knowledge base's caches.
    drive(&mut client, &args, 20, None).await;
    let before = upstream_totals();
    let cpu_before = cpu_by_thread();

    match args.rate {
        None => {
            let batches = args.events.div_ceil(args.batch);
            let started = Instant::now();
            let stats = drive(&mut client, &args, batches, None).await;
            let elapsed = started.elapsed();
            let mut lat = stats.latencies.clone();
            lat.sort();
            println!(
                "throughput: {} events in {:.2?} = {:.0} events/s (batch {}, {} in flight, {} batches RETRY); ack p50 {:.1?} p99 {:.1?}",
                stats.accepted,
                elapsed,
                stats.accepted as f64 / elapsed.as_secs_f64(),
                args.batch,
                args.in_flight,
                stats.retried,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            upstream_breakdown(before);
            print_cpu(&cpu_before, stats.accepted);
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(args.batch as f64 / rate);
            let batches = ((args.seconds as f64 * rate) / args.batch as f64).ceil() as usize;
            let started = Instant::now();
            let stats = drive(&mut client, &args, batches, Some(interval)).await;
            let elapsed = started.elapsed();
            let mut lat = stats.latencies.clone();
            lat.sort();
            println!(
                "steady {rate:.0} events/s (batch {}): {} events in {:.2?} ({:.0}/s achieved, {} RETRY); ack latency p50 {:.1?} p90 {:.1?} p99 {:.1?} max {:.1?}",
                args.batch,
                stats.accepted,
                elapsed,
                stats.accepted as f64 / elapsed.as_secs_f64(),
                stats.retried,
                percentile(&lat, 0.5),
                percentile(&lat, 0.9),
                percentile(&lat, 0.99),
                lat.last().copied().unwrap_or_default()
            );
            upstream_breakdown(before);
            print_cpu(&cpu_before, stats.accepted);
        }
    }
}
