//! A sink queue directory with hostile contents: a segment file built from the input (raw bytes,
//! well-framed records with arbitrary payloads, valid entries with arbitrary sequence numbers,
//! torn tails) and an optional cursor. Opening must recover without panicking, reading must
//! terminate with every byte accounted for as an event or a damaged region, and recovery must
//! be idempotent (a second open cuts nothing more and finds the same depth).
//!
//! Input: byte 0 = flags (bit 0: write a cursor), bytes 1..9 = cursor value (LE), then chunks of
//! `tag, len, bytes`: tag % 4 = 0 raw bytes, 1 a framed record with `bytes` as payload, 2 a framed
//! entry whose seq is the first 8 bytes and whose event id is the rest, 3 cut `len` bytes off.

#![no_main]

use attackmesh::proto::EnrichedEvent;
use attackmesh_siem_export::{
    config::FsyncPolicy,
    queue::{Queue, QueueSettings, ReadItem},
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Marks the start of every record ("AMQ1"), as the queue writes it.
const MAGIC: u32 = 0x3151_4d41;

/// The queue's record payload, as written by the export service.
#[derive(Clone, PartialEq, Message)]
struct Entry {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(int64, tag = "2")]
    enqueued_at_micros: i64,
    #[prost(message, optional, tag = "4")]
    event: Option<EnrichedEvent>,
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

fn segment(mut rest: &[u8]) -> Vec<u8> {
    let mut seg = Vec::new();
    while let [tag, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        rest = after;
        match tag % 4 {
            0 => seg.extend_from_slice(chunk),
            1 => frame(chunk, &mut seg),
            2 => {
                let mut seq = [0u8; 8];
                let k = chunk.len().min(8);
                seq[..k].copy_from_slice(&chunk[..k]);
                let entry = Entry {
                    seq: u64::from_le_bytes(seq),
                    enqueued_at_micros: 1_700_000_000_000_000,
                    event: Some(EnrichedEvent {
                        event_id: String::from_utf8_lossy(&chunk[k..]).into_owned(),
                        ..Default::default()
                    }),
                };
                frame(&entry.encode_to_vec(), &mut seg);
            }
            _ => seg.truncate(seg.len().saturating_sub(*len as usize)),
        }
    }
    seg
}

fn settings() -> QueueSettings {
    QueueSettings {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 26,
        fsync: FsyncPolicy::Never,
    }
}

/// Reads everything; returns (events, damaged bytes).
fn drain(queue: &std::sync::Arc<Queue>, budget: usize) -> (usize, u64) {
    let mut reader = queue.reader().expect("first reader");
    let (mut events, mut damaged, mut calls) = (0, 0, 0);
    loop {
        calls += 1;
        assert!(calls <= budget, "reader does not terminate");
        let items = reader.read_available(16, 1 << 20).expect("read");
        if items.is_empty() {
            return (events, damaged);
        }
        for item in items {
            match item {
                ReadItem::Event(_) => events += 1,
                ReadItem::Damaged { len, .. } => {
                    assert!(len > 0, "an empty damaged region makes no progress");
                    damaged += len;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_at_checked(9) else { return };
    let seg = segment(rest);
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let dir = tempfile::Builder::new().prefix("am-fuzz-q").tempdir_in(base).expect("tempdir");
    std::fs::write(dir.path().join(format!("{:020}.seg", 0)), &seg).expect("write segment");
    if head[0] & 1 == 1 {
        let mut cursor = head[1..9].to_vec();
        let crc = crc32c::crc32c(&cursor);
        cursor.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join("cursor"), cursor).expect("write cursor");
    }
    let Ok((queue, first)) = Queue::open("fuzz", dir.path(), settings()) else { return };
    let (events, damaged) = drain(&queue, seg.len() + 2);
    assert!(events as u64 <= seg.len() as u64 / 12 + 1);
    assert!(damaged <= seg.len() as u64);
    drop(queue);
    let (again, second) = Queue::open("fuzz", dir.path(), settings()).expect("reopen");
    assert_eq!(second.truncated_bytes, 0, "recovery is not idempotent (first cut {})", first.truncated_bytes);
    assert_eq!(second.depth, first.depth, "depth changed on reopen");
    let _ = drain(&again, seg.len() + 2);
});
