use super::*;

fn log_with(dir: &Path, output: &Path, body: &str) -> PathBuf {
    let path = dir.join("file.log");
    let header = serde_json::Value::String(output.display().to_string());
    std::fs::write(&path, format!("{HEADER} {header}\n{body}")).unwrap();
    path
}

#[test]
fn only_the_last_capacity_ids_are_remembered_with_their_highest_revision() {
    let mut recent = Recent::new(2);
    recent.insert("a", 1);
    recent.insert("b", 1);
    recent.insert("a", 2);
    recent.insert("c", 1);
    assert!(!recent.holds("b", 1), "b is the least recently written");
    assert!(recent.holds("a", 2) && recent.holds("a", 1) && !recent.holds("a", 3));
    assert!(recent.holds("c", 1));
    for i in 0..1000 {
        recent.insert("a", i);
    }
    assert!(recent.order.len() <= 2 * 64 + 1, "stale entries are dropped");
    assert_eq!(recent.entries().collect::<Vec<_>>(), vec![("c", 1), ("a", 999)]);
}

#[test]
fn what_was_written_is_remembered_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.ndjson");
    let path = dir.path().join("delivered").join("file.log");
    let mut d = Delivered::open(&path, &output, 0, 100).unwrap();
    let lines = [Line::new("a", 1, 10).unwrap(), Line::new("b", 1, 12).unwrap()];
    d.begin(0, &lines).unwrap();
    d.complete(22, &lines).unwrap();
    drop(d);
    let d = Delivered::open(&path, &output, 22, 100).unwrap();
    assert!(d.holds("a", 1) && d.holds("b", 1) && !d.holds("b", 2) && !d.holds("c", 1));
}

#[test]
fn a_batch_cut_by_a_crash_counts_only_the_lines_that_reached_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.ndjson");
    // Logged, then the process died with 15 of its 30 bytes in the file: only `a` made it.
    let path = log_with(dir.path(), &output, "s 1 old\nb 100\nw 1 10 a\nw 1 20 b\n");
    let d = Delivered::open(&path, &output, 115, 100).unwrap();
    assert!(d.holds("old", 1) && d.holds("a", 1) && !d.holds("b", 1));
    // Nothing of it reached the file.
    let path = log_with(dir.path(), &output, "b 100\nw 1 10 a\n");
    assert!(!Delivered::open(&path, &output, 100, 100).unwrap().holds("a", 1));
    // A failed write retried: the first attempt wrote `a` whole before the retry began at 110.
    let path = log_with(
        dir.path(),
        &output,
        "b 100\nw 1 10 a\nw 1 20 b\nb 110\nw 1 20 b\n@ 130\n",
    );
    let d = Delivered::open(&path, &output, 130, 100).unwrap();
    assert!(d.holds("a", 1) && d.holds("b", 1));
}

#[test]
fn a_complete_batch_stays_written_after_the_file_is_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.ndjson");
    // Complete, then rotated (the file starts again), then a batch cut before any byte.
    let path = log_with(dir.path(), &output, "b 0\nw 1 10 a\n@ 10\nb 0\nw 1 10 b\n");
    let d = Delivered::open(&path, &output, 0, 100).unwrap();
    assert!(d.holds("a", 1) && !d.holds("b", 1));
}

#[test]
fn offsets_of_another_output_file_and_torn_records_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.ndjson");
    let path = log_with(dir.path(), &dir.path().join("old.ndjson"), "s 1 kept\nb 0\nw 1 10 a\n");
    let d = Delivered::open(&path, &output, 50, 100).unwrap();
    assert!(d.holds("kept", 1) && !d.holds("a", 1));
    let path = log_with(dir.path(), &output, "s 1 whole\ns 1 tor");
    let d = Delivered::open(&path, &output, 0, 100).unwrap();
    assert!(d.holds("whole", 1) && !d.holds("tor", 1));
    let garbage = dir.path().join("garbage.log");
    std::fs::write(&garbage, "not a log\ns 1 x\n").unwrap();
    assert!(!Delivered::open(&garbage, &output, 0, 100).unwrap().holds("x", 1));
}

#[test]
fn the_log_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.ndjson");
    let path = dir.path().join("file.log");
    let mut d = Delivered::open(&path, &output, 0, 10).unwrap();
    let mut len = 0;
    for batch in 0..50u64 {
        let ids: Vec<String> = (0..100).map(|i| format!("id-{}", batch * 100 + i)).collect();
        let lines: Vec<Line<'_>> = ids.iter().filter_map(|id| Line::new(id, 1, 10)).collect();
        d.begin(len, &lines).unwrap();
        len += 1000;
        d.complete(len, &lines).unwrap();
    }
    let records = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(records < 2 * 10 + 1024 + 102, "{records} records");
    let d = Delivered::open(&path, &output, len, 10).unwrap();
    assert!(d.holds("id-4999", 1) && d.holds("id-4990", 1) && !d.holds("id-4989", 1));
    assert!(!recordable("a b") && !recordable("") && !recordable("a\nb") && recordable("evt-1:x.y_z"));
}
