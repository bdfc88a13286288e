//! A replica's state survives a crash: the windows and the findings not yet delivered come back
//! from the snapshot and the write-ahead log, a torn log tail is cut off, and a resent batch
//! counts once.

#![allow(clippy::unwrap_used)]

use std::io::Write;

use attackmesh::proto::{Endpoint, EnrichedEvent};
use attackmesh_correlation::{CorrelationConfig, Shard, service::Replica, store::Store};

fn probe(port: u32) -> EnrichedEvent {
    let mut e = EnrichedEvent {
        event_id: format!("p{port}"),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: 1_717_243_200 + i64::from(port),
            nanos: 0,
        }),
        event_type: "zeek.conn".into(),
        source: Some(Endpoint {
            ip: "10.1.1.1".into(),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.2.2.2".into(),
            port,
            ..Default::default()
        }),
        revision: 1,
        ..Default::default()
    };
    e.attributes.insert("conn_state".into(), "S0".into());
    e
}

fn open(dir: &std::path::Path) -> Replica {
    Replica::open(CorrelationConfig::default().engine().unwrap(), Store::new(dir)).unwrap()
}

#[test]
fn windows_and_undelivered_findings_come_back_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<EnrichedEvent> = (1..=30).map(probe).collect();
    {
        let replica = open(dir.path());
        replica.observe(&events[..12], Shard::default()).unwrap();
        // Dropped without a snapshot: only the log holds the batch.
    }
    {
        let replica = open(dir.path());
        let applied = replica.observe(&events[8..25], Shard::default()).unwrap();
        assert_eq!(applied.ignored, 4, "the resent overlap counts once");
        assert_eq!(applied.findings, 1);
    }
    // A torn record at the end of the log (a crash mid-append) is cut off.
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("wal.log"))
        .unwrap();
    wal.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(wal);
    let replica = open(dir.path());
    let pending = replica.pending(10);
    assert_eq!(pending.len(), 1, "the undelivered finding, once: {pending:?}");
    assert_eq!(pending[0].event_type, "correlation.port_scan");
    let again = replica.observe(&events[25..], Shard::default()).unwrap();
    assert_eq!(again.findings, 0, "the scan was reported; its window is quiet");
    replica.delivered(1).unwrap();
    drop(replica);
    assert!(
        open(dir.path()).pending(10).is_empty(),
        "delivered findings are not sent again"
    );
}
