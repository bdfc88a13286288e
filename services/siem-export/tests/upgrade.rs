//! Upgrades: a data directory the previous release left behind (a committed fixture, see
//! `tests/data/release-6d77945/README.md`) is drained by this release over real gRPC, with its
//! dead letters still listed; a queue written by a newer release is refused, not misread.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, path::Path};

use attackmesh_runtime::{auth::Role, format::MARKER};
use attackmesh_siem_export::{SiemExportConfig, dlq, server::open_sinks};
use attackmesh_testkit::{Running, Tokens, file_sink::wait_for_sink};

/// A copy of the previous release's data directory (git keeps no empty directories).
fn previous_release() -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/release-6d77945");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["queues/file", "dlq/file"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(fixture.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                continue;
            }
            std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn config(dir: &Path) -> SiemExportConfig {
    let mut c = common::config(dir);
    c.file.path = Some(dir.join("out").join("events.ndjson"));
    c
}

#[tokio::test]
async fn a_queue_of_the_previous_release_is_drained_by_this_one() {
    let dir = previous_release();
    let config = config(dir.path());
    let server = Tokens::new(&[("adm", Role::Admin)]).server().await;
    let running = Running::start(|listener, shutdown| async move {
        attackmesh_siem_export::server::serve(&config, server, listener, shutdown).await
    })
    .await;
    let waiting: BTreeSet<String> = (12..40).map(|i| format!("evt-{i:08}")).collect();
    let delivered = wait_for_sink(&dir.path().join("out").join("events.ndjson"), &waiting, |_| true).await;
    let ids: BTreeSet<String> = delivered.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(
        ids, waiting,
        "exactly the unacknowledged events, none acknowledged before"
    );
    assert!(
        delivered.iter().all(|e| !e.technique_ids.is_empty()),
        "events are read whole"
    );
    let letters = common::dead_letters(dir.path(), "file");
    let mut ids: Vec<_> = letters.iter().map(|l| l.entry.event_id.clone().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["evt-00000100", "evt-00000101"]);
    let marker = |sub: &str| std::fs::read_to_string(dir.path().join(sub).join(MARKER)).unwrap();
    // The queue is marked with the current layout (version 1 data is valid in it), so a release
    // that reads only version 1 no longer opens it.
    assert_eq!(marker("queues/file"), "attackmesh-queue 2\n");
    assert_eq!(marker("dlq/file"), "attackmesh-dead-letters 1\n");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_queue_or_dead_letters_of_a_newer_release_are_refused_and_left_alone() {
    for (sub, name, current) in [
        ("queues/file", "attackmesh-queue", 2),
        ("dlq/file", "attackmesh-dead-letters", 1),
    ] {
        let newer = current + 1;
        let dir = previous_release();
        std::fs::write(dir.path().join(sub).join(MARKER), format!("{name} {newer}\n")).unwrap();
        let before: Vec<_> = std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let err = open_sinks(&config(dir.path())).await.err().unwrap().to_string();
        assert!(
            err.contains(&format!(
                "holds {name} format version {newer}, written by a newer attackmesh"
            )),
            "{err}"
        );
        assert!(err.contains(&format!("reads versions up to {current}")), "{err}");
        for path in before {
            assert!(path.exists(), "{} kept", path.display());
        }
        if sub == "dlq/file" {
            let listed = dlq::list(dir.path(), &["file".to_owned()], Some("file"))
                .err()
                .unwrap()
                .to_string();
            assert!(listed.contains("written by a newer attackmesh"), "{listed}");
        }
    }
}
