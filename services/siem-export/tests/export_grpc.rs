//! The Export service over real tonic on 127.0.0.1, behind the runtime's authentication: a
//! batch is acknowledged only once it is on disk in every sink's queue, invalid events are
//! rejected one by one while the valid ones are delivered, a full queue answers RETRY, and one
//! batch reaches several file sinks, each in its own shape.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::HashMap, time::Duration};

use attackmesh::{
    held::EventView,
    proto::{AckStatus, ExportRequest, GetSinkStatusRequest, export_service_client::ExportServiceClient},
};
use attackmesh_runtime::auth::Role;
use attackmesh_siem_export::{
    SiemExportConfig,
    sinks::file::{FileShape, FileSinkConfig},
};
use attackmesh_testkit::{Running, Tokens, fixtures, free_addr, with_token};

use common::{eventually, export};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Export on 127.0.0.1, SERVING; `adm` (token `adm-token`) exports, `ana` (`ana-token`) reads
/// sink status.
async fn start(config: SiemExportConfig) -> Running<attackmesh_siem_export::Error> {
    let server = Tokens::new(&[("adm", Role::Admin), ("ana", Role::Analyst)])
        .server()
        .await;
    Running::start(|listener, shutdown| async move {
        attackmesh_siem_export::server::serve(&config, server, listener, shutdown).await
    })
    .await
}

/// A file sink plus an Elasticsearch sink nobody answers (its queue keeps everything).
fn config(dir: &std::path::Path) -> SiemExportConfig {
    let mut c = common::config(dir);
    c.file.path = Some(dir.join("out").join("events.ndjson"));
    let unused = free_addr();
    c.elasticsearch.url = Some(format!("http://{unused}"));
    c
}

/// The ids and trace contexts of a queue's events, as a fresh process reads them after a crash.
fn recovered_ids(queue_dir: &std::path::Path) -> (Vec<String>, Vec<HashMap<String, String>>) {
    common::recovered(queue_dir)
        .into_iter()
        .map(|e| (e.event.event().event_id.clone(), HashMap::clone(&e.trace_context)))
        .unzip()
}

