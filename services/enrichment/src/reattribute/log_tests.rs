use std::io::Write;

use attackmesh::proto::DetectionEvent;

use super::*;

fn batch(ids: &[&str]) -> AttributeRequest {
    AttributeRequest {
        batch_id: 0,
        events: ids
            .iter()
            .map(|id| DetectionEvent {
                event_id: (*id).to_owned(),
                event_type: "port_scan".into(),
                ..Default::default()
            })
            .collect(),
        trace_context: [("traceparent".to_owned(), "00-abc".to_owned())].into(),
    }
}

fn ids(entry: &Entry) -> Vec<String> {
    entry.batch.events.iter().map(|e| e.event_id.clone()).collect()
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[tokio::test]
async fn records_survive_reopen_and_the_cursor_advances() {
    let dir = tempfile::tempdir().unwrap();
    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    log.append(batch(&["a", "b"])).await.unwrap();
    log.append(batch(&["c"])).await.unwrap();
    let first = log.next().await.unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    assert_eq!(first.batch.trace_context["traceparent"], "00-abc");
    log.commit(first.next).await.unwrap();
    drop(log);

    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    let second = log.next().await.unwrap();
    assert_eq!(ids(&second), ["c"], "the committed record is not read again");
    log.commit(second.next).await.unwrap();
    assert_eq!(log.backlog(), 0);
    assert_eq!(
        std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
        0,
        "a drained log is emptied"
    );
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_earlier_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    log.append(batch(&["a"])).await.unwrap();
    drop(log);
    let mut f = OpenOptions::new().append(true).open(dir.path().join(LOG_FILE)).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
    drop(f);

    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    let entry = log.next().await.unwrap();
    assert_eq!(ids(&entry), ["a"]);
    log.commit(entry.next).await.unwrap();
    let more = tokio::time::timeout(std::time::Duration::from_millis(50), log.next()).await;
    assert!(more.is_err(), "nothing after the cut");
}

#[tokio::test]
async fn a_corrupt_record_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    log.append(batch(&["a"])).await.unwrap();
    log.append(batch(&["b"])).await.unwrap();
    drop(log);
    let path = dir.path().join(LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();

    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(ids(&log.next().await.unwrap()), ["a"]);
    assert!(log.backlog() < 100, "the damaged second record was cut");
}

#[tokio::test]
async fn room_is_bounded_by_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = ReattributeLog::open(dir.path(), 200).unwrap();
    assert!(log.has_room(100));
    log.append(batch(&["a", "b", "c", "d", "e", "f"])).await.unwrap();
    assert!(!log.has_room(150));
}
