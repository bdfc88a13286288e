//! Compact Export batches over real tonic: answers ask for them, naming the service's ATT&CK
//! release, only while every sink writes them by reference (file, Elasticsearch and HEC sinks
//! do; intel does not); a batch compact for that release is written, in every shape, exactly as
//! the same events sent in full, and its queue records say they are compact, on disk too; a
//! batch compact for another
//! release is answered RETRY with nothing queued; an event whose nameless technique or group the
//! release cannot fill in is refused alone; and a sink that does not write compact events, and
//! the dead-letter queue, get them filled in.

#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, sync::Arc};

use attackmesh::proto::{
    AckStatus, DetectionEvent, DetectorKind, EnrichedEvent, ExportRequest, ExportResponse, ThreatActor,
};
use attackmesh_attack::{Engine, compact};
use attackmesh_runtime::auth::Role;
use attackmesh_siem_export::{
    SiemExportConfig,
    config::{BatchConfig, RetryConfig},
    dlq::DeadLetterQueue,
    driver::Driver,
    queue::{EncodedEvent, Queue, QueueSettings},
    sinks::{
        ItemOutcome, QueuedEvent, Sink,
        file::{FileShape, FileSinkConfig},
    },
    status::SinkStats,
};
use attackmesh_testkit::{Running, Tokens};

use common::{eventually, export};

async fn start(config: SiemExportConfig) -> Running<attackmesh_siem_export::Error> {
    let server = Tokens::new(&[("adm", Role::Admin)]).server().await;
    Running::start(|listener, shutdown| async move {
        attackmesh_siem_export::server::serve(&config, server, listener, shutdown).await
    })
    .await
}

/// A canonical file sink (`events.ndjson`, the default one) under `dir/out`.
fn canonical_only(dir: &Path) -> SiemExportConfig {
    let mut c = common::config(dir);
    c.file.path = Some(dir.join("out").join("events.ndjson"));
    c
}

/// [`canonical_only`] with a HEC-shaped file sink (`hec.ndjson`) and an Elasticsearch sink
/// nobody answers (its queue keeps everything): sinks that write compact events by reference
/// too.
fn config(dir: &Path) -> SiemExportConfig {
    let mut c = canonical_only(dir);
    c.elasticsearch.url = Some(format!("http://{}", attackmesh_testkit::free_addr()));
    c.files.push(FileSinkConfig {
        name: Some("hec".into()),
        path: Some(dir.join("out").join("hec.ndjson")),
        shape: FileShape::Hec,
        ..Default::default()
    });
    c
}

/// Real Suricata and Cowrie records (when the shared data is there) and an event whose hints
/// make candidate groups, each attributed by the embedded engine: full, and compact as
/// enrichment sends it; with fixed ids and times.
fn events(engine: &Engine) -> (Vec<EnrichedEvent>, Vec<EnrichedEvent>) {
    let mut detections: Vec<DetectionEvent> = Vec::new();
    if let Some(dir) = attackmesh_testkit::shared_data() {
        let samples = dir.join("samples");
        for (format, path) in [
            (
                attackmesh::formats::Format::SuricataEve,
                samples.join("suricata/first-org-conf-2015.eve.ndjson"),
            ),
            (
                attackmesh::formats::Format::Cowrie,
                samples.join("cowrie/cowrie_local_session.json"),
            ),
        ] {
            let records = attackmesh_testkit::sample_events(format, &path);
            detections.extend(records.into_iter().take(60).map(|(_, ev)| ev));
        }
    }
    let mut hinted = attackmesh_testkit::event("falco.alert", DetectorKind::BehaviouralAnalysis, "custom rule", &[]);
    hinted.technique_hints = engine
        .kb()
        .group("G0016")
        .unwrap()
        .techniques
        .iter()
        .take(8)
        .cloned()
        .collect();
    detections.push(hinted);
    let enriched = |i: usize, ev: &DetectionEvent, attribution| {
        let mut e = attackmesh::enriched_event(ev.clone(), attribution, 1);
        e.event_id = format!("compact-{i:04}");
        e.enriched_at = Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        });
        e
    };
    let full = detections
        .iter()
        .enumerate()
        .map(|(i, ev)| enriched(i, ev, engine.attribute(ev)))
        .collect();
    let compact = detections
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let mut a = engine.attribute_compact(ev);
            compact::for_export(engine.kb(), &mut a, engine.rule_pack_version()).unwrap();
            enriched(i, ev, a)
        })
        .collect();
    (full, compact)
}