#[tokio::test]
async fn invalid_events_are_rejected_one_by_one_and_valid_ones_are_durable_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(dir.path())).await;
    let mut events: Vec<_> = (0..4).map(fixtures::event).collect();
    events[1].revision = 0;
    events[1].source.as_mut().unwrap().ip = "not-an-ip".into();
    let batch = ExportRequest {
        batch_id: 7,
        events,
        trace_context: HashMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())]),
        ..Default::default()
    };
    let answers = export(&running.channel(), vec![batch]).await;
    let a = &answers[0];
    assert_eq!((a.batch_id, a.status, a.accepted), (7, AckStatus::Durable as i32, 3));
    assert_eq!(a.rejections.len(), 1);
    assert_eq!(
        (a.rejections[0].index, a.rejections[0].event_id.as_str()),
        (1, "evt-00000001")
    );
    let fields: Vec<&str> = a.rejections[0].violations.iter().map(|v| v.field.as_str()).collect();
    assert!(
        fields.contains(&"revision") && fields.contains(&"source.ip"),
        "{fields:?}"
    );
    // At the moment of the ack the events were on disk in the dead sink's queue, with the trace.
    let (ids, traces) = recovered_ids(&dir.path().join("queues").join("elasticsearch"));
    assert_eq!(ids, vec!["evt-00000000", "evt-00000002", "evt-00000003"]);
    assert_eq!(traces[0].get("traceparent").map(String::as_str), Some(TRACEPARENT));
    // The file sink delivers the valid events, never the invalid one.
    let out = dir.path().join("out").join("events.ndjson");
    eventually(30, "file sink wrote 3 lines", || async {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 3)
    })
    .await;
    let text = std::fs::read_to_string(&out).unwrap();
    let written: Vec<attackmesh::proto::EnrichedEvent> =
        text.lines().map(|l| attackmesh::json::from_json(l).unwrap()).collect();
    assert_eq!(written.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ids);
    // Status for an analyst: both sinks, the dead one unhealthy with its backlog.
    let status = || async {
        let mut client = ExportServiceClient::new(running.channel());
        client
            .get_sink_status(with_token(GetSinkStatusRequest {}, "ana-token"))
            .await
            .unwrap()
            .into_inner()
    };
    eventually(30, "file sink counted 3 delivered", || async {
        status()
            .await
            .sinks
            .iter()
            .any(|s| s.name == "file" && s.delivered == 3)
    })
    .await;
    let status = status().await;
    let by_name: HashMap<_, _> = status.sinks.iter().map(|s| (s.name.as_str(), s)).collect();
    assert_eq!(by_name["file"].delivered, 3);
    assert_eq!(by_name["elasticsearch"].queue_depth, 3);
    assert!(!by_name["elasticsearch"].healthy);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_with_an_id_twice_is_one_event_or_refused_for_that_id_and_resends_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::config(dir.path());
    let out = dir.path().join("out").join("events.ndjson");
    c.file.path = Some(out.clone());
    let running = start(c).await;
    let same = fixtures::event(1);
    let differ = fixtures::event(2);
    let mut differ_again = differ.clone();
    differ_again.description = "another event under the same id".into();
    let mut revised = fixtures::event(3);
    revised.revision = 2;
    let batch = |batch_id, events| ExportRequest {
        batch_id,
        events,
        trace_context: HashMap::new(),
        ..Default::default()
    };
    let answers = export(
        &running.channel(),
        vec![
            batch(
                1,
                vec![
                    same.clone(),
                    differ,
                    same.clone(),
                    differ_again,
                    fixtures::event(3),
                    revised,
                ],
            ),
            // A resend of events already delivered: written once all the same.
            batch(2, vec![same.clone(), fixtures::event(3)]),
            batch(3, vec![fixtures::event(9)]),
        ],
    )
    .await;
    let a = &answers[0];
    assert_eq!((a.status, a.accepted), (AckStatus::Durable as i32, 4), "{a:?}");
    let refused: Vec<(u32, &str)> = a.rejections.iter().map(|r| (r.index, r.event_id.as_str())).collect();
    assert_eq!(refused, vec![(1, "evt-00000002"), (3, "evt-00000002")]);
    for r in &a.rejections {
        assert_eq!(r.violations[0].field, "event_id");
        assert!(r.violations[0].description.contains("evt-00000002"), "{r:?}");
    }
    eventually(30, "the last batch is written", || async {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("evt-00000009"))
    })
    .await;
    let written: Vec<(String, u32)> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| attackmesh::json::from_json::<attackmesh::proto::EnrichedEvent>(l).unwrap())
        .map(|e| (e.event_id, e.revision))
        .collect();
    let expect = |id: &str, rev: u32| (id.to_owned(), rev);
    assert_eq!(
        written,
        vec![
            expect("evt-00000001", 1),
            expect("evt-00000003", 1),
            expect("evt-00000003", 2),
            expect("evt-00000009", 1)
        ],
        "each (event_id, revision) once; a higher revision is an update"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_retry_and_takes_nothing_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.queue.segment_bytes = 16 * 1024;
    c.queue.max_bytes = 64 * 1024;
    c.queue.retry_after = Duration::from_millis(1500);
    let running = start(c).await;
    let batches: Vec<_> = (0..20u64)
        .map(|b| ExportRequest {
            batch_id: b,
            events: (b * 10..b * 10 + 10).map(fixtures::event).collect(),
            trace_context: HashMap::new(),
            ..Default::default()
        })
        .collect();
    let answers = export(&running.channel(), batches).await;
    let first_retry = answers
        .iter()
        .position(|a| a.status == AckStatus::Retry as i32)
        .expect("the queue fills up");
    assert!(first_retry > 0);
    let r = &answers[first_retry];
    assert_eq!(r.accepted, 0);
    assert_eq!(
        r.retry_after.as_ref().map(|d| (d.seconds, d.nanos)),
        Some((1, 500_000_000))
    );
    assert!(r.message.contains("elasticsearch"), "{}", r.message);
    let durable: Vec<u64> = answers
        .iter()
        .filter(|a| a.status == AckStatus::Durable as i32)
        .map(|a| a.batch_id)
        .collect();
    // Exactly the acknowledged batches were queued for the dead sink.
    let (ids, _) = recovered_ids(&dir.path().join("queues").join("elasticsearch"));
    let expected: Vec<String> = durable
        .iter()
        .flat_map(|b| (b * 10..b * 10 + 10).map(|i| format!("evt-{i:08}")))
        .collect();
    assert_eq!(ids, expected);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn export_needs_the_admin_role() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(dir.path())).await;
    let mut client = ExportServiceClient::new(running.channel());
    let batch = ExportRequest {
        batch_id: 1,
        events: vec![fixtures::event(1)],
        trace_context: HashMap::new(),
        ..Default::default()
    };
    let err = client
        .export(with_token(tokio_stream::iter(vec![batch]), "ana-token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn one_batch_lands_in_every_file_sink_each_in_its_own_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut c = common::config(dir.path());
    c.file.path = Some(out.join("events.ndjson"));
    for (name, shape) in [("ecs", FileShape::Ecs), ("hec", FileShape::Hec)] {
        c.files.push(FileSinkConfig {
            name: Some(name.into()),
            path: Some(out.join(format!("{name}.ndjson"))),
            shape,
            ..Default::default()
        });
    }
    let running = start(c).await;
    let batch = ExportRequest {
        batch_id: 1,
        events: (0..3).map(fixtures::event).collect(),
        trace_context: HashMap::new(),
        ..Default::default()
    };
    let answers = export(&running.channel(), vec![batch]).await;
    assert_eq!((answers[0].status, answers[0].accepted), (AckStatus::Durable as i32, 3));
    let lines = |file: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for file in ["events.ndjson", "ecs.ndjson", "hec.ndjson"] {
        eventually(30, &format!("{file} has 3 lines"), || async { lines(file).len() == 3 }).await;
    }
    let ids: Vec<String> = (0..3).map(|i| format!("evt-{i:08}")).collect();
    let ecs = lines("ecs.ndjson");
    assert_eq!(
        ecs.iter()
            .map(|d| d["event"]["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    for doc in &ecs {
        assert_eq!(doc["threat"]["framework"], "MITRE ATT&CK", "{doc}");
        assert!(doc.get("@timestamp").is_some(), "{doc}");
    }
    let hec = lines("hec.ndjson");
    assert_eq!(
        hec.iter()
            .map(|e| e["event"]["event_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    for envelope in &hec {
        assert!(envelope["time"].is_number(), "{envelope}");
        assert!(envelope["event"]["mitre_attack"].is_object(), "{envelope}");
    }
    let canonical = lines("events.ndjson");
    assert!(canonical.iter().all(|e| e.get("technique_ids").is_some()));
    // Each named sink has its own queue, dead letters and status row.
    let mut client = ExportServiceClient::new(running.channel());
    let status = client
        .get_sink_status(with_token(GetSinkStatusRequest {}, "ana-token"))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<(&str, &str)> = status
        .sinks
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("file", "file"), ("file-ecs", "file"), ("file-hec", "file")]
    );
    for name in ["file", "file-ecs", "file-hec"] {
        assert!(dir.path().join("queues").join(name).is_dir(), "{name}");
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn technique_ids_outside_attack_are_rejected_like_ingest_rejects_them() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(dir.path())).await;
    let mut forged = fixtures::event(0);
    forged.technique_ids = vec!["T1046".into(), "T9999".into()];
    let batch = ExportRequest {
        batch_id: 3,
        events: vec![forged, fixtures::event(1)],
        ..Default::default()
    };
    let answers = export(&running.channel(), vec![batch]).await;
    let a = &answers[0];
    assert_eq!((a.status, a.accepted), (AckStatus::Durable as i32, 1), "{a:?}");
    assert_eq!(a.rejections.len(), 1, "{a:?}");
    let rejection = &a.rejections[0];
    assert_eq!(rejection.index, 0);
    assert_eq!(rejection.violations[0].field, "technique_ids[1]", "{rejection:?}");
    assert!(rejection.violations[0].description.contains("T9999"), "{rejection:?}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn batches_of_many_streams_at_once_are_all_durable_and_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::config(dir.path());
    c.file.path = Some(dir.path().join("out").join("events.ndjson"));
    let running = start(c).await;
    // More streams at once than batches are decoded at once: the others wait their turn.
    let (streams, batches, per_batch) = (6u64, 4u64, 25u64);
    let sends = (0..streams).map(|s| {
        let channel = running.channel();
        let batches: Vec<ExportRequest> = (0..batches)
            .map(|b| ExportRequest {
                batch_id: s * 100 + b,
                events: (0..per_batch)
                    .map(|i| fixtures::event((s * batches + b) * per_batch + i))
                    .collect(),
                trace_context: HashMap::new(),
                ..Default::default()
            })
            .collect();
        tokio::spawn(async move { export(&channel, batches).await })
    });
    for answers in futures::future::join_all(sends).await {
        for a in answers.unwrap() {
            assert_eq!((a.status, a.accepted), (AckStatus::Durable as i32, per_batch as u32));
        }
    }
    let total = (streams * batches * per_batch) as usize;
    let out = dir.path().join("out").join("events.ndjson");
    eventually(30, "file sink wrote every event", || async {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= total)
    })
    .await;
    let text = std::fs::read_to_string(&out).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| {
            attackmesh::json::from_json::<attackmesh::proto::EnrichedEvent>(l)
                .unwrap()
                .event_id
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..total as u64).map(|i| fixtures::event(i).event_id).collect();
    want.sort();
    assert_eq!(ids, want, "each event exactly once");
    running.stop().await.unwrap();
}
