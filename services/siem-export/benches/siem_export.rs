//! Micro-benchmarks of the export hot path: reading an Export batch into queue records (the
//! events' bytes kept as they arrived, beside decoding and encoding them again), queue appends
//! (with and without the per-batch fsync) and reads back from disk, and the per-event encoders
//! of the queue record, the Elasticsearch and Splunk HEC sinks (the ECS document and the HEC
//! envelope), and every sink shape over the real Suricata sample as siem-export receives it
//! (parsed and attributed; the ECS and canonical shapes also with the attributes left in the
//! received bytes, as siem-export holds them), and the file sink writing a batch of it (its pages dropped from the
//! page cache once synced, the default, and kept).
//!
//! The `suricata` benchmarks use 500 alerts of the shared Suricata sample, attributed by the
//! embedded engine as the pipeline does (about 3 KB encoded each); they are skipped when the
//! shared data is absent. The `_compact` cases take the same alerts in the compact form
//! enrichment sends while siem-export holds its ATT&CK release: decoded, and written by
//! reference to the knowledge base.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::{collections::HashMap, sync::Arc};

use attackmesh::{
    codec::EncodedExport,
    held::Held,
    proto::{EnrichedEvent, ExportRequest},
};
use attackmesh_attack::{Engine, compact};
use attackmesh_siem_export::{
    config::FsyncPolicy,
    queue::{EncodedEvent, Queue, QueueSettings, ReceivedEvent},
    sinks::{
        QueuedEvent, Sink,
        file::{DEFAULT_DEDUP_IDS, FileShape, FileSink, FileSinkConfig, PageCache},
        util::{Original, ecs, hec, warm::warmed},
    },
};
use attackmesh_testkit::{data, fixtures};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use prost::Message;

const BATCH: usize = 500;

fn trace() -> Arc<HashMap<String, String>> {
    Arc::new(HashMap::from([(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )]))
}

fn settings(fsync: FsyncPolicy) -> QueueSettings {
    QueueSettings {
        max_bytes: 1 << 34,
        segment_bytes: 64 << 20,
        fsync,
    }
}

/// A batch of the Suricata sample's alerts (repeated under fresh ids), enriched as the
/// pipeline enriches them: in full, or in the compact form of an `Export` batch.
fn suricata_batch(engine: &Engine, compact: bool) -> Option<Vec<EnrichedEvent>> {
    let detections = data::first_org_detections();
    if detections.is_empty() {
        return None;
    }
    let events = (0..BATCH)
        .map(|i| {
            let mut detection = detections[i % detections.len()].clone();
            detection.event_id = format!("{}-{i}", detection.event_id);
            detection.submitted_by = "det".into();
            let attribution = if compact {
                let mut a = engine.attribute_compact(&detection);
                compact::for_export(engine.kb(), &mut a, engine.rule_pack_version()).expect("compact");
                a
            } else {
                engine.attribute(&detection)
            };
            attackmesh::enriched_event(detection, attribution, 1)
        })
        .collect();
    Some(events)
}

// Not inlined, so that instruction counts (`valgrind --tool=callgrind`) can name them.

#[inline(never)]
fn decode_request(wire: &Bytes) -> ExportRequest {
    ExportRequest::decode(wire.clone()).expect("decode")
}

#[inline(never)]
fn decode_kept_bytes(wire: &Bytes) -> Vec<ReceivedEvent> {
    let batch = EncodedExport::decode(wire.clone()).expect("decode");
    batch
        .events
        .into_iter()
        .map(|e| ReceivedEvent::decode(e).expect("decode"))
        .collect()
}

/// What siem-export did: decode the request, encode each event again.
#[inline(never)]
fn records_reencoded(wire: &Bytes, trace: &Arc<HashMap<String, String>>) -> Vec<EncodedEvent> {
    decode_request(wire)
        .events
        .into_iter()
        .map(|e| EncodedEvent::new(e, trace.clone(), 1))
        .collect()
}

/// What it does: decode each event beside the bytes it keeps.
#[inline(never)]
fn records_kept_bytes(wire: &Bytes, trace: &Arc<HashMap<String, String>>) -> Vec<EncodedEvent> {
    decode_kept_bytes(wire)
        .into_iter()
        .map(|e| EncodedEvent::received(e, trace.clone(), 1))
        .collect()
}

