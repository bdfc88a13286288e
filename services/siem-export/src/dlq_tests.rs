use super::*;
use attackmesh_testkit::fixtures;

#[test]
fn dead_letters_are_listed_shown_and_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let dlq = DeadLetterQueue::open(dir.path(), "elasticsearch").unwrap();
    let event = fixtures::event(1);
    let a = DeadLetter::for_event(
        "elasticsearch",
        &fixtures::event(1),
        "HTTP 400 mapper_parsing_exception: bad",
    );
    let b = DeadLetter::for_damage(
        "elasticsearch",
        DamagedRegion {
            segment: "/q/0.seg".into(),
            offset: 10,
            len: 20,
        },
        "damaged queue record: checksum mismatch",
    );
    dlq.append(&[a.clone(), b.clone()]).unwrap();
    let listed = list(dir.path(), None).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|l| l.state == ReplayState::Dead));
    assert_eq!(
        show(dir.path(), &a.id).unwrap().entry.decode_event().unwrap().event_id,
        event.event_id
    );
    assert!(show(dir.path(), "nope").is_err());

    let report = replay(dir.path(), None, &[]).unwrap();
    assert_eq!(report.replayed.get("elasticsearch"), Some(&1));
    assert_eq!(report.not_replayable, 1, "damaged bytes hold no event");
    assert_eq!(show(dir.path(), &a.id).unwrap().state, ReplayState::Pending);
    // The service picks the replay file up and marks it done.
    let pending = dlq.pending_replays().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.len(), 1);
    assert_eq!(pending[0].1[0].technique_ids, event.technique_ids);
    dlq.finish_replay(&pending[0].0).unwrap();
    assert!(dlq.pending_replays().unwrap().is_empty());
    assert_eq!(show(dir.path(), &a.id).unwrap().state, ReplayState::Replayed);
    // A second replay of everything finds nothing new.
    assert!(replay(dir.path(), None, &[]).unwrap().replayed.is_empty());
    assert!(replay(dir.path(), None, &["unknown-id".into()]).is_err());
}

#[test]
fn a_torn_last_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let dlq = DeadLetterQueue::open(dir.path(), "file").unwrap();
    dlq.append(&[DeadLetter::for_event("file", &fixtures::event(1), "x")])
        .unwrap();
    let file = ndjson_files(&sink_dir(dir.path(), "file")).unwrap().pop().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"{\"id\":\"half")
        .unwrap();
    assert_eq!(list(dir.path(), Some("file")).unwrap().len(), 1);
}
