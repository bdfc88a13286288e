//! Correlation replicas as processes: two `attackmesh serve correlation` replicas behind the
//! export service's correlation sink of an `attackmesh serve all`. Scanners' connection records
//! stream in; one replica is killed with SIGKILL mid-stream and restarted on its data directory.
//! Every scan is reported exactly once: none lost (windows and undelivered findings come back
//! from the replica's state, unacknowledged batches are resent), none twice, and each scanner's
//! events met on one replica (a scan split across replicas would never reach its threshold).

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, path::Path, process::Child, time::Duration};

use attackmesh::proto::{
    AckStatus, DetectionEvent, DetectorKind, Endpoint, IngestRequest, ingest_service_client::IngestServiceClient,
};
use common::*;
use serde_json::json;
use tokio::time::Instant;

const T0: i64 = 1_717_243_200;
/// Scanners that finish before the kill, and scanners whose probes straddle it.
const EARLY: u32 = 8;
const STRADDLING: u32 = 16;
const PORTS: u32 = 24;

fn probe(scanner: u32, port: u32) -> DetectionEvent {
    let mut e = DetectionEvent {
        event_id: format!("conn-{scanner}-{port}"),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: T0 + i64::from(scanner) + i64::from(port),
            nanos: 0,
        }),
        source_service: "zeek-core".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: "zeek.conn".into(),
        source: Some(Endpoint {
            ip: format!("10.66.{}.{}", scanner / 200, scanner % 200 + 1),
            port: 40_000 + port,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.20.0.30".into(),
            port: 1000 + port,
            ..Default::default()
        }),
        description: "zeek conn".into(),
        ..Default::default()
    };
    e.attributes.insert("conn_state".into(), "REJ".into());
    e
}

async fn ingest(addr: std::net::SocketAddr, events: Vec<DetectionEvent>) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = IngestServiceClient::new(channel);
    for (i, chunk) in events.chunks(50).enumerate() {
        let mut request = tonic::Request::new(tokio_stream::iter(vec![IngestRequest {
            batch_id: i as u64,
            events: chunk.to_vec(),
            ..Default::default()
        }]));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token("edge-detector")).parse().unwrap(),
        );
        let mut answers = client.ingest(request).await.unwrap().into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        assert_eq!(answer.status, AckStatus::Durable as i32, "{answer:?}");
    }
}

/// Port-scan findings in the file sink: scanner address → lines.
fn findings(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let e: attackmesh::proto::EnrichedEvent = attackmesh::json::from_json(line).unwrap();
        if e.event_type == "correlation.port_scan" {
            assert_eq!(e.source_service, "attackmesh-correlation");
            assert!(e.technique_ids.contains(&"T1046".to_owned()), "{e:?}");
            *out.entry(e.source.unwrap().ip).or_default() += 1;
        }
    }
    out
}

fn replica(dir: &Path, i: usize, addr: std::net::SocketAddr, enrichment: std::net::SocketAddr, run: &str) -> Child {
    let config = json!({
        "auth": {"token_files": [dir.join("tokens.yaml")]},
        "telemetry": {"log_level": "info"},
        "listen": {"correlation": addr.to_string()},
        "correlation": {
            "data_dir": dir.join(format!("replica-{i}")),
            "enrichment": {"endpoints": [format!("http://{enrichment}")], "token_file": dir.join("admin.token")},
        },
    });
    let path = dir.join(format!("replica-{i}.json"));
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    spawn_attackmesh(
        &["serve", "correlation"],
        &path,
        &dir.join(format!("replica-{i}-{run}.log")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_loses_no_finding_and_reports_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let addrs = Addrs::new();
    let replicas: [std::net::SocketAddr; 2] = free_addrs();
    let mut config = base_config(dir, &addrs);
    std::fs::write(dir.join("admin.token"), token("ops-admin")).unwrap();
    config["siem_export"]["correlation"] = json!({
        "endpoints": replicas.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>(),
        "token_file": dir.join("admin.token"),
        "backoff": {"initial": "50ms", "max": "500ms"},
    });
    let mut serve = Serve::start(dir, addrs, &config).await;
    let addrs = serve.addrs;
    let mut children = [
        replica(dir, 0, replicas[0], addrs.enrichment, "first"),
        replica(dir, 1, replicas[1], addrs.enrichment, "first"),
    ];
    for addr in replicas {
        serve.wait_serving_plain(addr).await;
    }
    let sink = dir.join("out/events.ndjson");

    // Early scanners complete; straddling ones send half their probes.
    let mut first: Vec<DetectionEvent> = (0..EARLY).flat_map(|s| (0..PORTS).map(move |p| probe(s, p))).collect();
    first.extend((EARLY..EARLY + STRADDLING).flat_map(|s| (0..PORTS / 2).map(move |p| probe(s, p))));
    ingest(addrs.enrichment, first).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while findings(&sink).len() < EARLY as usize {
        assert!(
            Instant::now() < deadline,
            "early scans never reported:\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGKILL one replica mid-stream, send the rest while it is down, then restart it.
    let killed = attackmesh_runtime::partition::owner("10.66.0.1", 2) as usize;
    children[killed].kill().unwrap();
    children[killed].wait().unwrap();
    let rest: Vec<DetectionEvent> = (EARLY..EARLY + STRADDLING)
        .flat_map(|s| (PORTS / 2..PORTS).map(move |p| probe(s, p)))
        .collect();
    ingest(addrs.enrichment, rest).await;
    children[killed] = replica(dir, killed, replicas[killed], addrs.enrichment, "second");
    serve.wait_serving_plain(replicas[killed]).await;

    let expected = (EARLY + STRADDLING) as usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    while findings(&sink).len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} scans reported:\n{}",
            findings(&sink).len(),
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let any duplicate arrive before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = findings(&sink);
    assert_eq!(found.len(), expected, "{found:?}");
    assert!(found.values().all(|&n| n == 1), "a scan reported twice: {found:?}");
    let owners: std::collections::BTreeSet<u32> = found
        .keys()
        .map(|ip| attackmesh_runtime::partition::owner(ip, 2))
        .collect();
    assert_eq!(owners.len(), 2, "both replicas own scanners");
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
