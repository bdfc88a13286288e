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
    let known = vec!["elasticsearch".to_owned()];
    let listed = list(dir.path(), &known, None).unwrap().entries;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|l| l.state == ReplayState::Dead));
    assert_eq!(
        show(dir.path(), &a.id).unwrap().entry.decode_event().unwrap().event_id,
        event.event_id
    );
    assert!(show(dir.path(), "nope").is_err());

    let report = replay(dir.path(), &known, None, &[]).unwrap();
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
    assert!(replay(dir.path(), &known, None, &[]).unwrap().replayed.is_empty());
    assert!(replay(dir.path(), &known, None, &["unknown-id".into()]).is_err());
}

#[test]
fn a_torn_last_line_is_no_entry_and_is_reported() {
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
    let listing = list(dir.path(), &["file".to_owned()], Some("file")).unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(
        listing.unreadable,
        vec![Unreadable { path: file, line: 2 }],
        "and reported"
    );
}

#[test]
fn entries_replay_only_into_the_known_sink_directory_they_were_found_in() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let dlq = DeadLetterQueue::open(&data_dir, "file").unwrap();
    let good = DeadLetter::for_event("file", &fixtures::event(1), "x");
    let mut escaping = DeadLetter::for_event("file", &fixtures::event(2), "x");
    escaping.sink = "../../outside".into();
    let mut elsewhere = DeadLetter::for_event("file", &fixtures::event(3), "x");
    elsewhere.sink = "elasticsearch".into();
    dlq.append(&[good.clone(), escaping.clone(), elsewhere.clone()])
        .unwrap();
    let known = vec!["file".to_owned(), "elasticsearch".to_owned()];

    let err = replay(&data_dir, &known, None, &[]).unwrap_err().to_string();
    assert!(err.contains(&escaping.id) && err.contains("../../outside"), "{err}");
    assert!(
        err.contains(&elsewhere.id),
        "an entry naming another sink is refused too: {err}"
    );
    assert!(!dir.path().join("outside").exists());
    assert!(dlq.pending_replays().unwrap().is_empty(), "nothing handed back");

    let report = replay(&data_dir, &known, None, std::slice::from_ref(&good.id)).unwrap();
    assert_eq!(report.replayed.get("file"), Some(&1));

    for bad in ["../../out", "file-../x", "FILE", "splunk_hec", ""] {
        let err = replay(&data_dir, &known, Some(bad), &[]).unwrap_err().to_string();
        assert!(err.contains("not a configured sink"), "{bad}: {err}");
        assert!(list(&data_dir, &known, Some(bad)).is_err(), "{bad}");
    }
    assert!(is_sink_name("file-hec") && is_sink_name("intel") && !is_sink_name("file-"));
}

#[test]
fn served_sinks_are_the_queue_directories_with_sink_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["file", "file-hec", "elasticsearch", "not a sink"] {
        std::fs::create_dir_all(dir.path().join("queues").join(name)).unwrap();
    }
    assert_eq!(
        served_sinks(dir.path()).unwrap(),
        vec!["elasticsearch", "file", "file-hec"]
    );
    assert!(served_sinks(&dir.path().join("missing")).unwrap().is_empty());
}
