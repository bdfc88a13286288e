//! Micro-benchmark of the attribution service's work on one `Attribute` batch of 500
//! detections: decoded, each detection checked and attributed (compact, as enrichment asks),
//! and all let go. `attribute_batch` is what the service does (attributes left in the received
//! bytes, see `attackmesh_attribution::batch`); `attribute_request` is the same over prost's
//! `AttributeRequest`, every attribute decoded into its map, for comparison. The `decode_*`
//! cases decode and check only.
//!
//! The `suricata` group uses 500 detections of the shared first-org Suricata sample (skipped
//! when the shared data is absent); `port_scan` uses generated detections like those of
//! `attackmesh bench pipeline`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use attackmesh::proto::{AttributeRequest, DetectionEvent};
use attackmesh_attack::Engine;
use attackmesh_attribution::batch::AttributeBatch;
use attackmesh_testkit::data;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use prost::{Message, bytes::Bytes};

const BATCH: usize = 500;

fn decode_batch(wire: Bytes) -> AttributeBatch {
    let batch = AttributeBatch::decode(wire).expect("a batch prost encoded");
    assert!(
        batch
            .events
            .iter()
            .all(|e| attackmesh::validate::detection_event(e).is_ok())
    );
    batch
}

fn decode_request(wire: Bytes) -> AttributeRequest {
    let request = AttributeRequest::decode(wire).expect("a batch prost encoded");
    assert!(
        request
            .events
            .iter()
            .all(|e| attackmesh::validate::detection_event(e).is_ok())
    );
    request
}

fn group(c: &mut Criterion, engine: &Engine, name: &str, events: Vec<DetectionEvent>) {
    let request = AttributeRequest {
        batch_id: 1,
        events: events.into_iter().cycle().take(BATCH).collect(),
        compact_for_attack_version: engine.kb().attack_version().to_owned(),
        ..Default::default()
    };
    let wire = Bytes::from(request.encode_to_vec());
    let attribute_batch = |wire: Bytes| -> f64 {
        let batch = decode_batch(wire);
        batch
            .events
            .iter()
            .map(|e| engine.attribute_compact(e).confidence_score)
            .sum()
    };
    let attribute_request = |wire: Bytes| -> f64 {
        let request = decode_request(wire);
        request
            .events
            .iter()
            .map(|e| engine.attribute_compact(e).confidence_score)
            .sum()
    };
    assert_eq!(attribute_batch(wire.clone()), attribute_request(wire.clone()));
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("attribute_batch", |b| {
        b.iter_batched(|| wire.clone(), attribute_batch, BatchSize::SmallInput)
    });
    group.bench_function("attribute_request", |b| {
        b.iter_batched(|| wire.clone(), attribute_request, BatchSize::SmallInput)
    });
    group.bench_function("decode_batch", |b| {
        b.iter_batched(|| wire.clone(), decode_batch, BatchSize::SmallInput)
    });
    group.bench_function("decode_request", |b| {
        b.iter_batched(|| wire.clone(), decode_request, BatchSize::SmallInput)
    });
    group.finish();
}

fn attribute_batch(c: &mut Criterion) {
    let engine = Engine::embedded().expect("embedded engine");
    let scans = (0..BATCH)
        .map(|i| attackmesh_testkit::events::port_scan(&format!("scan-{i}"), &format!("10.0.{}.{}", i / 250, i % 250)))
        .collect();
    group(c, &engine, "attribute_port_scan", scans);
    let events = data::first_org_detections();
    if !events.is_empty() {
        group(c, &engine, "attribute_suricata", events);
    }
}

criterion_group!(benches, attribute_batch);
attackmesh_testkit::criterion_main!(benches);
