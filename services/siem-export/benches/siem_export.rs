//! Micro-benchmarks of the export hot path: queue appends (with and without the per-batch
//! fsync), the per-event encoders of the Elasticsearch and Splunk HEC sinks (the ECS document
//! and the HEC envelope), and every sink shape over the real Suricata sample as siem-export
//! receives it (parsed and attributed), the ECS value tree the writer replaced beside it.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::{collections::HashMap, sync::Arc};

use attackmesh::{formats::Format, proto::EnrichedEvent};
use attackmesh_siem_export::{
    config::FsyncPolicy,
    queue::{EncodedEvent, Queue, QueueSettings},
    sinks::util::{Original, ecs, hec},
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
    let mut out = Vec::new();
    group.bench_function("ecs_document", |b| {
        b.iter(|| {
            out.clear();
            ecs::write_document(&ev, now, Original::Keep, &mut out);
        })
    });
    let meta = hec::Metadata::default();
    group.bench_function("hec_envelope", |b| {
        b.iter(|| {
            out.clear();
            hec::write_envelope(&ev, &meta, &mut out);
        })
    });
    group.finish();
}

#[path = "../src/sinks/util/ecs_tree.rs"]
mod ecs_tree;

/// One shape's encoder: appends the event's line to the buffer.
type Encoder = Box<dyn Fn(&EnrichedEvent, &mut Vec<u8>)>;

/// Every sink shape over the first-org Suricata sample: µs per event (criterion's time over
/// the sample's length) and, on stderr, bytes per event.
fn shapes(c: &mut Criterion) {
    let Some(data) = attackmesh_testkit::data::shared_data() else {
        return;
    };
    let path = data.join("samples/suricata/first-org-conf-2015.eve.ndjson");
    let events = attackmesh_testkit::data::attributed_samples(Format::SuricataEve, &path);
    let n = events.len();
    let now = chrono::Utc::now();
    let meta = hec::Metadata::default();
    let encoders: Vec<(&str, Encoder)> = vec![
        (
            "ecs_value_tree",
            Box::new(move |ev, out| {
                let _ = serde_json::to_writer(&mut *out, &ecs_tree::document(ev, now, Original::Keep));
                out.push(b'\n');
            }),
        ),
        (
            "ecs_writer",
            Box::new(move |ev, out| {
                ecs::write_document(ev, now, Original::Keep, out);
                out.push(b'\n');
            }),
        ),
        (
            "ecs_writer_original_drop",
            Box::new(move |ev, out| {
                ecs::write_document(ev, now, Original::Drop, out);
                out.push(b'\n');
            }),
        ),
        (
            "hec_vec_per_event",
            Box::new(move |ev, out| {
                let mut own = Vec::new();
                hec::write_envelope(ev, &meta, &mut own);
                out.extend_from_slice(&own);
                out.push(b'\n');
            }),
        ),
        (
            "hec_writer",
            Box::new(move |ev, out| {
                hec::write_envelope(ev, &meta, out);
                out.push(b'\n');
            }),
        ),
        (
            "canonical",
            Box::new(attackmesh::json::write_json_line::<EnrichedEvent>),
        ),
    ];
    let record: usize = events.iter().map(|e| e.original.len()).sum();
    eprintln!(
        "suricata first-org: {n} events, detector record {} bytes per event",
        record / n
    );
    let mut group = c.benchmark_group("shape_suricata");
    group.throughput(Throughput::Elements(n as u64));
    let mut out = Vec::with_capacity(n * 8192);
    for (name, encode) in &encoders {
        out.clear();
        events.iter().for_each(|ev| encode(ev, &mut out));
        eprintln!("{name}: {} bytes per event", out.len() / n);
        group.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                events.iter().for_each(|ev| encode(ev, &mut out));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, queue, shapes);
criterion_main!(benches);
