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
        ..Default::default()
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

/// A copy of the re-attribution log the previous release (6d77945) left behind: three batches
/// appended, the first re-attributed (see `testdata/README.md`).
fn previous_release_log() -> tempfile::TempDir {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/reattribute/testdata/release-6d77945");
    let dir = tempfile::tempdir().unwrap();
    for name in [LOG_FILE, CURSOR_FILE] {
        std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_previous_releases_log_is_read_on_where_it_stopped() {
    let dir = previous_release_log();
    let log = ReattributeLog::open(dir.path(), 1 << 20).unwrap();
    let first = log.next().await.unwrap();
    assert_eq!(ids(&first), ["pending-1", "pending-2"]);
    assert_eq!(first.batch.trace_context["traceparent"], "00-abc");
    log.commit(first.next).await.unwrap();
    let second = log.next().await.unwrap();
    assert_eq!(ids(&second), ["pending-3"]);
    let marker = std::fs::read_to_string(dir.path().join(attackmesh_runtime::format::MARKER)).unwrap();
    assert_eq!(
        marker, "attackmesh-reattribution-log 1\n",
        "the unversioned log is version 1"
    );
}

#[tokio::test]
async fn a_log_of_a_newer_release_is_refused_and_left_alone() {
    let dir = previous_release_log();
    std::fs::write(
        dir.path().join(attackmesh_runtime::format::MARKER),
        "attackmesh-reattribution-log 2\n",
    )
    .unwrap();
    let before = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
    let err = ReattributeLog::open(dir.path(), 1 << 20).err().unwrap().to_string();
    assert!(err.contains("format version 2, written by a newer attackmesh"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), before);
}
