use std::{collections::HashMap, io::Write, sync::Arc};

use attackmesh::{held::EventView, proto::EnrichedEvent};

use super::*;

fn settings() -> QueueSettings {
    QueueSettings {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        fsync: FsyncPolicy::Batch,
    }
}

/// Settings with room for everything a test appends.
fn roomy(segment_bytes: u64, fsync: FsyncPolicy) -> QueueSettings {
    QueueSettings {
        max_bytes: 1 << 30,
        segment_bytes,
        fsync,
    }
}

pub(super) fn event(i: usize) -> EnrichedEvent {
    EnrichedEvent {
        event_id: format!("ev-{i}"),
        description: "x".repeat(100),
        revision: 1,
        ..Default::default()
    }
}

fn encoded(range: std::ops::Range<usize>) -> Vec<EncodedEvent> {
    let trace = Arc::new(HashMap::from([(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    )]));
    range
        .map(|i| EncodedEvent::new(event(i), trace.clone(), 1_000 + i as i64))
        .collect()
}

fn read_all(reader: &mut QueueReader) -> Vec<ReadItem> {
    let mut out = Vec::new();
    loop {
        let got = reader.read_available(1000, 1 << 30).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn ids(items: &[ReadItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Event(e) => Some(e.event.event().event_id.clone()),
            ReadItem::Damaged { .. } => None,
        })
        .collect()
}

fn open(dir: &std::path::Path) -> (Arc<Queue>, Recovery) {
    Queue::open("test", dir, settings()).unwrap()
}

#[test]
fn appended_events_come_back_in_order_with_their_trace_context() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path());
    let seqs = q.append(&encoded(0..100), 5).unwrap();
    assert_eq!(seqs, 0..100);
    let mut r = q.reader().unwrap();
    let items = read_all(&mut r);
    assert_eq!(ids(&items), (0..100).map(|i| format!("ev-{i}")).collect::<Vec<_>>());
    let ReadItem::Event(first) = &items[0] else {
        panic!("not an event")
    };
    assert_eq!(first.seq, 0);
    assert_eq!(first.enqueued_at_micros, 1000);
    assert!(first.trace_context.contains_key("traceparent"));
    assert!(list_segments_count(dir.path()) > 1, "4 KiB segments must roll");
    assert_eq!(q.stats().depth, 100);
}

#[test]
fn events_handed_over_in_memory_equal_those_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path());
    // Small segments: the batch rolls several times, so records sit at many (segment, offset)s.
    q.append(&encoded(0..40), 5).unwrap();
    q.append(&encoded(40..100), 6).unwrap();
    assert!(list_segments_count(dir.path()) > 2, "the test needs segment rolls");
    // Keep a copy of the files, then zero the originals: what the reader still gets whole came
    // from memory.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(copy.path().join(path.file_name().unwrap()), &bytes).unwrap();
        if path.extension().is_some_and(|e| e == SEGMENT_EXT) {
            std::fs::write(&path, vec![0u8; bytes.len()]).unwrap();
        }
    }
    let mut in_memory = q.reader().unwrap();
    let from_memory = read_all(&mut in_memory);
    let (reopened, _) = open(copy.path());
    let mut on_disk = reopened.reader().unwrap();
    let from_disk = read_all(&mut on_disk);
    assert_eq!(from_memory.len(), 100);
    assert_eq!(from_memory, from_disk);
    assert_eq!((in_memory.read_back(), on_disk.read_back()), (0, 100));
}

#[test]
fn records_larger_than_a_read_and_records_across_reads_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let settings = roomy(64 << 20, FsyncPolicy::Never);
    // Small records with one far larger than a single read of the segment every seventh, so
    // records start and end at every position relative to the reads.
    let events: Vec<EncodedEvent> = (0..60)
        .map(|i| {
            let mut event = event(i);
            event.description = if i % 7 == 3 {
                "y".repeat(300 << 10)
            } else {
                "z".repeat(900 + i)
            };
            EncodedEvent::new(event, Arc::new(HashMap::new()), 1)
        })
        .collect();
    let (q, _) = Queue::open("test", dir.path(), settings).unwrap();
    q.append(&events, 5).unwrap();
    let from_memory = read_all(&mut q.reader().unwrap());
    drop(q);
    let (reopened, _) = Queue::open("test", dir.path(), settings).unwrap();
    let mut on_disk = reopened.reader().unwrap();
    let from_disk = read_all(&mut on_disk);
    assert_eq!(on_disk.read_back(), 60);
    assert_eq!(from_memory.len(), 60);
    assert_eq!(from_disk, from_memory);
    drop(reopened);

    // Damage a small record well past the first read: it alone is reported, at its offset.
    let seg = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut starts = vec![0];
    while let record::Frame::Record { end } = record::parse(&bytes[*starts.last().unwrap()..]) {
        starts.push(starts.last().unwrap() + end);
    }
    let victim = 40;
    assert!(starts[victim] > 1 << 20, "the damaged record sits past the first reads");
    bytes[starts[victim] + 30] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (damaged_queue, _) = Queue::open("test", dir.path(), settings).unwrap();
    let items = read_all(&mut damaged_queue.reader().unwrap());
    let want: Vec<String> = (0..60).filter(|&i| i != victim).map(|i| format!("ev-{i}")).collect();
    assert_eq!(ids(&items), want);
    let damaged: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Damaged { offset, len, .. } => Some((*offset, *len)),
            ReadItem::Event(_) => None,
        })
        .collect();
    assert_eq!(
        damaged,
        vec![(starts[victim] as u64, (starts[victim + 1] - starts[victim]) as u64)]
    );
}

