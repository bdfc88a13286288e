//! Bounds a detector runs into: the number of streams (overall and per caller), idle streams,
//! messages that stop half way, and the re-attribution backlog while attribution is away. Each
//! refuses or ends with a clear status instead of holding memory or slots without limit.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/raw_grpc.rs"]
mod raw_grpc;

use std::net::SocketAddr;

use attackmesh::proto::{AckStatus, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_testkit::{channel, free_addr, port_scan, wait_serving, with_token};
use common::*;
use raw_grpc::*;
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

/// Bound on every wait for the server to act: a stream it never ends fails the test instead of
/// hanging it.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the enrichment services of this test process hold at least `bytes` against their
/// in-flight byte budget, as their metric shows.
async fn wait_until_held(bytes: usize) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let held = attackmesh_runtime::metrics::render()
            .lines()
            .find_map(|line| line.strip_prefix("attackmesh_enrichment_in_flight_bytes "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if held >= bytes as f64 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service never counted the {bytes} bytes sent (holds {held})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A batch of `n` events of about 60 KiB each.
fn heavy_batch(tag: &str, n: usize) -> IngestRequest {
    let events = (0..n)
        .map(|i| {
            let mut ev = port_scan(&format!("{tag}-{i}"), "203.0.113.91");
            ev.original = "x".repeat(60 * 1024);
            ev
        })
        .collect();
    IngestRequest {
        batch_id: 1,
        events,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_messages_count_against_the_byte_budget_and_time_out() {
    let cluster = Cluster::start_with(|c| {
        c.max_body_bytes = 64 * 1024;
        c.ingest.max_message_bytes = 1 << 20;
        c.ingest.max_in_flight_bytes = 1 << 20;
        c.ingest.message_timeout = std::time::Duration::from_secs(3);
    })
    .await;
    // A detector announces a message of nearly the whole budget and stops 100 KB short.
    let mut stalled = raw_call(
        cluster.enrichment.addr,
        "/attackmesh.v1.IngestService/Ingest",
        DETECTOR_TOKEN,
    )
    .await;
    let mut partial = frame_header(1_000_000);
    partial.extend(vec![0u8; 900_000]);
    stalled.send(&partial, false).await;
    // Sent is not yet received: a batch read before the message would hold the room the
    // message then lacks. Wait until the service counts the message's bytes.
    wait_until_held(partial.len()).await;

    // Another batch that does not fit beside it is refused instead of taken beyond the budget.
    let mut client = cluster.ingest_client();
    let mut refused = None;
    for attempt in 0..200 {
        match ingest(
            &mut client,
            ADMIN_TOKEN,
            vec![heavy_batch(&format!("beside-{attempt}"), 6)],
        )
        .await
        {
            Err(status) => {
                refused = Some((status.code(), status.message().to_owned()));
                break;
            }
            Ok(answers) if answers[0].status == AckStatus::Retry as i32 => {
                refused = Some((Code::Unavailable, answers[0].message.clone()));
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let (code, message) = refused.expect("a batch beside the half-sent message was taken beyond the budget");
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("bytes"), "{message}");

    // The message that stopped arriving times out with a clear status...
    let status = tokio::time::timeout(PATIENCE, stalled.status())
        .await
        .expect("the half-sent message was held forever");
    assert_eq!(status.code, Code::DeadlineExceeded as i32, "{status:?}");
    assert!(status.message.contains("within 3s"), "{status:?}");
    // ...and gives its bytes back.
    let mut durable = false;
    for attempt in 0..200 {
        let answers = ingest(
            &mut client,
            ADMIN_TOKEN,
            vec![heavy_batch(&format!("after-{attempt}"), 6)],
        )
        .await;
        if answers.is_ok_and(|a| a[0].status == AckStatus::Durable as i32) {
            durable = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(durable, "the budget came back once the half-sent message was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_are_closed_with_a_clear_status() {
    let cluster = Cluster::start_with(|c| c.ingest.idle_timeout = std::time::Duration::from_millis(300)).await;
    let mut client = cluster.ingest_client();
    let (tx, rx) = tokio::sync::mpsc::channel::<IngestRequest>(1);
    let mut answers = client
        .ingest(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            DETECTOR_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    tx.send(IngestRequest {
        batch_id: 1,
        events: vec![port_scan("idle-1", "203.0.113.92")],
        ..Default::default()
    })
    .await
    .unwrap();
    let first = answers.message().await.unwrap().unwrap();
    assert_eq!(first.status, AckStatus::Durable as i32, "{first:?}");
    // Then nothing: the stream is ended, not held.
    let ended = tokio::time::timeout(PATIENCE, answers.message())
        .await
        .expect("an idle stream was held forever");
    let status = ended.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("idle"), "{}", status.message());
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_take_every_stream() {
    // max_streams 8 gives every caller a quota of 2 by default.
    let cluster = Cluster::start_with(|c| c.ingest.max_streams = 8).await;
    let mut client = cluster.ingest_client();
    let mut held = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<IngestRequest>(1);
        let stream = client
            .ingest(with_token(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                DETECTOR_TOKEN,
            ))
            .await
            .unwrap();
        held.push((tx, stream));
    }
    let err = ingest(&mut client, DETECTOR_TOKEN, vec![IngestRequest::default()])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(
        err.message().contains("`det`") && err.message().contains("max_streams_per_caller"),
        "the refusal names the caller and the quota: {}",
        err.message()
    );
    // Another detector still gets in.
    let batch = IngestRequest {
        batch_id: 9,
        events: vec![port_scan("other-caller-1", "203.0.113.93")],
        ..Default::default()
    };
    let answers = ingest(&mut client, LIMITED_TOKEN, vec![batch]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32, "{:?}", answers[0]);
}
