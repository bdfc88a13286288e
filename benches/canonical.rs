//! Canonical JSON of enriched events: the direct writer (`attackmesh::json::write_enriched_event`)
//! against the pbjson-generated serde path it replaced, with the detector's record kept and left
//! out (the file sink's `original = "drop"`, which used to copy the event to clear it).
//!
//! Run with `cargo bench -p attackmesh --bench canonical`. Criterion's elements/s are events per
//! second on one core over the first-org Suricata sample (attributed as siem-export receives
//! it; left out without the shared data) and over the test kit's fixture events. Beside them,
//! the string escape alone over the sample's detector records (JSON inside a JSON string: the
//! densest escaping every shape does).

#![allow(missing_docs)]

use attackmesh::{json::write_enriched_event, proto::EnrichedEvent};
use criterion::{Criterion, Throughput, criterion_group};

/// One way of writing an event's line into the buffer.
type Encoder = fn(&EnrichedEvent, &mut Vec<u8>);

fn pbjson(ev: &EnrichedEvent, out: &mut Vec<u8>) {
    attackmesh::json::write_json_line(ev, out);
}

fn pbjson_original_drop(ev: &EnrichedEvent, out: &mut Vec<u8>) {
    let ev = EnrichedEvent {
        original: String::new(),
        ..ev.clone()
    };
    attackmesh::json::write_json_line(&ev, out);
}

fn writer(ev: &EnrichedEvent, out: &mut Vec<u8>) {
    write_enriched_event(ev, true, out);
    out.push(b'\n');
}

fn writer_original_drop(ev: &EnrichedEvent, out: &mut Vec<u8>) {
    write_enriched_event(ev, false, out);
    out.push(b'\n');
}

const ENCODERS: [(&str, Encoder); 4] = [
    ("pbjson", pbjson),
    ("pbjson_original_drop", pbjson_original_drop),
    ("writer", writer),
    ("writer_original_drop", writer_original_drop),
];

fn bench(c: &mut Criterion, group: &str, events: &[EnrichedEvent]) {
    if events.is_empty() {
        return;
    }
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut out = Vec::with_capacity(events.len() * 8192);
    for (name, encode) in ENCODERS {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                events.iter().for_each(|ev| encode(ev, &mut out));
            })
        });
    }
    group.finish();
}

fn canonical(c: &mut Criterion) {
    let suricata = attackmesh_testkit::data::first_org_attributed();
    bench(c, "canonical_suricata", &suricata);
    if !suricata.is_empty() {
        let mut group = c.benchmark_group("escape_suricata");
        group.throughput(Throughput::Elements(suricata.len() as u64));
        let mut out = Vec::with_capacity(suricata.len() * 2048);
        group.bench_function("original", |b| {
            b.iter(|| {
                out.clear();
                suricata
                    .iter()
                    .for_each(|ev| attackmesh::json::escaped(&mut out, &ev.original));
            })
        });
        group.finish();
    }
    let fixtures: Vec<_> = (0..1000).map(attackmesh_testkit::fixtures::event).collect();
    bench(c, "canonical_fixture", &fixtures);
}

criterion_group!(benches, canonical);
attackmesh_testkit::criterion_main!(benches);