#[test]
fn a_reader_behind_the_memory_bound_reads_the_rest_from_disk_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open("test", dir.path(), roomy(1 << 20, FsyncPolicy::Never)).unwrap();
    // About 24 MiB: far more than is kept in memory, so most records come from the files.
    let total = 100_000;
    for start in (0..total).step_by(10_000) {
        q.append(&encoded(start..start + 10_000), 5).unwrap();
    }
    let mut r = q.reader().unwrap();
    let mut seqs = Vec::new();
    // Read a little, append more while behind, then read the rest.
    seqs.extend(r.read_available(1000, usize::MAX).unwrap());
    q.append(&encoded(total..total + 500), 6).unwrap();
    seqs.extend(read_all(&mut r));
    let got: Vec<u64> = seqs
        .iter()
        .map(|i| match i {
            ReadItem::Event(e) => e.seq,
            ReadItem::Damaged { reason, .. } => panic!("damaged: {reason}"),
        })
        .collect();
    assert_eq!(got, (0..(total + 500) as u64).collect::<Vec<_>>());
    // What the queue kept in memory (the first records appended) was handed over, the rest
    // read back.
    let read_back = r.read_back() as usize;
    assert!(
        read_back > 0 && read_back < total,
        "{read_back} of {} read back",
        total + 500
    );
}

fn list_segments_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count()
}

#[test]
fn acknowledged_events_are_not_redelivered_after_reopen_and_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _) = open(dir.path());
        q.append(&encoded(0..100), 5).unwrap();
        let before = list_segments_count(dir.path());
        q.ack(60, None).unwrap();
        assert!(
            list_segments_count(dir.path()) < before,
            "delivered segments must be deleted"
        );
        assert_eq!(q.stats().depth, 40);
    }
    let (q, rec) = open(dir.path());
    assert_eq!(rec.depth, 40);
    let mut r = q.reader().unwrap();
    let got = ids(&read_all(&mut r));
    assert_eq!(got, (60..100).map(|i| format!("ev-{i}")).collect::<Vec<_>>());
    let seqs = q.append(&encoded(100..101), 5).unwrap();
    assert_eq!(seqs, 100..101, "numbering continues after reopen");
}

#[test]
fn a_torn_tail_is_cut_off_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _) = open(dir.path());
        q.append(&encoded(0..3), 5).unwrap();
    }
    let seg = segment_path(dir.path(), 0);
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // A crash in the middle of the next append: the first half of a record.
    let mut half = Vec::new();
    encoded(3..4)[0].frame_into(3, &mut half);
    half.truncate(half.len() / 2);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&half)
        .unwrap();
    let (q, rec) = open(dir.path());
    assert_eq!(rec.truncated_bytes, half.len() as u64);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    assert_eq!(q.append(&encoded(3..4), 5).unwrap(), 3..4);
    let mut r = q.reader().unwrap();
    let items = read_all(&mut r);
    assert_eq!(ids(&items), vec!["ev-0", "ev-1", "ev-2", "ev-3"]);
    assert!(items.iter().all(|i| matches!(i, ReadItem::Event(_))));
}

#[test]
fn damaged_records_are_reported_and_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _) = open(dir.path());
        q.append(&encoded(0..5), 5).unwrap();
    }
    let seg = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let len_at = |at: usize| match record::parse(&bytes[at..]) {
        record::Frame::Record { end } => end,
        other => panic!("{other:?}"),
    };
    let (start, rec_len) = (len_at(0), len_at(len_at(0)));
    // Flip a payload byte of the second record: its checksum no longer matches.
    bytes[start + 40] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (q, rec) = open(dir.path());
    assert_eq!(
        rec.truncated_bytes, 0,
        "damage followed by good records is not a torn tail"
    );
    let mut r = q.reader().unwrap();
    let items = read_all(&mut r);
    assert_eq!(ids(&items), vec!["ev-0", "ev-2", "ev-3", "ev-4"]);
    let damaged: Vec<_> = items.iter().filter(|i| matches!(i, ReadItem::Damaged { .. })).collect();
    assert_eq!(damaged.len(), 1);
    let ReadItem::Damaged {
        offset, len, reason, ..
    } = damaged[0]
    else {
        unreachable!()
    };
    assert_eq!((*offset, *len), (start as u64, rec_len as u64));
    assert!(reason.contains("checksum"), "{reason}");
}

