//! Crashes mid-stream: attribution killed and restarted while a detector keeps shipping, and
//! enrichment killed with a re-attribution backlog. Nothing may be lost, and every event that
//! went out DEGRADED must end up attributed (revision 2) in the sink.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, io::Write, net::SocketAddr, time::Duration};

use attackmesh::{
    formats::Format,
    proto::{AckStatus, AttributionStatus, IngestRequest},
};
use attackmesh_enrichment::shipper::{Progress, ShipOptions, ship};
use attackmesh_testkit::{channel, free_addr, latest, port_scan, wait_for_sink, wait_serving};
use common::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 60;
const PER_ROUND: usize = 40;

fn all_attributed(map: &std::collections::BTreeMap<String, attackmesh::proto::EnrichedEvent>) -> bool {
    map.values().all(|e| !is_degraded(e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_killed_and_restarted_mid_stream_loses_nothing() {
    let degraded_before = metric("enrichment_degraded_total");
    let reattributed_before = metric("enrichment_reattributed_total");
    let mut cluster = Cluster::start().await;
    let log = cluster.dir.path().join("netmon.ndjson");
    std::fs::File::create(&log).unwrap();

    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let mut options = ShipOptions::new(Format::Ndjson, vec![log.clone()], cluster.endpoint());
    options.token = Some(DETECTOR_TOKEN.into());
    options.batch = 20;
    options.follow = true;
    options.poll_interval = Duration::from_millis(20);
    options.checkpoint_dir = Some(cluster.dir.path().join("checkpoints"));
    options.progress = Some(progress_tx);
    let stop = CancellationToken::new();
    let shipper = tokio::spawn(ship(options, stop.clone()));

    let mut ids = BTreeSet::new();
    let mut attribution_addr = None;
    for round in 0..ROUNDS {
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for i in 0..PER_ROUND {
            let id = format!("scan-{round}-{i}");
            let line = attackmesh::json::to_json(&port_scan(&id, "203.0.113.20"));
            writeln!(file, "{line}").unwrap();
            ids.insert(id);
        }
        drop(file);
        if round == ROUNDS / 3 {
            attribution_addr = Some(cluster.attribution.take().unwrap().kill());
        }
        if round == 2 * ROUNDS / 3 {
            cluster.attribution = Some(start_attribution(attribution_addr.unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = (ROUNDS * PER_ROUND) as u64;
    tokio::time::timeout(Duration::from_secs(120), progress.wait_for(|p| p.accepted >= total))
        .await
        .expect("every line acknowledged")
        .unwrap();
    stop.cancel();
    let summary = shipper.await.unwrap().unwrap();
    assert_eq!(summary.progress.accepted, total);
    assert_eq!(summary.progress.rejected, 0);

    let events = wait_for_sink(&cluster.sink(), &ids, all_attributed).await;
    let latest = latest(&events);
    assert_eq!(latest.len(), ids.len(), "every event, nothing else");
    let degraded: BTreeSet<&str> = events
        .iter()
        .filter(|e| is_degraded(e))
        .map(|e| e.event_id.as_str())
        .collect();
    assert!(
        !degraded.is_empty(),
        "events flowed on DEGRADED while attribution was away"
    );
    for ev in events.iter().filter(|e| e.revision == 2) {
        assert!(
            degraded.contains(ev.event_id.as_str()),
            "only degraded events are re-attributed"
        );
    }
    for id in &degraded {
        let ev = &latest[*id];
        assert_eq!(ev.revision, 2, "{id} superseded by revision 2");
        assert_eq!(ev.attribution_status, AttributionStatus::Ok as i32);
        assert!(ev.technique_ids.contains(&"T1046".to_owned()));
    }
    assert!(metric("enrichment_degraded_total") - degraded_before >= degraded.len() as f64);
    assert!(metric("enrichment_reattributed_total") - reattributed_before >= degraded.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_enrichment_keeps_its_reattribution_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // Attribution's port, free for now: it comes up only after enrichment has been killed.
    let attribution_addr = free_addr();
    let _export = start_export(any, dir.path());
    let config = enrichment_config(dir.path(), attribution_addr, _export.addr);
    let enrichment = start_enrichment(any, config.clone());
    wait_serving(enrichment.addr).await;

    let mut client = attackmesh::proto::ingest_service_client::IngestServiceClient::new(channel(enrichment.addr));
    let ids: BTreeSet<String> = (0..50).map(|i| format!("backlog-{i}")).collect();
    let batch = IngestRequest {
        batch_id: 1,
        events: ids.iter().map(|id| port_scan(id, "203.0.113.30")).collect(),
        ..Default::default()
    };
    let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32);
    assert_eq!(answers[0].accepted, 50);
    let sink = sink_path(dir.path());
    let events = wait_for_sink(&sink, &ids, |_| true).await;
    assert!(events.iter().all(is_degraded), "attribution was never up");

    // Crash with the backlog on disk, bring attribution up, start enrichment again.
    enrichment.kill();
    let _attribution = start_attribution(attribution_addr);
    let enrichment = start_enrichment(any, config);
    wait_serving(enrichment.addr).await;
    let events = wait_for_sink(&sink, &ids, all_attributed).await;
    for ev in latest(&events).values() {
        assert_eq!(ev.revision, 2);
        assert!(ev.technique_ids.contains(&"T1046".to_owned()));
    }
    enrichment.stop();
}
