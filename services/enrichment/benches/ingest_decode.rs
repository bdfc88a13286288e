//! Micro-benchmark of enrichment's intake: one `Ingest` batch of 500 detections decoded, each
//! detection checked, and all let go. `ingest_batch` is what enrichment does (events kept as the
//! bytes they arrived as, attributes left in them while they are as a map encoder writes them,
//! see `attackmesh_enrichment::detection`); `ingest_request` is prost's `IngestRequest`, every
//! attribute decoded into its map, for comparison.
//!
//! The `suricata` group uses 500 detections of the shared first-org Suricata sample (skipped
//! when the shared data is absent); `port_scan` uses generated detections like those of
//! `attackmesh bench pipeline`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use attackmesh::proto::{DetectionEvent, IngestRequest};
use attackmesh_enrichment::detection::IngestBatch;
use attackmesh_testkit::data;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use prost::{Message, bytes::Bytes};

const BATCH: usize = 500;

fn ingest_batch(wire: Bytes) -> usize {
    let batch = IngestBatch::decode(wire).expect("a batch prost encoded");
    batch.events.iter().filter(|d| d.validate().is_ok()).count()
}

fn ingest_request(wire: Bytes) -> usize {
    let request = IngestRequest::decode(wire).expect("a batch prost encoded");
    request
        .events
        .iter()
        .filter(|e| attackmesh::validate::detection_event(*e).is_ok())
        .count()
}

fn group(c: &mut Criterion, name: &str, events: Vec<DetectionEvent>) {
    let request = IngestRequest {
        batch_id: 1,
        events: events.into_iter().cycle().take(BATCH).collect(),
        ..Default::default()
    };
    let wire = Bytes::from(request.encode_to_vec());
    assert_eq!(ingest_batch(wire.clone()), ingest_request(wire.clone()));
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("ingest_batch", |b| {
        b.iter_batched(|| wire.clone(), ingest_batch, BatchSize::SmallInput)
    });
    group.bench_function("ingest_request", |b| {
        b.iter_batched(|| wire.clone(), ingest_request, BatchSize::SmallInput)
    });
    group.finish();
}

fn ingest_decode(c: &mut Criterion) {
    let scans = (0..BATCH)
        .map(|i| attackmesh_testkit::events::port_scan(&format!("scan-{i}"), &format!("10.0.{}.{}", i / 250, i % 250)))
        .collect();
    group(c, "port_scan", scans);
    let events = data::first_org_detections();
    if !events.is_empty() {
        group(c, "suricata", events);
    }
}

criterion_group!(benches, ingest_decode);
attackmesh_testkit::criterion_main!(benches);