#[test]
fn garbage_instead_of_a_segment_does_not_crash_recovery() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment_path(dir.path(), 0), vec![0xAB; 10_000]).unwrap();
    let (q, rec) = open(dir.path());
    assert_eq!(rec.truncated_bytes, 10_000);
    assert_eq!(q.append(&encoded(0..1), 5).unwrap(), 0..1);
}

#[test]
fn a_damaged_cursor_means_redelivery_not_loss() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _) = open(dir.path());
        q.append(&encoded(0..10), 5).unwrap();
        q.ack(5, None).unwrap();
    }
    std::fs::write(dir.path().join(CURSOR), b"garbage").unwrap();
    let (q, _) = open(dir.path());
    let mut r = q.reader().unwrap();
    let got = ids(&read_all(&mut r));
    assert_eq!(got.last().map(String::as_str), Some("ev-9"));
    assert!(got.len() >= 5);
}

#[test]
fn the_size_bound_is_reported_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(
        "test",
        dir.path(),
        QueueSettings {
            max_bytes: 8192,
            segment_bytes: 4096,
            fsync: FsyncPolicy::Batch,
        },
    )
    .unwrap();
    let batch = encoded(0..20);
    let bytes: u64 = batch.iter().map(|e| e.framed_len() as u64).sum();
    assert!(q.fits(bytes));
    q.append(&batch, 5).unwrap();
    assert!(q.fits(1000));
    q.append(&encoded(20..40), 5).unwrap();
    assert!(!q.fits(bytes), "{:?}", q.stats());
    let before = q.stats().bytes;
    q.ack(40, None).unwrap();
    // Space comes back a sealed segment at a time; the active one stays until it rolls.
    assert!(q.stats().bytes < before, "delivering frees space: {:?}", q.stats());
    assert!(q.fits(bytes / 2), "{:?}", q.stats());
}

#[test]
fn append_is_on_disk_when_it_returns() {
    // Durability before acknowledgement: what append returned is readable by a fresh process
    // (a reopen without any close or flush of the writer).
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path());
    q.append(&encoded(0..7), 5).unwrap();
    let other = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, other.path().join(p.file_name().unwrap())).unwrap();
    }
    let (copy, rec) = open(other.path());
    assert_eq!(rec.depth, 7);
    assert_eq!(ids(&read_all(&mut copy.reader().unwrap())).len(), 7);
    drop(q);
}

#[test]
fn oldest_age_follows_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path());
    assert_eq!(q.stats().oldest_micros, None);
    q.append(&encoded(0..3), 77).unwrap();
    assert_eq!(q.stats().oldest_micros, Some(77));
    q.ack(3, None).unwrap();
    assert_eq!(q.stats().depth, 0);
    assert_eq!(q.stats().oldest_micros, None);
}

#[test]
fn batch_fsync_policy_syncs_once_per_append_and_never_policy_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let big = roomy(1 << 20, FsyncPolicy::Batch);
    let (q, _) = Queue::open("test", dir.path(), big).unwrap();
    q.append(&encoded(0..200), 5).unwrap();
    assert_eq!(
        q.syncs(),
        1,
        "one fsync for a batch of 200 events, before append returns"
    );
    q.append(&encoded(200..201), 5).unwrap();
    assert_eq!(q.syncs(), 2);
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(
        "test",
        dir.path(),
        QueueSettings {
            fsync: FsyncPolicy::Never,
            ..big
        },
    )
    .unwrap();
    q.append(&encoded(0..200), 5).unwrap();
    assert_eq!(q.syncs(), 0);
}

#[test]
fn a_cursor_behind_deleted_segments_resumes_at_the_first_segment_left() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path());
    q.append(&encoded(0..100), 0).unwrap();
    let before = std::fs::read(dir.path().join(CURSOR)).unwrap_or_default();
    let mut reader = q.reader().unwrap();
    let delivered = reader.read_available(60, 1 << 30).unwrap();
    let ReadItem::Event(last) = delivered.last().unwrap() else {
        panic!("an event")
    };
    q.ack(last.seq + 1, None).unwrap();
    drop((reader, q));
    // A crash after the delivered segments were deleted but before the cursor was written.
    std::fs::write(dir.path().join(CURSOR), before).unwrap();
    let first_left = list_first_segment(dir.path());
    assert!(first_left > 0, "delivered segments were deleted");

    let (q, recovery) = open(dir.path());
    let items = read_all(&mut q.reader().unwrap());
    assert!(
        items.iter().all(|i| matches!(i, ReadItem::Event(_))),
        "no damage reported"
    );
    let want: Vec<String> = (first_left as usize..100).map(|i| format!("ev-{i}")).collect();
    assert_eq!(ids(&items), want);
    assert_eq!(recovery.depth, 100 - first_left);
}

fn list_first_segment(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .min()
        .unwrap()
}
