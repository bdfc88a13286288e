use std::sync::Arc;

use super::*;
use crate::sinks::{ItemOutcome, QueuedEvent, Sink};

fn queued(i: u64) -> Arc<QueuedEvent> {
    Arc::new(QueuedEvent {
        seq: i,
        event: Arc::new(attackmesh_testkit::fixtures::event(i)),
        trace_context: Default::default(),
        enqueued_at_micros: 0,
    })
}

#[tokio::test]
async fn lines_have_the_configured_shape_and_files_rotate_by_size() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [FileShape::Canonical, FileShape::Ecs, FileShape::Hec] {
        let path = dir.path().join(format!("{shape:?}.ndjson"));
        let config = FileSinkConfig {
            path: Some(path.clone()),
            shape,
            rotate_bytes: 8192,
            keep_files: 2,
            ..Default::default()
        };
        let sink = FileSink::new(&config).unwrap();
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
        }
    }
}
