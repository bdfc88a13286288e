//! Micro-benchmarks of the export hot path: queue appends (with and without the per-batch
//! fsync) and the per-event encoders of the Elasticsearch and Splunk HEC sinks (the ECS document
//! and the HEC envelope).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::{collections::HashMap, sync::Arc};

use attackmesh_siem_export::{
    config::FsyncPolicy,
    queue::{EncodedEvent, Queue, QueueSettings},
    sinks::util::{Original, ecs::document, hec},
};
use attackmesh_testkit::fixtures;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn queue(c: &mut Criterion) {
    let events: Vec<_> = (0..500).map(fixtures::event).collect();
    let trace = Arc::new(HashMap::new());
    let encoded: Vec<EncodedEvent> = events
        .into_iter()
        .map(|e| EncodedEvent::new(Arc::new(e), trace.clone(), 1))
        .collect();
    let mut group = c.benchmark_group("queue_append_500");
    group.throughput(Throughput::Elements(500));
    group.sample_size(20);
    for (name, fsync) in [
        ("fsync_per_batch", FsyncPolicy::Batch),
        ("no_fsync", FsyncPolicy::Never),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = QueueSettings {
            max_bytes: 1 << 34,
            segment_bytes: 64 << 20,
            fsync,
        };
        let (q, _) = Queue::open("bench", dir.path(), settings).expect("queue");
        group.bench_function(name, |b| {
            b.iter(|| {
                let seqs = q.append(&encoded, 1).expect("append");
                q.ack(seqs.end, None).expect("ack");
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("encode_event");
    group.throughput(Throughput::Elements(1));
    let ev = Arc::new(fixtures::event(1));
    let now = chrono::Utc::now();
    group.bench_function("queue_record", |b| {
        b.iter(|| EncodedEvent::new(ev.clone(), trace.clone(), 1))
    });
    group.bench_function("ecs_document", |b| {
        b.iter(|| serde_json::to_vec(&document(&ev, now, Original::Keep)))
    });
    let meta = hec::Metadata::default();
    group.bench_function("hec_envelope", |b| b.iter(|| hec::envelope_bytes(&ev, &meta)));
    group.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);