/// [`config`] with an intel sink nobody answers: a sink that is given compact events filled in.
fn with_intel(dir: &Path) -> SiemExportConfig {
    let mut c = config(dir);
    c.intel.peer.endpoints = vec![format!("http://{}", attackmesh_testkit::free_addr())];
    c.intel.peer.token = Some(attackmesh_runtime::secret::Secret::new("intel-token"));
    c
}

/// Exports `events` to a fresh service with the sinks of `config` (marked compact for
/// `compact_for`), waits for both files to hold them all, and returns the answer, both files and
/// the queue's records as read back from disk (each with whether it is marked compact).
async fn deliver(
    config: fn(&Path) -> SiemExportConfig,
    events: Vec<EnrichedEvent>,
    compact_for: &str,
) -> (ExportResponse, String, String, Vec<Option<std::sync::Arc<str>>>) {
    let dir = tempfile::tempdir().unwrap();
    let n = events.len();
    let running = start(config(dir.path())).await;
    let batch = ExportRequest {
        batch_id: 1,
        events,
        compact_for_attack_version: compact_for.into(),
        ..Default::default()
    };
    let answer = export(&running.channel(), vec![batch]).await.remove(0);
    assert_eq!(answer.status, AckStatus::Durable as i32, "{answer:?}");
    assert_eq!(answer.accepted as usize, n, "{answer:?}");
    let out = dir.path().join("out");
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    for f in ["events.ndjson", "hec.ndjson"] {
        eventually(30, f, || async { read(f).lines().count() == n }).await;
    }
    let marks = queued_marks(&dir.path().join("queues").join("elasticsearch"));
    (answer, read("events.ndjson"), read("hec.ndjson"), marks)
}

