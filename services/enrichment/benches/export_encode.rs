//! Micro-benchmark of enrichment's export hot path: a batch of attributed detections made into
//! enriched events, encoded for export and let go. `received` is what enrichment does with
//! detections from a detector's `Ingest` batch (each event written into shared buffers from the
//! bytes its detection arrived as, sent as `repeated bytes`); `encode_once` is what it does with
//! the others (each event encoded by prost as it is made); `export_request` is the contract
//! message prost encodes whole, for comparison.
//!
//! The `suricata` group uses 500 events of the shared Suricata sample, attributed by the
//! embedded engine (skipped when the shared data is absent); `port_scan` uses generated
//! detections like those of `attackmesh bench pipeline`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::collections::HashMap;

use attackmesh::codec::EncodedExport;
use attackmesh::proto::IngestRequest;
use attackmesh::proto::{Attribution, DetectionEvent, EnrichedEvent, ExportRequest};
use attackmesh_attack::Engine;
use attackmesh_enrichment::{
    detection::{Detection, IngestBatch},
    encode::EventEncoder,
};
use attackmesh_testkit::data;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use prost::{Message, bytes::Bytes};

const BATCH: usize = 500;

type Attributed = Vec<(DetectionEvent, Attribution)>;

fn trace() -> HashMap<String, String> {
    HashMap::from([(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )])
}

fn attributed(events: Vec<DetectionEvent>) -> Attributed {
    let engine = Engine::embedded().expect("embedded engine");
    events
        .into_iter()
        .cycle()
        .take(BATCH)
        .map(|ev| {
            let a = engine.attribute(&ev);
            (ev, a)
        })
        .collect()
}

/// The bytes of the `ExportRequest` of `events`, as enrichment sends it.
fn sent(events: Vec<Bytes>) -> usize {
    let request = EncodedExport {
        batch_id: 1,
        events,
        trace_context: trace(),
        ..Default::default()
    };
    request.encode_to_vec().len()
}

/// The batch's detections as an `Ingest` batch delivers them, each with its attribution.
fn received(batch: &Attributed) -> Vec<(Detection, Attribution)> {
    let ingest = IngestRequest {
        events: batch.iter().map(|(d, _)| d.clone()).collect(),
        ..Default::default()
    };
    let detections = IngestBatch::decode(Bytes::from(ingest.encode_to_vec()))
        .expect("a batch prost encoded")
        .events;
    detections
        .into_iter()
        .zip(batch.iter().map(|(_, a)| a.clone()))
        .collect()
}

fn encode_received(batch: Vec<(Detection, Attribution)>) -> usize {
    let mut encoder = EventEncoder::with_capacity(batch.len());
    for (detection, attribution) in batch {
        encoder.push_enriched(detection, attribution, 1);
    }
    sent(encoder.finish())
}

fn encode_once(batch: Attributed) -> usize {
    let mut encoder = EventEncoder::with_capacity(batch.len());
    for (detection, attribution) in batch {
        encoder.push(&attackmesh::enriched_event(detection, attribution, 1));
    }
    sent(encoder.finish())
}

fn export_request(batch: Attributed) -> usize {
    let events: Vec<EnrichedEvent> = batch
        .into_iter()
        .map(|(detection, attribution)| attackmesh::enriched_event(detection, attribution, 1))
        .collect();
    let request = ExportRequest {
        batch_id: 1,
        events,
        trace_context: trace(),
        ..Default::default()
    };
    request.encode_to_vec().len()
}

fn group(c: &mut Criterion, name: &str, batch: &Attributed) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(batch.len() as u64));
    let arrived = received(batch);
    group.bench_function("received", |b| {
        b.iter_batched(|| arrived.clone(), encode_received, BatchSize::LargeInput)
    });
    group.bench_function("encode_once", |b| {
        b.iter_batched(|| batch.clone(), encode_once, BatchSize::LargeInput)
    });
    group.bench_function("export_request", |b| {
        b.iter_batched(|| batch.clone(), export_request, BatchSize::LargeInput)
    });
    group.finish();
}

fn export_encode(c: &mut Criterion) {
    let scans = (0..BATCH)
        .map(|i| attackmesh_testkit::events::port_scan(&format!("scan-{i}"), &format!("10.0.{}.{}", i / 250, i % 250)))
        .collect();
    group(c, "port_scan", &attributed(scans));
    let events = data::first_org_detections();
    if !events.is_empty() {
        group(c, "suricata", &attributed(events));
    }
}

criterion_group!(benches, export_encode);
attackmesh_testkit::criterion_main!(benches);
