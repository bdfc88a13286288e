//! Bounds a detector runs into: the number of streams, and the re-attribution backlog while
//! attribution is away. Both refuse with a wait instead of buffering without limit.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use attackmesh::proto::{AckStatus, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_testkit::{channel, free_addr, port_scan, wait_serving, with_token};
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_with_resource_exhausted() {
    let cluster = Cluster::start_with(|c| c.ingest.max_streams = 1).await;
    let mut client = cluster.ingest_client();
    let (_hold, rx) = tokio::sync::mpsc::channel::<IngestRequest>(1);
    let _first = client
        .ingest(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            DETECTOR_TOKEN,
        ))
        .await
        .unwrap();
    let err = ingest(&mut client, DETECTOR_TOKEN, vec![IngestRequest::default()])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("at most 1 ingest streams"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_reattribution_backlog_turns_degraded_batches_into_retry() {
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // Attribution never comes up: every event is DEGRADED and goes to the backlog.
    let nobody = free_addr();
    let export = start_export(any, dir.path());
    let mut config = enrichment_config(dir.path(), nobody, export.addr);
    config.reattribute.max_bytes = 1024 * 1024;
    let enrichment = start_enrichment(any, config);
    wait_serving(enrichment.addr).await;
    let mut client = IngestServiceClient::new(channel(enrichment.addr));
    let mut statuses = Vec::new();
    for b in 0..10u64 {
        let events = (0..5)
            .map(|i| {
                let mut ev = port_scan(&format!("full-{b}-{i}"), "203.0.113.90");
                ev.original = "x".repeat(60 * 1024);
                ev
            })
            .collect();
        let batch = IngestRequest {
            batch_id: b,
            events,
            ..Default::default()
        };
        let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap();
        statuses.push((answers[0].status, answers[0].message.clone()));
    }
    let durable = statuses.iter().filter(|(s, _)| *s == AckStatus::Durable as i32).count();
    assert!(
        durable >= 2,
        "batches are taken while the backlog has room: {statuses:?}"
    );
    let (status, message) = statuses.last().unwrap();
    assert_eq!(*status, AckStatus::Retry as i32, "then refused: {statuses:?}");
    assert!(message.contains("backlog is full"), "{message}");
    let log = dir.path().join("enrichment/reattribute/reattribute.log");
    assert!(
        std::fs::metadata(log).unwrap().len() <= 1024 * 1024,
        "the log stays within max_bytes"
    );
}
