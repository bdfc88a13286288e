//! What a careless or hostile detector sends that no generated client would: bytes that are not
//! the message the RPC expects are the caller's mistake (INVALID_ARGUMENT), never INTERNAL; and
//! every enriched event says which token submitted it, beside the source it claims.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/raw_grpc.rs"]
mod raw_grpc;

use std::collections::BTreeSet;

use attackmesh::proto::{AckStatus, EnrichRequest, IngestRequest};
use attackmesh_testkit::{port_scan, wait_for_sink, with_token};
use common::*;
use raw_grpc::*;
use tonic::Code;

const ENRICH: &str = "/attackmesh.v1.IngestService/Enrich";
const INGEST: &str = "/attackmesh.v1.IngestService/Ingest";

/// `EnrichRequest` payloads that do not decode.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    // Field 1 (`event`) announces 50 bytes and carries 3.
    let truncated = vec![0x0a, 50, 1, 2, 3];
    // Field 1 sent as a varint instead of a message.
    let wrong_wire_type = vec![0x08, 1];
    // An unknown field of nested groups 150 deep, beyond the decoder's recursion limit.
    let mut deep = vec![0x7b; 150];
    deep.extend(vec![0x7c; 150]);
    vec![
        ("truncated", truncated),
        ("wrong wire type", wrong_wire_type),
        ("recursion limit", deep),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument() {
    let cluster = Cluster::start().await;
    let addr = cluster.enrichment.addr;
    for (what, payload) in malformed() {
        let mut call = raw_call(addr, ENRICH, ANALYST_TOKEN).await;
        call.send(&frame(&payload), true).await;
        let status = call.status().await;
        assert_eq!(status.code, Code::InvalidArgument as i32, "Enrich, {what}: {status:?}");

        let mut call = raw_call(addr, INGEST, DETECTOR_TOKEN).await;
        // The same bytes as one event of a batch (field 2, `events`).
        let mut batch = vec![0x12];
        let mut len = payload.len();
        while len >= 0x80 {
            batch.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        batch.push(len as u8);
        batch.extend(&payload);
        call.send(&frame(&batch), true).await;
        let status = call.status().await;
        assert_eq!(status.code, Code::InvalidArgument as i32, "Ingest, {what}: {status:?}");
        assert!(
            status.message.contains("IngestRequest.events"),
            "Ingest, {what}: the answer names the field: {status:?}"
        );
    }
    // A batch whose `events` field is a varint, not an event.
    let mut call = raw_call(addr, INGEST, DETECTOR_TOKEN).await;
    call.send(&frame(&[0x10, 1]), true).await;
    let status = call.status().await;
    assert_eq!(
        status.code,
        Code::InvalidArgument as i32,
        "events as a varint: {status:?}"
    );
    assert!(status.message.contains("IngestRequest.events"), "{status:?}");
    // A stream that ends inside a message.
    let mut call = raw_call(addr, INGEST, DETECTOR_TOKEN).await;
    let mut cut = frame_header(100);
    cut.extend([0x08, 1]);
    call.send(&cut, true).await;
    let status = call.status().await;
    assert_eq!(status.code, Code::InvalidArgument as i32, "cut message: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enriched_events_record_the_token_that_submitted_them() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();
    let batch = IngestRequest {
        batch_id: 1,
        events: vec![port_scan("claimed-source-1", "203.0.113.94")],
        ..Default::default()
    };
    let answers = ingest(&mut client, LIMITED_TOKEN, vec![batch]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32);
    // A detector that names another submitter is not believed.
    let mut forged = port_scan("claimed-source-2", "203.0.113.95");
    forged.submitted_by = "someone-else".into();
    let batch = IngestRequest {
        batch_id: 2,
        events: vec![forged],
        ..Default::default()
    };
    let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32);
    let ids = BTreeSet::from(["claimed-source-1".to_owned(), "claimed-source-2".to_owned()]);
    wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let text = std::fs::read_to_string(cluster.sink()).unwrap();
    let line = |id: &str| -> serde_json::Value {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["event_id"] == id)
            .unwrap()
    };
    let first = line("claimed-source-1");
    assert_eq!(first["source_service"], "netmon-01", "the claimed source is kept");
    assert_eq!(
        first["submitted_by"], "limited",
        "the token's caller name is recorded: {first}"
    );
    assert_eq!(line("claimed-source-2")["submitted_by"], "det");

    // Manual enrichment records its caller too.
    let enriched = client
        .enrich(with_token(
            EnrichRequest {
                event: Some(port_scan("claimed-source-3", "203.0.113.96")),
            },
            ANALYST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(
        (enriched.source_service.as_str(), enriched.submitted_by.as_str()),
        ("netmon-01", "ana")
    );
}
