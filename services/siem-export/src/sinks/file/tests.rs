use std::{io::Write as _, sync::Arc};

use super::*;
use crate::sinks::{ItemOutcome, QueuedEvent, Sink};

fn queued(i: u64) -> Arc<QueuedEvent> {
    Arc::new(QueuedEvent {
        seq: i,
        event: Arc::new(attackmesh_testkit::fixtures::event(i).into()),
        trace_context: Default::default(),
        enqueued_at_micros: 0,
        compact_for: None,
    })
}

#[tokio::test]
async fn lines_have_the_configured_shape_and_files_rotate_by_size() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [FileShape::Canonical, FileShape::Ecs, FileShape::Hec, FileShape::Ocsf] {
        let path = dir.path().join(format!("{shape:?}.ndjson"));
        let config = FileSinkConfig {
            path: Some(path.clone()),
            shape,
            rotate_bytes: 8192,
            keep_files: 2,
            ..Default::default()
        };
        let sink = FileSink::new(&config, dir.path().join(format!("{shape:?}.delivered"))).unwrap();
        for i in 0..20 {
            assert_eq!(sink.send(&[queued(i)]).await, vec![ItemOutcome::Delivered]);
        }
        let rotated: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{shape:?}.ndjson."))
            })
            .collect();
        assert_eq!(rotated.len(), 2, "{shape:?}: only keep_files rotations are kept");
        let first = std::fs::read_to_string(rotated[0].path()).unwrap();
        let line: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        match shape {
            FileShape::Canonical => assert!(line.get("technique_ids").is_some()),
            FileShape::Ecs => assert_eq!(line["threat"]["framework"], "MITRE ATT&CK"),
            FileShape::Hec => assert!(line["event"]["mitre_attack"].is_object()),
            FileShape::Ocsf => assert_eq!(line["class_uid"], 2004),
        }
    }
}

fn revised(i: u64, revision: u32) -> Arc<QueuedEvent> {
    let mut event = attackmesh_testkit::fixtures::event(i);
    event.revision = revision;
    Arc::new(QueuedEvent {
        seq: i,
        event: Arc::new(event.into()),
        trace_context: Default::default(),
        enqueued_at_micros: 0,
        compact_for: None,
    })
}

fn written(path: &std::path::Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| attackmesh::json::from_json::<attackmesh::proto::EnrichedEvent>(l).unwrap())
        .map(|e| (e.event_id, e.revision))
        .collect()
}

/// A sink with the default settings writing `out.ndjson` in `dir`, its record in `delivered.log`.
fn default_sink(dir: &std::path::Path) -> (std::path::PathBuf, FileSinkConfig, FileSink) {
    let path = dir.join("out.ndjson");
    let config = FileSinkConfig {
        path: Some(path.clone()),
        ..Default::default()
    };
    let sink = FileSink::new(&config, dir.join("delivered.log")).unwrap();
    (path, config, sink)
}

#[tokio::test]
async fn an_event_id_and_revision_is_written_once_and_a_higher_revision_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, sink) = default_sink(dir.path());
    let delivered = |n| vec![ItemOutcome::Delivered; n];
    assert_eq!(sink.send(&[queued(1), queued(2), queued(1)]).await, delivered(3));
    assert_eq!(sink.send(&[queued(1)]).await, delivered(1));
    assert_eq!(sink.send(&[queued(2), revised(1, 2)]).await, delivered(2));
    assert_eq!(
        sink.send(&[revised(1, 1), revised(1, 2)]).await,
        delivered(2),
        "older and same revisions are skipped"
    );
    let id = |i: u64| attackmesh_testkit::fixtures::event(i).event_id;
    assert_eq!(written(&path), vec![(id(1), 1), (id(2), 1), (id(1), 2)]);
}

#[tokio::test]
async fn a_restarted_sink_remembers_what_it_wrote_and_ends_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let log = dir.path().join("delivered").join("file.log");
    let config = FileSinkConfig {
        path: Some(path.clone()),
        ..Default::default()
    };
    let sink = FileSink::new(&config, log.clone()).unwrap();
    sink.send(&[queued(1), queued(2)]).await;
    drop(sink);
    // A crash mid-line left half a line behind.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"event_id\":\"half")
        .unwrap();

    let sink = FileSink::new(&config, log).unwrap();
    assert_eq!(
        sink.send(&[queued(2), queued(3), queued(1)]).await,
        vec![ItemOutcome::Delivered; 3]
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[2], "{\"event_id\":\"half", "the torn line ends where it broke");
    let id = |l: &str| {
        attackmesh::json::from_json::<attackmesh::proto::EnrichedEvent>(l)
            .unwrap()
            .event_id
    };
    let ids: Vec<String> = [lines[0], lines[1], lines[3]].into_iter().map(id).collect();
    let fixture = |i: u64| attackmesh_testkit::fixtures::event(i).event_id;
    assert_eq!(ids, vec![fixture(1), fixture(2), fixture(3)]);
}

