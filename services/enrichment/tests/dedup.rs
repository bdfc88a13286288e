//! A resent `event_id` reaches the file sink once, whichever door it comes in by: the same
//! detection in several Ingest batches, one Falco alert posted again and again, the same event
//! enriched by hand several times. One batch that carries an id twice is answered per copy:
//! identical copies are one event, copies that differ are refused for that id.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use attackmesh::proto::{AckStatus, EnrichRequest, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_testkit::{port_scan, wait_for_sink, with_token};
use common::*;
use tonic::transport::Channel;

fn batch(batch_id: u64, events: Vec<attackmesh::proto::DetectionEvent>) -> IngestRequest {
    IngestRequest {
        batch_id,
        events,
        ..Default::default()
    }
}

/// Sends a marker event last and waits until it is in the sink: the sink's queue is in order,
/// so everything sent before it has been written (or skipped) by then.
async fn settle(cluster: &Cluster, client: &mut IngestServiceClient<Channel>, marker: &str) -> Vec<(String, u32)> {
    let answers = ingest(
        client,
        DETECTOR_TOKEN,
        vec![batch(999, vec![port_scan(marker, "198.51.100.9")])],
    )
    .await
    .unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32);
    let ids = BTreeSet::from([marker.to_owned()]);
    wait_for_sink(&cluster.sink(), &ids, |_| true)
        .await
        .into_iter()
        .map(|e| (e.event_id, e.revision))
        .collect()
}

fn lines_of(written: &[(String, u32)], id: &str) -> usize {
    written.iter().filter(|(i, _)| i == id).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_id_is_written_once_whichever_way_it_comes() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();

    // The same detection in three batches.
    for batch_id in 0..3 {
        let answers = ingest(
            &mut client,
            DETECTOR_TOKEN,
            vec![batch(batch_id, vec![port_scan("resent-1", "203.0.113.7")])],
        )
        .await
        .unwrap();
        assert_eq!(answers[0].status, AckStatus::Durable as i32);
    }

    // One Falco alert (one uuid, so one event id) posted ten times.
    let alert = serde_json::json!({
        "hostname": "node-7",
        "output": "Notice shell spawned (bash -i)",
        "priority": "Notice",
        "rule": "Terminal shell in container",
        "source": "syscall",
        "tags": ["container", "T1059"],
        "time": chrono::Utc::now().to_rfc3339(),
        "uuid": "4f1e0c6a-55a1-4b0e-9a63-1c0f0e3a7b99",
        "output_fields": {"proc.cmdline": "bash -i", "proc.name": "bash", "user.name": "root"},
    })
    .to_string();
    let falco_id = attackmesh_enrichment::http::parse_body(&alert).unwrap()[0]
        .event_id
        .clone();
    let http = cluster.enrichment.http.unwrap();
    for _ in 0..10 {
        let (status, _, body) = http_post(
            http,
            "/falco",
            &[
                ("authorization", &format!("Bearer {DETECTOR_TOKEN}")),
                ("content-type", "application/json"),
            ],
            alert.as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    // The same detection enriched by hand four times.
    for _ in 0..4 {
        client
            .enrich(with_token(
                EnrichRequest {
                    event: Some(port_scan("enriched-1", "203.0.113.8")),
                },
                ANALYST_TOKEN,
            ))
            .await
            .unwrap();
    }

    let written = settle(&cluster, &mut client, "marker-1").await;
    assert_eq!(
        lines_of(&written, "resent-1"),
        1,
        "three batches, one line: {written:?}"
    );
    assert_eq!(
        lines_of(&written, &falco_id),
        1,
        "ten Falco posts, one line: {written:?}"
    );
    assert_eq!(
        lines_of(&written, "enriched-1"),
        1,
        "four Enrich calls, one line: {written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_with_an_id_twice_is_one_event_or_refused_for_that_id() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();

    let same = port_scan("twice-same", "203.0.113.20");
    let first = port_scan("twice-differ", "203.0.113.21");
    let mut second = first.clone();
    second.description = "a different detection under the same id".into();
    let other = port_scan("alone", "203.0.113.22");
    let answers = ingest(
        &mut client,
        DETECTOR_TOKEN,
        vec![batch(1, vec![same.clone(), first, other, second, same])],
    )
    .await
    .unwrap();
    let answer = &answers[0];
    assert_eq!(answer.status, AckStatus::Durable as i32);
    let refused: Vec<(u32, &str)> = answer
        .rejections
        .iter()
        .map(|r| (r.index, r.event_id.as_str()))
        .collect();
    assert_eq!(refused, vec![(1, "twice-differ"), (3, "twice-differ")], "{answer:?}");
    for r in &answer.rejections {
        assert_eq!(r.violations[0].field, "event_id");
        assert!(r.violations[0].description.contains("twice-differ"), "{r:?}");
    }
    assert_eq!((answer.accepted, answer.rejected), (3, 2));

    let written = settle(&cluster, &mut client, "marker-2").await;
    assert_eq!(
        lines_of(&written, "twice-same"),
        1,
        "identical copies are one event: {written:?}"
    );
    assert_eq!(lines_of(&written, "twice-differ"), 0, "{written:?}");
    assert_eq!(lines_of(&written, "alone"), 1);
}
