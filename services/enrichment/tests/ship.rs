//! `attackmesh ship` as a library: stopped midway and started again, it resumes from its
//! checkpoints without losing or repeating records (Zeek header state included).

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, io::Write, path::PathBuf};

use attackmesh::formats::Format;
use attackmesh_enrichment::shipper::{Progress, ShipOptions, Summary, ship};
use attackmesh_testkit::{latest, port_scan, wait_for_sink};
use common::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn options(cluster: &Cluster, format: Format, path: PathBuf, batch: usize) -> ShipOptions {
    let mut options = ShipOptions::new(format, vec![path], cluster.endpoint());
    options.token = Some(attackmesh_runtime::secret::Secret::new(DETECTOR_TOKEN));
    options.batch = batch;
    options.max_in_flight = 2;
    options.checkpoint_dir = Some(cluster.dir.path().join("checkpoints"));
    options
}

/// Ships until `batches` are acknowledged, then stops the shipper gracefully.
async fn ship_until(mut options: ShipOptions, batches: u64) -> Summary {
    let (tx, mut progress) = watch::channel(Progress::default());
    options.progress = Some(tx);
    let stop = CancellationToken::new();
    let run = tokio::spawn(ship(options, stop.clone()));
    let _ = progress.wait_for(|p| p.batches >= batches).await;
    stop.cancel();
    run.await.unwrap().unwrap()
}

fn ndjson(dir: &std::path::Path, lines: usize) -> PathBuf {
    let path = dir.join("detections.ndjson");
    let mut file = std::fs::File::create(&path).unwrap();
    for i in 0..lines {
        let line = attackmesh::json::to_json(&port_scan(&format!("ship-{i}"), "203.0.113.40"));
        writeln!(file, "{line}").unwrap();
    }
    path
}

async fn assert_each_record_once(cluster: &Cluster, expected: &BTreeMap<String, usize>) {
    let ids = expected.keys().cloned().collect();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let counts = counts(&events);
    // Records logged more than once share their event id and are written once.
    for id in expected.keys() {
        assert_eq!(counts.get(&(id.clone(), 1)), Some(&1), "{id}");
    }
    assert_eq!(latest(&events).len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_shipper_resumes_without_loss_or_duplicates() {
    let cluster = Cluster::start().await;
    let path = ndjson(cluster.dir.path(), 2_000);
    let first = ship_until(options(&cluster, Format::Ndjson, path.clone(), 50), 5).await;
    assert!(first.interrupted, "stopped before the end");
    assert!(
        first.progress.accepted >= 250 && first.progress.accepted < 2_000,
        "{:?}",
        first.progress
    );
    let second = ship(
        options(&cluster, Format::Ndjson, path.clone(), 50),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(!second.interrupted);
    assert_eq!(
        first.progress.accepted + second.progress.accepted,
        2_000,
        "no record sent twice"
    );
    assert_each_record_once(&cluster, &expected_records(Format::Ndjson, &path)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeek_resumes_with_its_header_state() {
    let cluster = Cluster::start().await;
    let path = cluster.dir.path().join("dns.log");
    std::fs::copy(fixture("zeek/dns.log"), &path).unwrap();
    let expected = expected_records(Format::Zeek, &path);
    let total: usize = expected.values().sum();
    let first = ship_until(options(&cluster, Format::Zeek, path.clone(), 3), 2).await;
    assert!(first.interrupted);
    let second = ship(
        options(&cluster, Format::Zeek, path.clone(), 3),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(first.progress.accepted + second.progress.accepted, total as u64);
    assert_eq!(
        second.progress.rejected, 0,
        "records after the checkpoint parse with the saved header"
    );
    assert_each_record_once(&cluster, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shipper_loses_nothing() {
    let cluster = Cluster::start().await;
    let path = ndjson(cluster.dir.path(), 1_000);
    let (tx, mut progress) = watch::channel(Progress::default());
    let mut first = options(&cluster, Format::Ndjson, path.clone(), 25);
    first.progress = Some(tx);
    let run = tokio::spawn(ship(first, CancellationToken::new()));
    let _ = progress.wait_for(|p| p.batches >= 4).await;
    run.abort();
    let _ = run.await;
    let second = ship(
        options(&cluster, Format::Ndjson, path.clone(), 25),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(
        second.progress.accepted < 1_000,
        "resumed from the checkpoint: {:?}",
        second.progress
    );
    // Batches in flight at the kill are sent again (same event ids); none is lost, and the
    // sink recognises the resent ids.
    let expected = expected_records(Format::Ndjson, &path);
    let ids = expected.keys().cloned().collect();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let extra = events.len() - expected.len();
    assert!(extra <= 2 * 25, "at most the in-flight window repeats: {extra}");
    assert_eq!(extra, 0, "a resent event id is written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_are_reported_with_file_and_line() {
    let cluster = Cluster::start().await;
    let path = cluster.dir.path().join("mixed.ndjson");
    let mut bad = port_scan("bad-ip", "300.1.1.1");
    bad.source_service = "netmon".into();
    let lines = [
        attackmesh::json::to_json(&port_scan("ok-1", "203.0.113.50")),
        "{not json".to_owned(),
        attackmesh::json::to_json(&bad),
        attackmesh::json::to_json(&port_scan("ok-2", "203.0.113.51")),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let summary = ship(
        options(&cluster, Format::Ndjson, path.clone(), 10),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.progress.accepted, 2);
    assert_eq!(summary.progress.rejected, 2);
    let mut lines: Vec<u64> = summary.rejected.iter().map(|r| r.line).collect();
    lines.sort();
    assert_eq!(lines, [2, 3]);
    let invalid = summary.rejected.iter().find(|r| r.line == 3).unwrap();
    assert_eq!(invalid.event_id, "bad-ip");
    assert!(
        invalid.to_string().contains("mixed.ndjson:3: event bad-ip: source.ip:"),
        "{invalid}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_shipper_carries_on_after_its_idle_stream_is_closed() {
    let cluster = Cluster::start_with(|c| c.ingest.idle_timeout = std::time::Duration::from_millis(200)).await;
    let path = cluster.dir.path().join("followed.ndjson");
    let write = |from: usize, to: usize| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for i in from..to {
            let line = attackmesh::json::to_json(&port_scan(&format!("followed-{i}"), "203.0.113.41"));
            writeln!(file, "{line}").unwrap();
        }
    };
    write(0, 5);
    let mut options = options(&cluster, Format::Ndjson, path.clone(), 5);
    options.follow = true;
    options.poll_interval = std::time::Duration::from_millis(20);
    let (tx, mut progress) = watch::channel(Progress::default());
    options.progress = Some(tx);
    let stop = CancellationToken::new();
    let run = tokio::spawn(ship(options, stop.clone()));
    let _ = progress.wait_for(|p| p.accepted >= 5).await;
    // The file goes quiet; enrichment ends the idle stream.
    let closed = metric("enrichment_idle_streams_closed_total");
    for _ in 0..1500 {
        if metric("enrichment_idle_streams_closed_total") > closed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        metric("enrichment_idle_streams_closed_total") > closed,
        "the idle stream was closed"
    );
    write(5, 10);
    let ids = (0..10).map(|i| format!("followed-{i}")).collect();
    wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.progress.accepted, 10, "{:?}", summary.progress);
}
