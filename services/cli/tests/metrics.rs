//! `attackmesh serve all` exposes every service's metrics on `listen.metrics`: after a detector
//! sends a batch, the scrape shows events in and out of enrichment, the rejected one, the
//! DEGRADED count, attribution's batches, hits and latency, and per-sink queue depth and age,
//! deliveries, retries and dead letters, with values that match what was sent. No label
//! carries a token or anything taken from an event.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use attackmesh::proto::{
    AckStatus, DetectionEvent, DetectorKind, Endpoint, IngestRequest, ingest_service_client::IngestServiceClient,
};
use common::{Addrs, Serve, TOKENS, base_config, http_client, token};
use tonic::transport::Channel;

/// Valid events the detector sends (plus one invalid).
const SENT: f64 = 4.0;

/// One series of a scrape: labels (sorted `k="v"` text) to value, per metric name.
type Scrape = BTreeMap<String, BTreeMap<String, f64>>;

fn parse(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        out.entry(name.to_owned())
            .or_default()
            .insert(labels.to_owned(), value.parse().unwrap());
    }
    out
}

/// The sum of every series of `name` (0 when there is none).
fn sum(scrape: &Scrape, name: &str) -> f64 {
    scrape.get(name).map_or(0.0, |s| s.values().sum())
}

/// The value of `name` with exactly `labels`.
fn value(scrape: &Scrape, name: &str, labels: &str) -> Option<f64> {
    scrape.get(name).and_then(|s| s.get(labels)).copied()
}

fn event(id: &str) -> DetectionEvent {
    DetectionEvent {
        event_id: id.into(),
        timestamp: Some(chrono::Utc::now().into()),
        source_service: "netmon-metrics".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: "port_scan".into(),
        source: Some(Endpoint {
            ip: "198.51.100.77".into(),
            ..Default::default()
        }),
        description: "secret-looking-description-0x5eed".into(),
        technique_hints: vec!["T1046".into()],
        ..Default::default()
    }
}