/// An Export batch's bytes into queue records: as siem-export did (decode the request, encode
/// each event again) and as it does (decode each event beside its kept bytes).
fn export_batch(c: &mut Criterion, events: &[EnrichedEvent], compact_events: &[EnrichedEvent]) {
    let trace = trace();
    let compact_wire = Bytes::from(
        ExportRequest {
            batch_id: 1,
            events: compact_events.to_vec(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let request = ExportRequest {
        batch_id: 1,
        events: events.to_vec(),
        trace_context: HashMap::clone(&trace),
        ..Default::default()
    };
    let wire = Bytes::from(request.encode_to_vec());
    eprintln!(
        "export batch: {} events, {} bytes ({} per event)",
        events.len(),
        wire.len(),
        wire.len() / events.len()
    );
    let mut group = c.benchmark_group("export_batch_500_suricata");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("decode_request", |b| b.iter(|| decode_request(&wire)));
    group.bench_function("decode_kept_bytes", |b| b.iter(|| decode_kept_bytes(&wire)));
    eprintln!(
        "export batch, compact: {} bytes per event",
        compact_wire.len() / compact_events.len()
    );
    group.bench_function("decode_kept_bytes_compact", |b| {
        b.iter(|| decode_kept_bytes(&compact_wire))
    });
    group.bench_function("to_records_reencoded", |b| {
        b.iter_with_large_drop(|| records_reencoded(&wire, &trace))
    });
    group.bench_function("to_records_kept_bytes", |b| {
        b.iter_with_large_drop(|| records_kept_bytes(&wire, &trace))
    });
    group.finish();

    let mut group = c.benchmark_group("encode_event");
    group.throughput(Throughput::Elements(1));
    let event = events[0].clone();
    let received = ReceivedEvent::decode(Bytes::from(event.encode_to_vec())).expect("decode");
    group.bench_function("queue_record_suricata", |b| {
        b.iter_batched(
            || event.clone(),
            |e| EncodedEvent::new(e, trace.clone(), 1),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("queue_record_suricata_kept_bytes", |b| {
        b.iter_batched(
            || received.clone(),
            |r| EncodedEvent::received(r, trace.clone(), 1),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Appends of the batch's records, and reading them back from the segment files.
fn queue_suricata(c: &mut Criterion, events: &[EnrichedEvent]) {
    let trace = trace();
    let records: Vec<EncodedEvent> = events
        .iter()
        .map(|e| EncodedEvent::new(e.clone(), trace.clone(), 1))
        .collect();
    let mut group = c.benchmark_group("queue_append_500_suricata");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    for (name, fsync) in [
        ("fsync_per_batch", FsyncPolicy::Batch),
        ("no_fsync", FsyncPolicy::Never),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (q, _) = Queue::open("bench", dir.path(), settings(fsync)).expect("queue");
        group.bench_function(name, |b| {
            b.iter(|| {
                let seqs = q.append(&records, 1).expect("append");
                q.ack(seqs.end, None).expect("ack");
            })
        });
    }
    group.finish();

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (q, _) = Queue::open("bench", dir.path(), settings(FsyncPolicy::Batch)).expect("queue");
        q.append(&records, 1).expect("append");
    }
    let mut group = c.benchmark_group("queue_read_500_suricata");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    group.bench_function("from_disk", |b| {
        b.iter_batched(
            || {
                let (q, _) = Queue::open("bench", dir.path(), settings(FsyncPolicy::Batch)).expect("queue");
                q.reader().expect("reader")
            },
            |mut reader| {
                let items = reader.read_available(BATCH, usize::MAX).expect("read");
                assert_eq!(items.len(), BATCH);
                (items, reader)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn suricata(c: &mut Criterion) {
    let engine = Engine::embedded().expect("engine");
    let (Some(events), Some(compact_events)) = (suricata_batch(&engine, false), suricata_batch(&engine, true)) else {
        return;
    };
    export_batch(c, &events, &compact_events);
    queue_suricata(c, &events);
    file_sink_suricata(c, &events, &compact_events, &engine);
}

/// The file sink writing the batch as canonical lines, synced, as its driver hands it over:
/// without a dedup record, and with the default one (each round under fresh event ids, so every
/// line is still written and the record fills and evicts as in a long run); and the compact
/// batch, written by reference to the knowledge base, as canonical lines and as the ECS and HEC
/// shapes beside the full batch; then two batches sent at once.
fn file_sink_suricata(c: &mut Criterion, events: &[EnrichedEvent], compact_events: &[EnrichedEvent], engine: &Engine) {
    let trace = trace();
    let release: Arc<str> = engine.kb().attack_version().into();
    let queued = |round: u64, compact: bool| -> Vec<Arc<QueuedEvent>> {
        let events = if compact { compact_events } else { events };
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut event = e.clone();
                if round > 0 {
                    event.event_id = format!("{round}-{}", e.event_id);
                }
                Arc::new(QueuedEvent {
                    seq: i as u64,
                    event: Arc::new(event.into()),
                    trace_context: trace.clone(),
                    enqueued_at_micros: 1,
                    compact_for: compact.then(|| release.clone()),
                })
            })
            .collect()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("file_sink_500_suricata");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    // `page_cache: keep` beside the default `drop`: what leaving the written pages cached costs.
    let canonical = FileShape::Canonical;
    for (name, shape, dedup_ids, page_cache, compact) in [
        ("canonical_fsync", canonical, 0, PageCache::Drop, false),
        ("canonical_fsync_compact", canonical, 0, PageCache::Drop, true),
        ("canonical_fsync_page_cache_keep", canonical, 0, PageCache::Keep, false),
        (
            "canonical_fsync_dedup",
            canonical,
            DEFAULT_DEDUP_IDS,
            PageCache::Drop,
            false,
        ),
        ("ecs_fsync", FileShape::Ecs, 0, PageCache::Drop, false),
        ("ecs_fsync_compact", FileShape::Ecs, 0, PageCache::Drop, true),
        ("hec_fsync", FileShape::Hec, 0, PageCache::Drop, false),
        ("hec_fsync_compact", FileShape::Hec, 0, PageCache::Drop, true),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FileSinkConfig {
            path: Some(dir.path().join("events.ndjson")),
            shape,
            dedup_ids,
            page_cache,
            rotate_bytes: 64 << 20,
            keep_files: 1,
            ..Default::default()
        };
        let sink = FileSink::new(&config, dir.path().join("delivered.log"))
            .expect("file sink")
            .with_kb(engine.kb().clone());
        let first = queued(0, compact);
        let mut round = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    if dedup_ids == 0 {
                        first.clone()
                    } else {
                        queued(round, compact)
                    }
                },
                // The batch is returned, so that freeing it is not timed.
                |batch| {
                    runtime.block_on(sink.send(&batch));
                    batch
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    // Two batches in flight at once, as the driver sends them under load: the second is encoded
    // while the first waits for its syncs.
    let mut group = c.benchmark_group("file_sink_2x500_suricata");
    group.throughput(Throughput::Elements(2 * events.len() as u64));
    group.sample_size(20);
    for (name, shape) in [
        ("canonical_fsync_dedup", canonical),
        ("ecs_fsync_dedup", FileShape::Ecs),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FileSinkConfig {
            path: Some(dir.path().join("events.ndjson")),
            shape,
            rotate_bytes: 64 << 20,
            keep_files: 1,
            ..Default::default()
        };
        let sink = FileSink::new(&config, dir.path().join("delivered.log")).expect("file sink");
        let mut round = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 2;
                    (queued(round - 1, false), queued(round, false))
                },
                |(first, second)| {
                    runtime.block_on(futures::future::join(sink.send(&first), sink.send(&second)));
                    (first, second)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn queue(c: &mut Criterion) {
    let events: Vec<_> = (0..500).map(fixtures::event).collect();
    let trace = Arc::new(HashMap::new());
    let encoded: Vec<EncodedEvent> = events
        .into_iter()
        .map(|e| EncodedEvent::new(e, trace.clone(), 1))
        .collect();
    let mut group = c.benchmark_group("queue_append_500");
    group.throughput(Throughput::Elements(500));
    group.sample_size(20);
    for (name, fsync) in [
        ("fsync_per_batch", FsyncPolicy::Batch),
        ("no_fsync", FsyncPolicy::Never),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (q, _) = Queue::open("bench", dir.path(), settings(fsync)).expect("queue");
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
    let ev = fixtures::event(1);
    let now = chrono::Utc::now();
    group.bench_function("queue_record", |b| {
        b.iter_batched(
            || ev.clone(),
            |e| EncodedEvent::new(e, trace.clone(), 1),
            BatchSize::SmallInput,
        )
    });
    let mut out = Vec::new();
    group.bench_function("ecs_document", |b| {
        b.iter(|| {
            out.clear();
            ecs::write_document(&ev, now, Original::Keep, None, &mut out);
        })
    });
    let meta = hec::Metadata::default();
    group.bench_function("hec_envelope", |b| {
        b.iter(|| {
            out.clear();
            hec::write_envelope(&ev, &meta, None, &mut out);
        })
    });
    group.finish();
}

/// One shape's encoder: appends the event's line to the buffer.
type Encoder = Box<dyn Fn(&EnrichedEvent, &mut Vec<u8>)>;

/// Every sink shape over the first-org Suricata sample: µs per event (criterion's time over
/// the sample's length) and, on stderr, bytes per event.
fn shapes(c: &mut Criterion) {
    let events = attackmesh_testkit::data::first_org_attributed();
    if events.is_empty() {
        return;
    }
    let n = events.len();
    let now = chrono::Utc::now();
    let meta = hec::Metadata::default();
    let encoders: Vec<(&str, Encoder)> = vec![
        (
            "ecs_writer",
            Box::new(move |ev, out| {
                ecs::write_document(ev, now, Original::Keep, None, out);
                out.push(b'\n');
            }),
        ),
        (
            "ecs_writer_original_drop",
            Box::new(move |ev, out| {
                ecs::write_document(ev, now, Original::Drop, None, out);
                out.push(b'\n');
            }),
        ),
        (
            "hec_vec_per_event",
            Box::new(move |ev, out| {
                let mut own = Vec::new();
                hec::write_envelope(ev, &meta, None, &mut own);
                out.extend_from_slice(&own);
                out.push(b'\n');
            }),
        ),
        (
            "hec_writer",
            Box::new(move |ev, out| {
                hec::write_envelope(ev, &meta, None, out);
                out.push(b'\n');
            }),
        ),
        (
            "canonical",
            Box::new(|ev, out| {
                attackmesh::json::write_enriched_event(ev, true, out);
                out.push(b'\n');
            }),
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
    // The same events as siem-export holds them once received: their attributes left in the
    // bytes they arrived as.
    let received: Vec<Held<EnrichedEvent>> = events
        .iter()
        .map(|e| Held::decode(Bytes::from(e.encode_to_vec())).expect("decode"))
        .collect();
    group.bench_function("ecs_writer_received", |b| {
        b.iter(|| {
            out.clear();
            for ev in &received {
                ecs::write_document(ev, now, Original::Keep, None, &mut out);
                out.push(b'\n');
            }
        })
    });
    group.bench_function("canonical_received", |b| {
        b.iter(|| {
            out.clear();
            for ev in &received {
                attackmesh::json::write_enriched_event(ev, true, &mut out);
                out.push(b'\n');
            }
        })
    });
    group.finish();
    // As the file sink meets them behind a full queue window (16 MiB of records, about 5,000
    // real Suricata events): decoded long before they are written, each in allocations of its
    // own, so every event is read from memory, not cache. The same events as above, so the
    // difference between the two is what the cold reads cost.
    let window = 5_000 / n + 1;
    let cold: Vec<Held<EnrichedEvent>> = (0..window)
        .flat_map(|_| events.iter())
        .map(|e| Held::decode(Bytes::from(e.encode_to_vec())).expect("decode"))
        .collect();
    let mut group = c.benchmark_group("shape_suricata_cold");
    group.throughput(Throughput::Elements(cold.len() as u64));
    group.sample_size(20);
    let mut out = Vec::with_capacity(cold.len() * 4096);
    group.bench_function("ecs_writer_received", |b| {
        b.iter(|| {
            out.clear();
            for ev in &cold {
                ecs::write_document(ev, now, Original::Keep, None, &mut out);
                out.push(b'\n');
            }
        })
    });
    // The same, each event read a few ahead of writing it, as the sinks write them.
    let queued: Vec<Arc<QueuedEvent>> = cold
        .iter()
        .enumerate()
        .map(|(seq, event)| {
            Arc::new(QueuedEvent {
                seq: seq as u64,
                event: Arc::new(event.clone()),
                trace_context: Arc::default(),
                enqueued_at_micros: 0,
                compact_for: None,
            })
        })
        .collect();
    drop(cold);
    group.bench_function("ecs_writer_received_warmed", |b| {
        b.iter(|| {
            out.clear();
            for ev in warmed(&queued) {
                ecs::write_document(&*ev.event, now, Original::Keep, None, &mut out);
                out.push(b'\n');
            }
        })
    });
    group.finish();
}

criterion_group!(benches, queue, suricata, shapes);
attackmesh_testkit::criterion_main!(benches);
