//! Micro-benchmark of what enrichment sends attribution: a batch of detections encoded as the
//! gRPC codec does (room for the whole message reserved, then written). `received` is what
//! enrichment does with detections that came in an `Ingest` batch (each sent on as the bytes it
//! arrived as); `attribute_batch` what it does with the others (each event's length computed
//! once, as the batch is made); `attribute_request` is the contract message prost encodes whole,
//! for comparison.
//!
//! The `suricata` group uses 500 detections of the first-org Suricata sample (skipped when the
//! shared data is absent); `port_scan` uses generated detections like those of
//! `attackmesh bench pipeline`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use attackmesh::proto::{AttributeRequest, DetectionEvent, IngestRequest};
use attackmesh_enrichment::{
    detection::{Detection, IngestBatch},
    encode::AttributeBatch,
};
use attackmesh_testkit::data;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use prost::{Message, bytes::Bytes};

const BATCH: usize = 500;

fn request(events: Vec<DetectionEvent>) -> AttributeRequest {
    AttributeRequest {
        batch_id: 1,
        events: events.into_iter().cycle().take(BATCH).collect(),
        trace_context: [(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]
        .into(),
        compact_for_attack_version: "18.1".into(),
    }
}

/// Encodes `message` as the codec does: reserves its whole length, then writes it.
fn send(message: &impl Message) -> usize {
    let mut buf = Vec::with_capacity(message.encoded_len());
    message.encode_raw(&mut buf);
    buf.len()
}

fn group(c: &mut Criterion, name: &str, request: &AttributeRequest) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(request.events.len() as u64));
    let ingest = IngestRequest {
        events: request.events.clone(),
        ..Default::default()
    };
    let received: Vec<Detection> = IngestBatch::decode(Bytes::from(ingest.encode_to_vec()))
        .expect("decodes")
        .events;
    let header = AttributeRequest {
        events: Vec::new(),
        ..request.clone()
    };
    group.bench_function("received", |b| {
        b.iter_batched(
            || received.clone(),
            |detections| send(&AttributeBatch::new(header.clone(), detections)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("attribute_batch", |b| {
        b.iter_batched(
            || request.clone(),
            |request| send(&AttributeBatch::new(request, Vec::new())),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("attribute_request", |b| {
        b.iter_batched(|| request.clone(), |request| send(&request), BatchSize::LargeInput)
    });
    group.finish();
}

fn attribute_encode(c: &mut Criterion) {
    let scans = (0..BATCH)
        .map(|i| attackmesh_testkit::events::port_scan(&format!("scan-{i}"), &format!("10.0.{}.{}", i / 250, i % 250)))
        .collect();
    group(c, "port_scan", &request(scans));
    let suricata = data::first_org_detections();
    if !suricata.is_empty() {
        group(c, "suricata", &request(suricata));
    }
}

criterion_group!(benches, attribute_encode);
attackmesh_testkit::criterion_main!(benches);