async fn scrape(serve: &Serve) -> String {
    http_client()
        .get(format!("http://{}/metrics", serve.addrs.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_what_a_batch_did() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = Addrs::new();
    let mut config = base_config(dir.path(), &addrs);
    // The batch's events, counted per sink; the campaign alerts correlation would add arrive on
    // their own schedule (services/cli/tests/campaigns.rs covers them).
    config["correlation"]["build_campaigns"] = serde_json::json!(false);
    let serve = Serve::start(dir.path(), addrs, &config).await;
    let addrs = serve.addrs;

    let mut events: Vec<DetectionEvent> = (0..SENT as usize).map(|i| event(&format!("metrics-{i}"))).collect();
    let mut invalid = event("metrics-invalid");
    invalid.event_type.clear();
    events.push(invalid);
    let channel = Channel::from_shared(format!("http://{}", addrs.enrichment))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter(vec![IngestRequest {
        batch_id: 1,
        events,
        ..Default::default()
    }]));
    let bearer = format!("Bearer {}", token("edge-detector"));
    request.metadata_mut().insert("authorization", bearer.parse().unwrap());
    let mut answers = IngestServiceClient::new(channel)
        .ingest(request)
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    assert_eq!(answer.status, AckStatus::Durable as i32, "{answer:?}");
    assert_eq!((answer.accepted, answer.rejected), (SENT as u32, 1));

    // Acknowledged means queued; the file sink delivers on its own schedule.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (text, m) = loop {
        let text = scrape(&serve).await;
        let m = parse(&text);
        // Every sink, not their sum: the correlation sink alone can reach SENT first.
        let delivered = m.get("attackmesh_siem_export_delivered_events_total");
        if delivered.is_some_and(|d| d.len() == 2 && d.values().all(|&n| n >= SENT)) {
            break (text, m);
        }
        assert!(Instant::now() < deadline, "the file sink never delivered:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Enrichment: in, out (acknowledged DURABLE), rejected, DEGRADED.
    assert_eq!(
        value(&m, "attackmesh_enrichment_received_events_total", ""),
        Some(SENT + 1.0),
        "{text}"
    );
    assert_eq!(
        value(&m, "attackmesh_enrichment_accepted_events_total", ""),
        Some(SENT),
        "{text}"
    );
    assert_eq!(
        value(&m, "attackmesh_enrichment_rejected_events_total", ""),
        Some(1.0),
        "{text}"
    );
    let degraded = value(&m, "attackmesh_enrichment_degraded_total", "").unwrap_or_else(|| panic!("{text}"));
    assert!(degraded <= SENT, "{text}");
    assert!(value(&m, "attackmesh_enrichment_ack_latency_seconds_count", "").unwrap() >= 1.0);

    // Attribution: batches, hits and misses (hit rate = ok / (ok + no_match)), latency, rules.
    let ok = value(&m, "attackmesh_attribution_events_total", "status=\"ok\"").unwrap_or(0.0);
    let no_match = value(&m, "attackmesh_attribution_events_total", "status=\"no_match\"").unwrap_or(0.0);
    assert!(
        ok + no_match + degraded >= SENT,
        "every valid event was attributed or degraded: {text}"
    );
    if degraded == 0.0 {
        assert!(ok >= 1.0, "a port scan hinting T1046 is a hit: {text}");
    }
    assert!(sum(&m, "attackmesh_attribution_batches_total") >= 1.0, "{text}");
    assert!(
        value(&m, "attackmesh_attribution_batch_seconds_count", "").unwrap() >= 1.0,
        "{text}"
    );
    assert!(value(&m, "attackmesh_attribution_rules", "").unwrap() > 0.0, "{text}");
    for family in [
        "attackmesh_attribution_refused_batches",
        "attackmesh_attribution_reloads",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family} is exposed: {text}"
        );
    }

    // Export: per sink delivered, retried, dead-lettered, queue depth and age.
    // Every sink delivered the batch: the file sink and, in `serve all`, the correlation sink.
    let delivered = &m["attackmesh_siem_export_delivered_events_total"];
    assert_eq!(delivered.len(), 2, "{text}");
    assert!(delivered.values().all(|&n| n == SENT), "{text}");
    let sinks = m["attackmesh_siem_export_queue_depth"].clone();
    assert!(!sinks.is_empty(), "queue depth per sink: {text}");
    for labels in sinks.keys() {
        assert!(labels.starts_with("sink=\""), "{labels}");
        assert!(
            value(&m, "attackmesh_siem_export_oldest_age_seconds", labels).is_some(),
            "queue age of {labels}: {text}"
        );
    }
    // A sink that keeps up takes every event from memory: nothing is read back from its queue.
    for family in [
        "attackmesh_siem_export_retried_events_total",
        "attackmesh_siem_export_dead_lettered_events_total",
        "attackmesh_siem_export_queue_read_back_events_total",
    ] {
        assert_eq!(sum(&m, family), 0.0, "{text}");
        assert_eq!(
            m[family].keys().collect::<Vec<_>>(),
            sinks.keys().collect::<Vec<_>>(),
            "{text}"
        );
    }
    assert!(
        m["attackmesh_enrichment_retried_batches_total"].contains_key("reason=\"rate_limit\""),
        "{text}"
    );
    for (family, kind) in [
        ("attackmesh_siem_export_retried_events", "counter"),
        ("attackmesh_siem_export_dead_lettered_events", "counter"),
        ("attackmesh_siem_export_queue_read_back_events", "counter"),
        ("attackmesh_siem_export_queue_depth", "gauge"),
        ("attackmesh_siem_export_oldest_age_seconds", "gauge"),
        ("attackmesh_siem_export_delivery_latency_seconds", "histogram"),
        ("attackmesh_intel_objects_added", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}")),
            "{family} is exposed: {text}"
        );
    }

    // Labels are fixed words and configured names: no token, nothing from an event.
    let mut forbidden: Vec<&str> = TOKENS.iter().map(|(_, _, t)| *t).collect();
    forbidden.extend([
        "metrics-0",
        "198.51.100.77",
        "netmon-metrics",
        "secret-looking-description",
    ]);
    for needle in forbidden {
        assert!(!text.contains(needle), "`{needle}` leaked into /metrics:\n{text}");
    }
}

/// A port the test found free can be taken before `serve all` binds it; the harness then starts
/// again on fresh ports, with the config's addresses moved along, instead of failing the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_all_starts_again_on_fresh_ports_when_a_port_was_taken() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = Addrs::new();
    let config = base_config(dir.path(), &addrs);
    let _taken = std::net::TcpListener::bind(addrs.metrics).unwrap();
    let serve = Serve::start(dir.path(), addrs, &config).await;
    assert_ne!(serve.addrs.metrics, addrs.metrics, "the taken port is not reused");
    let text = scrape(&serve).await;
    assert!(
        text.contains("enrichment_"),
        "metrics served on the fresh port:\n{text}"
    );
    let written = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(
        written.contains(&serve.addrs.enrichment.to_string()),
        "the config moved with the ports:\n{written}"
    );
}