#[tokio::test]
async fn an_id_the_record_cannot_hold_is_written_every_time_and_leaves_the_record_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let log = dir.path().join("delivered.log");
    let config = FileSinkConfig {
        path: Some(path.clone()),
        ..Default::default()
    };
    let with_id = |i: u64, id: &str| {
        let mut event = attackmesh_testkit::fixtures::event(i);
        event.event_id = id.into();
        Arc::new(QueuedEvent {
            seq: i,
            event: Arc::new(event.into()),
            trace_context: Default::default(),
            enqueued_at_micros: 0,
            compact_for: None,
        })
    };
    let (spaced, plain) = ("spaced id\nw 1 9 forged", "plain-1");
    let sink = FileSink::new(&config, log.clone()).unwrap();
    let batch = [with_id(1, spaced), with_id(2, plain), with_id(3, spaced)];
    assert_eq!(sink.send(&batch).await, vec![ItemOutcome::Delivered; 3]);
    drop(sink);
    let record = std::fs::read_to_string(&log).unwrap();
    assert!(!record.contains("forged") && record.contains(plain), "{record}");

    let sink = FileSink::new(&config, log).unwrap();
    assert_eq!(
        sink.send(&[with_id(4, plain), with_id(5, spaced)]).await,
        vec![ItemOutcome::Delivered; 2]
    );
    let ids: Vec<String> = written(&path).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        vec![spaced, plain, spaced],
        "a copy in one batch is written once; the plain id is remembered across the reopen, the spaced one is not"
    );
}

#[tokio::test]
async fn with_dedup_off_every_copy_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let config = FileSinkConfig {
        path: Some(path.clone()),
        dedup_ids: 0,
        ..Default::default()
    };
    let sink = FileSink::new(&config, dir.path().join("delivered.log")).unwrap();
    sink.send(&[queued(1), queued(1)]).await;
    assert_eq!(written(&path).len(), 2);
    assert!(!dir.path().join("delivered.log").exists());
}

#[tokio::test]
async fn batches_after_one_of_very_large_events_are_written_as_if_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    let config = FileSinkConfig {
        path: Some(path.clone()),
        ..Default::default()
    };
    let sink = FileSink::new(&config, dir.path().join("delivered.log")).unwrap();
    // 12 events of 1 MiB each grow the batch buffer past what is kept for the next batch.
    let large: Vec<Arc<QueuedEvent>> = (0..12)
        .map(|i| {
            let mut event = attackmesh_testkit::fixtures::event(i);
            event.original = "x".repeat(1 << 20);
            Arc::new(QueuedEvent {
                seq: i,
                event: Arc::new(event.into()),
                trace_context: Default::default(),
                enqueued_at_micros: 0,
                compact_for: None,
            })
        })
        .collect();
    let batches = [large, (12..20).map(queued).collect(), (20..23).map(queued).collect()];
    let mut want = Vec::new();
    for batch in &batches {
        assert!(sink.send(batch).await.iter().all(|o| *o == ItemOutcome::Delivered));
        for ev in batch {
            attackmesh::json::write_enriched_event(&*ev.event, true, &mut want);
            want.push(b'\n');
        }
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        want,
        "every line once, nothing of an earlier batch"
    );
}

/// Bytes of `path` in the kernel's page cache, as `fincore` (util-linux; util-linux-extra on
/// Debian 12 and later) counts them; `None` where it is not installed, unless
/// `TEST_REQUIRE_FINCORE` is set (as `.ci/run` does), which makes that a failure.
#[cfg(target_os = "linux")]
fn cached_bytes(path: &std::path::Path) -> Option<u64> {
    let out = match std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("TEST_REQUIRE_FINCORE").is_none() => {
            eprintln!("NOT RUN: the page-cache check needs fincore (util-linux)");
            return None;
        }
        Err(e) => panic!("fincore: {e}"),
    };
    assert!(
        out.status.success(),
        "fincore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().parse().unwrap())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn synced_lines_leave_the_page_cache_unless_kept() {
    // Beside the test binary, on the build's file system: a tmpfs holds its files in the page
    // cache itself and drops nothing.
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
    let page = rustix::param::page_size() as u64;
    for page_cache in [PageCache::Drop, PageCache::Keep] {
        let path = dir.path().join(format!("{page_cache:?}.ndjson"));
        let config = FileSinkConfig {
            path: Some(path.clone()),
            page_cache,
            ..Default::default()
        };
        let sink = FileSink::new(&config, dir.path().join(format!("{page_cache:?}.delivered"))).unwrap();
        for batch in 0..40 {
            let events: Vec<_> = (0..25).map(|i| queued(batch * 25 + i)).collect();
            let outcomes = sink.send(&events).await;
            assert!(outcomes.iter().all(|o| *o == ItemOutcome::Delivered), "{outcomes:?}");
        }
        let size = std::fs::metadata(&path).unwrap().len();
        if let Some(cached) = cached_bytes(&path) {
            match page_cache {
                // Only the page the last batch ended in, which the next batch would write into.
                PageCache::Drop => assert!(cached <= page, "{cached} of {size} bytes still cached"),
                PageCache::Keep => assert!(cached * 10 >= size * 9, "only {cached} of {size} bytes cached"),
            }
        }
        assert_eq!(written(&path).len(), 1000, "{page_cache:?}: every line is in the file");
    }
}

