//! `attackmesh dlq` on a data directory someone else could have written to: sink names from
//! entries and flags never leave the data directory, and unreadable lines are reported.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::json;

/// A config whose siem-export keeps its data under `<dir>/export` with the file sink only.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("config.json");
    let config = json!({
        "auth": {"tokens": [{"name": "ops", "role": "admin", "sha256": "ab".repeat(32)}]},
        "siem_export": {"data_dir": dir.join("export"), "file": {"path": dir.join("out/events.ndjson")}},
    });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

fn dlq(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attackmesh"))
        .arg("dlq")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn entry(id: &str, sink: &str, event_id: &str) -> String {
    json!({
        "id": id,
        "sink": sink,
        "at": "2024-01-01T00:00:00.000Z",
        "reason": "HTTP 400",
        "event_id": event_id,
        "event": {"event_id": event_id, "event_type": "test", "source_service": "test", "revision": 1},
    })
    .to_string()
}

/// Writes `lines` (joined by newlines, no trailing one) as a dead-letter file of sink `file`.
fn dead_letters(dir: &Path, lines: &[String]) -> PathBuf {
    let sink_dir = dir.join("export/dlq/file");
    std::fs::create_dir_all(&sink_dir).unwrap();
    let path = sink_dir.join("dead-20240101T000000.000000Z.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn replay_never_builds_a_path_from_an_unchecked_sink_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    dead_letters(
        dir.path(),
        &[entry("a1", "file", "e-1"), entry("b2", "../../outside", "e-2")],
    );

    let output = dlq(&config, &["replay", "--all"]);
    assert!(!output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("b2") && err.contains("../../outside"), "{err}");
    assert!(
        !dir.path().join("outside").exists(),
        "nothing is written outside the data directory"
    );
    assert!(
        !dir.path().join("export/dlq/file/replay").exists()
            || std::fs::read_dir(dir.path().join("export/dlq/file/replay"))
                .unwrap()
                .count()
                == 0,
        "a refused replay hands nothing back"
    );

    for args in [
        &["replay", "--all", "--sink", "../../out"][..],
        &["list", "--sink", "../../out"],
        &["replay", "--all", "--sink", "elasticsearch"],
    ] {
        let output = dlq(&config, args);
        assert!(!output.status.success(), "{args:?}");
        let err = stderr(&output);
        assert!(
            err.contains("not a configured sink") && err.contains("file"),
            "{args:?}: {err}"
        );
    }
    assert!(!dir.path().join("out").join("replay").exists());
    assert!(!dir.path().join("export/out").exists());

    // The good entry alone replays.
    let output = dlq(&config, &["replay", "a1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("file: 1 event(s)"));
}

#[test]
fn unreadable_dead_letter_lines_are_reported_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let path = dead_letters(
        dir.path(),
        &[
            entry("a1", "file", "e-1"),
            "{not json".into(),
            entry("c3", "file", "e-3"),
            "{\"id\":\"torn".into(),
        ],
    );

    let output = dlq(&config, &["list"]);
    let err = stderr(&output);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    assert!(err.contains("2 dead-letter line(s) could not be read"), "{err}");
    assert!(err.contains(&format!("{}: lines 2, 4", path.display())), "{err}");

    let output = dlq(&config, &["replay", "--all"]);
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "replay says that not everything could be read: {err}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("file: 2 event(s)"));
    assert!(err.contains("lines 2, 4"), "{err}");
}