/// The compact marks of a queue's records, as a restarted process reads them.
fn queued_marks(queue_dir: &Path) -> Vec<Option<Arc<str>>> {
    common::recovered(queue_dir)
        .into_iter()
        .map(|e| e.compact_for.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_batch_is_written_in_every_shape_as_the_same_events_in_full() {
    let engine = Engine::embedded().unwrap();
    let release = engine.kb().attack_version().to_owned();
    let (full, compact) = events(&engine);
    assert!(
        compact
            .iter()
            .flat_map(|e| &e.metadata.as_ref().unwrap().techniques)
            .all(|t| t.name.is_empty()),
        "the compact events leave names out"
    );
    assert!(
        compact
            .iter()
            .any(|e| !e.metadata.as_ref().unwrap().threat_actors.is_empty()),
        "some event has candidate groups"
    );
    let n = full.len();
    let (answer, canonical, hec, marks) = deliver(config, compact.clone(), &release).await;
    assert_eq!(
        answer.attack_version, release,
        "every sink writes them by reference: compact batches are asked for"
    );
    assert_eq!(marks.len(), n);
    assert!(
        marks.iter().all(|m| m.as_deref() == Some(release.as_str())),
        "{marks:?}"
    );

    let (answer, want_canonical, want_hec, marks) = deliver(config, full, "").await;
    assert_eq!(answer.attack_version, release);
    assert!(marks.iter().all(Option::is_none));
    assert_eq!(canonical, want_canonical);
    assert_eq!(hec, want_hec);
    assert!(canonical.contains("\"name\":\"Network Service Discovery\"") || n < 10);

    // With a sink that is given them filled in, full events are asked for; a compact batch of
    // the release is still taken, and written the same.
    let (answer, canonical, hec, marks) = deliver(with_intel, compact, &release).await;
    assert_eq!(
        answer.attack_version, "",
        "with a sink that fills them in, full events are asked for"
    );
    assert!(marks.iter().all(|m| m.as_deref() == Some(release.as_str())));
    assert_eq!(canonical, want_canonical);
    assert_eq!(hec, want_hec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_compact_for_another_release_is_retried_whole_and_unfillable_events_are_refused() {
    let engine = Engine::embedded().unwrap();
    let release = engine.kb().attack_version().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let running = start(canonical_only(dir.path())).await;
    let mut ev = attackmesh_testkit::port_scan("e1", "203.0.113.9");
    ev.technique_hints = vec!["T1046".into()];
    let mut attribution = engine.attribute_compact(&ev);
    compact::for_export(engine.kb(), &mut attribution, engine.rule_pack_version()).unwrap();
    let event = |id: &str| {
        let mut e = attackmesh::enriched_event(ev.clone(), attribution.clone(), 1);
        e.event_id = id.into();
        e
    };
    let mut revoked = event("revoked");
    // T1073 is revoked: a name could only come from another technique.
    revoked.metadata.as_mut().unwrap().techniques[0].id = "T1073".into();
    let mut lowercase = event("lowercase");
    lowercase.metadata.as_mut().unwrap().threat_actors.push(ThreatActor {
        group_id: "g0016".into(),
        score: 0.6,
        ..Default::default()
    });
    let batches = vec![
        ExportRequest {
            batch_id: 1,
            events: vec![event("other-release")],
            compact_for_attack_version: "17.0".into(),
            ..Default::default()
        },
        ExportRequest {
            batch_id: 2,
            events: vec![event("fine"), revoked, lowercase],
            compact_for_attack_version: release.clone(),
            ..Default::default()
        },
    ];
    let answers = export(&running.channel(), batches).await;
    let other = &answers[0];
    assert_eq!(other.status, AckStatus::Retry as i32, "{other:?}");
    assert_eq!((other.accepted, other.attack_version.as_str()), (0, release.as_str()));
    assert!(
        other.message.contains("17.0") && other.message.contains(&release),
        "{}",
        other.message
    );
    let mixed = &answers[1];
    assert_eq!(
        (mixed.status, mixed.accepted),
        (AckStatus::Durable as i32, 1),
        "{mixed:?}"
    );
    let refused: Vec<(&str, &str)> = mixed
        .rejections
        .iter()
        .flat_map(|r| {
            r.violations
                .iter()
                .map(move |v| (r.event_id.as_str(), v.field.as_str()))
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("revoked", "metadata.techniques[0].id"),
            ("lowercase", "metadata.threat_actors[0].group_id")
        ]
    );
    let out = dir.path().join("out").join("events.ndjson");
    eventually(30, "the accepted event is written", || async {
        std::fs::read_to_string(&out).unwrap_or_default().lines().count() == 1
    })
    .await;
    let line = std::fs::read_to_string(&out).unwrap();
    assert!(line.contains("\"event_id\":\"fine\"") && line.contains("\"name\":\"Network Service Discovery\""));
}

/// Records what it is given; refuses the first event it ever sees for good.
#[derive(Default)]
struct Refusing(std::sync::Mutex<Vec<Arc<QueuedEvent>>>);

impl Sink for Refusing {
    fn kind(&self) -> &'static str {
        "refusing"
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> futures::future::BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let mut seen = self.0.lock().unwrap();
            let first = seen.is_empty();
            seen.extend(events.iter().cloned());
            let mut outcomes = vec![ItemOutcome::Delivered; events.len()];
            if first {
                outcomes[0] = ItemOutcome::Dead("refused".into());
            }
            outcomes
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_that_do_not_write_compact_events_and_dead_letters_get_them_filled_in() {
    let engine = Engine::embedded().unwrap();
    let kb = engine.kb().clone();
    let release: Arc<str> = kb.attack_version().into();
    let (full, compact) = events(&engine);
    let dir = tempfile::tempdir().unwrap();
    let settings = QueueSettings {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 26,
        fsync: Default::default(),
    };
    let (queue, _) = Queue::open("file", &dir.path().join("q"), settings).unwrap();
    let encoded: Vec<_> = compact
        .into_iter()
        .map(|e| EncodedEvent::new(e, Arc::default(), 1).compact_for(release.clone()))
        .collect();
    queue.append(&encoded, 1).unwrap();
    let sink = Arc::new(Refusing::default());
    let driver = Driver {
        name: "file",
        sink: sink.clone(),
        reader: queue.reader().unwrap(),
        dlq: Arc::new(DeadLetterQueue::open(dir.path(), "file").unwrap()),
        stats: Arc::new(SinkStats::default()),
        batch: BatchConfig::default(),
        retry: RetryConfig::default(),
        kb,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(driver.run(stop.clone(), std::time::Duration::from_secs(1)));
    let n = full.len();
    eventually(30, "every event reaches the sink", || async {
        sink.0.lock().unwrap().len() == n
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    let seen = std::mem::take(&mut *sink.0.lock().unwrap());
    for (got, want) in seen.iter().zip(&full) {
        assert!(got.compact_for.is_none());
        assert_eq!(got.event.to_event(), *want, "{}", want.event_id);
    }
    let letters = common::dead_letters(dir.path(), "file");
    assert_eq!(letters.len(), 1);
    let letter = letters[0].entry.decode_event().unwrap();
    assert_eq!(letter, full[0]);
}
