//! Micro-benchmark of the shipper's hot path (`attackmesh ship`): 500 real Suricata records
//! parsed and made into the bytes of one `Ingest` batch. `encode_each` is what the shipper does
//! (each event encoded as it is parsed, then recycled; the batch is `repeated bytes`);
//! `ingest_request` keeps the parsed events and has prost encode the `IngestRequest` whole.
//! Skipped when the shared data is absent.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use attackmesh::{
    codec::EncodedIngest,
    formats::{Format, Reader},
    proto::IngestRequest,
};
use attackmesh_testkit::data;
use criterion::{Criterion, Throughput, criterion_group};
use prost::{Message, bytes::Bytes};

const BATCH: usize = 500;

fn records(lines: &[u8]) -> impl Iterator<Item = attackmesh::proto::DetectionEvent> + '_ {
    Reader::new(Format::SuricataEve, lines, "bench")
        .filter_map(|record| record.result.ok().flatten())
        .take(BATCH)
}

fn encode_each(lines: &[u8]) -> usize {
    let events = records(lines)
        .map(|event| {
            let encoded = Bytes::from(event.encode_to_vec());
            attackmesh::formats::recycle(event);
            encoded
        })
        .collect();
    EncodedIngest {
        batch_id: 1,
        events,
        trace_context: Default::default(),
    }
    .encode_to_vec()
    .len()
}

fn ingest_request(lines: &[u8]) -> usize {
    IngestRequest {
        batch_id: 1,
        events: records(lines).collect(),
        trace_context: Default::default(),
    }
    .encode_to_vec()
    .len()
}

fn ship_encode(c: &mut Criterion) {
    let Some(path) = data::first_org_sample() else {
        return;
    };
    let sample = std::fs::read(path).expect("sample readable");
    let lines: Vec<u8> = sample.iter().copied().cycle().take(sample.len() * 8).collect();
    assert_eq!(encode_each(&lines), ingest_request(&lines), "both make the same batch");
    let mut group = c.benchmark_group("suricata");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode_each", |b| b.iter(|| encode_each(&lines)));
    group.bench_function("ingest_request", |b| b.iter(|| ingest_request(&lines)));
    group.finish();
}

criterion_group!(benches, ship_encode);
attackmesh_testkit::criterion_main!(benches);