/// A compact event is written as the same event filled in, in every shape that does not stamp
/// the time it is written (the ECS writer's own test covers ECS): by reference when queued
/// compact for the sink's release, filled in first when queued for another (a backlog across an
/// upgrade).
#[tokio::test]
async fn compact_events_are_written_as_the_events_filled_in() {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let events: Vec<_> = (0..3).map(attackmesh_testkit::fixtures::event).collect();
    let name = kb
        .technique(&events[0].metadata.as_ref().unwrap().techniques[0].id)
        .unwrap()
        .name
        .clone();
    let written = |shape: FileShape, compact_for: Option<String>| {
        let (kb, events) = (kb.clone(), &events);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out.ndjson");
            let config = FileSinkConfig {
                path: Some(path.clone()),
                shape,
                ..Default::default()
            };
            let sink = FileSink::new(&config, dir.path().join("delivered"))
                .unwrap()
                .with_kb(kb.clone());
            assert!(sink.writes_compact());
            let events = crate::sinks::util::tests::queued_compact(&kb, events, compact_for.as_deref());
            assert_eq!(sink.send(&events).await, vec![ItemOutcome::Delivered; 3]);
            std::fs::read_to_string(path).unwrap()
        }
    };
    for shape in [FileShape::Canonical, FileShape::Hec, FileShape::Ocsf] {
        let full = written(shape, None).await;
        assert_eq!(full.lines().count(), 3);
        assert!(full.lines().all(|l| l.contains(&name)), "filled in ({shape:?}): {full}");
        if shape == FileShape::Canonical {
            assert!(full.lines().all(|l| l.contains("\"tactics\":[{")), "filled in: {full}");
        }
        assert_eq!(
            written(shape, Some(kb.attack_version().to_owned())).await,
            full,
            "{shape:?}"
        );
        assert_eq!(written(shape, Some("17.0".to_owned())).await, full, "{shape:?}");
    }
    let config = FileSinkConfig {
        path: Some(std::path::PathBuf::from("unused")),
        ..Default::default()
    };
    let sink = FileSink::new(&config, "unused".into()).unwrap();
    assert!(
        !sink.writes_compact(),
        "without a knowledge base the driver fills events in"
    );
}

#[tokio::test]
async fn batches_in_flight_together_reach_the_file_in_the_order_sent_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, config, sink) = default_sink(dir.path());
    // The first batch takes far longer to encode than the second, which must still wait for it;
    // the third resends an event of each, which the record then holds.
    let first: Vec<_> = (0..3000).map(queued).collect();
    let second: Vec<_> = (3000..3002).map(queued).collect();
    let third = vec![queued(3001), queued(3002), queued(5), queued(3003)];
    let (a, b, c) = futures::join!(sink.send(&first), sink.send(&second), sink.send(&third));
    for outcome in [a, b, c].concat() {
        assert_eq!(outcome, ItemOutcome::Delivered);
    }
    let id = |i: u64| (attackmesh_testkit::fixtures::event(i).event_id, 1);
    let want: Vec<_> = (0..3002).chain([3002, 3003]).map(id).collect();
    assert_eq!(written(&path), want);

    // The record matches the file: a restarted sink holds every line and writes none again.
    drop(sink);
    let sink = FileSink::new(&config, dir.path().join("delivered.log")).unwrap();
    let again: Vec<_> = [0, 2999, 3001, 3002, 3003].into_iter().map(queued).collect();
    assert!(sink.send(&again).await.iter().all(|o| *o == ItemOutcome::Delivered));
    assert_eq!(written(&path), want);
}
