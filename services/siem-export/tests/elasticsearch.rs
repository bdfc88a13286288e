//! The Elasticsearch sink against a fault double of the `_bulk` API: gzip bodies, external
//! versions (409 on an older or equal revision), whole-request 429/5xx, 413 above a body size,
//! and per-item errors (a 400 mapping error, a one-off 429).

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashMap,
    io::Read,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use attackmesh_runtime::secret::Secret;
use attackmesh_testkit::fixtures;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post, put},
};
use serde_json::{Value, json};

use common::{Harness, config, dead_letters, eventually};

#[derive(Default)]
struct Es {
    /// _id → (version, document)
    docs: HashMap<String, (u64, Value)>,
    /// Whole-request answers to give first (e.g. 429, 503).
    fail_first: Vec<u16>,
    /// Largest accepted body (decompressed), else 413.
    max_body: usize,
    templates: Vec<String>,
    bulk_requests: usize,
    too_large: usize,
    gzip_seen: bool,
    auth_seen: Vec<String>,
    throttled_once: Vec<String>,
    /// The mapping was fixed: nothing is rejected any more.
    fixed: bool,
}

type Shared = Arc<Mutex<Es>>;

async fn root() -> Json<Value> {
    Json(json!({"version": {"number": "8.15.3"}, "tagline": "You Know, for Search"}))
}

async fn template(State(s): State<Shared>, Path(name): Path<String>) -> Json<Value> {
    s.lock().unwrap().templates.push(name);
    Json(json!({"acknowledged": true}))
}

async fn bulk(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, Json<Value>) {
    let mut es = s.lock().unwrap();
    es.bulk_requests += 1;
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        es.auth_seen.push(a.to_owned());
    }
    let mut text = String::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        es.gzip_seen = true;
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
    } else {
        text = String::from_utf8_lossy(&body).into_owned();
    }
    if !es.fail_first.is_empty() {
        let status = es.fail_first.remove(0);
        return (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": {"type": "es_rejected_execution_exception"}})),
        );
    }
    if es.max_body > 0 && text.len() > es.max_body {
        es.too_large += 1;
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"error": "request too large"})),
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        let doc: Value = serde_json::from_str(pair[1]).unwrap();
        let (op, meta) = action
            .as_object()
            .unwrap()
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        let id = meta["_id"].as_str().unwrap().to_owned();
        let version = meta["version"].as_u64().unwrap_or(1);
        let item = if doc["message"] == "REJECT" && !es.fixed {
            json!({"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [source.ip]"}})
        } else if doc["message"] == "THROTTLE" && !es.throttled_once.contains(&id) {
            es.throttled_once.push(id.clone());
            json!({"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}})
        } else {
            match es.docs.get(&id) {
                Some((current, _)) if op == "create" || *current >= version => json!({"status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": format!("[{id}]: version conflict, current version [{current}] is higher or equal to the one provided [{version}]"),
                }}),
                _ => {
                    es.docs.insert(id.clone(), (version, doc));
                    json!({"status": 201, "result": "created"})
                }
            }
        };
        items.push(json!({ op: item }));
    }
    (StatusCode::OK, Json(json!({"errors": true, "items": items})))
}

async fn double(es: Es) -> (SocketAddr, Shared) {
    double_on(attackmesh_testkit::bind().await.0, es).await
}

async fn double_on(listener: tokio::net::TcpListener, es: Es) -> (SocketAddr, Shared) {
    let shared = Arc::new(Mutex::new(es));
    let app = Router::new()
        .route("/", get(root))
        .route("/_index_template/{name}", put(template))
        .route("/_bulk", post(bulk))
        .with_state(shared.clone());
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

fn es_config(dir: &std::path::Path, addr: SocketAddr) -> attackmesh_siem_export::SiemExportConfig {
    let mut c = config(dir);
    c.elasticsearch.url = Some(format!("http://{addr}"));
    c.elasticsearch.api_key = Some(Secret::new("a2V5OnNlY3JldA=="));
    c
}

async fn delivered(h: &Harness, n: u64) {
    eventually(30, &format!("{n} delivered"), || async {
        h.sink("elasticsearch").status().delivered >= n
    })
    .await;
}

#[tokio::test]
async fn documents_are_indexed_once_by_event_id_and_newer_revisions_replace_older() {
    let (addr, es) = double(Es::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&es_config(dir.path(), addr)).await;
    let events: Vec<_> = (0..20).map(fixtures::event).collect();
    h.state.enqueue(events.clone(), HashMap::new()).await.unwrap();
    delivered(&h, 20).await;
    // The same batch again (an upstream resend): 409s, counted as delivered, nothing duplicated.
    h.state.enqueue(events.clone(), HashMap::new()).await.unwrap();
    delivered(&h, 40).await;
    let mut newer = events[3].clone();
    newer.revision = 2;
    newer.technique_ids = vec!["T1021.004".into()];
    let stale = events[3].clone();
    h.state.enqueue(vec![newer, stale], HashMap::new()).await.unwrap();
    delivered(&h, 42).await;
    {
        let s = es.lock().unwrap();
        assert_eq!(s.docs.len(), 20);
        assert!(s.gzip_seen, "bodies are gzip-compressed");
        assert_eq!(s.templates, vec!["attackmesh-alerts"]);
        assert!(
            s.auth_seen.iter().all(|a| a == "ApiKey a2V5OnNlY3JldA=="),
            "{:?}",
            s.auth_seen
        );
        let (version, doc) = &s.docs["evt-00000003"];
        assert_eq!(
            *version, 2,
            "the re-attributed revision replaced the first, the stale one did not come back"
        );
        assert_eq!(doc["attackmesh"]["technique_ids"], json!(["T1021.004"]));
        assert_eq!(
            s.docs["evt-00000000"].1["threat"]["technique"]["id"],
            json!(["T1110", "T1046"])
        );
    }
    assert!(dead_letters(dir.path(), "elasticsearch").is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried() {
    let (addr, es) = double(Es {
        fail_first: vec![429, 503, 502],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&es_config(dir.path(), addr)).await;
    h.state
        .enqueue((0..10).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    delivered(&h, 10).await;
    assert_eq!(es.lock().unwrap().docs.len(), 10);
    let status = h.sink("elasticsearch").status();
    assert!(status.retried >= 30 && status.healthy, "{status:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_413_splits_the_batch_until_it_fits() {
    let (addr, es) = double(Es {
        max_body: 40_000,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = es_config(dir.path(), addr);
    c.batch.max_events = 200;
    let h = Harness::start(&c).await;
    h.state
        .enqueue((0..100).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    delivered(&h, 100).await;
    {
        let s = es.lock().unwrap();
        assert_eq!(s.docs.len(), 100);
        assert!(s.too_large > 0, "the double must have refused a large body");
    }
    assert!(dead_letters(dir.path(), "elasticsearch").is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn per_item_errors_retry_only_throttled_items_and_dead_letter_rejected_ones() {
    let (addr, es) = double(Es::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = es_config(dir.path(), addr);
    c.elasticsearch.api_key = None;
    c.elasticsearch.username = Some("elastic".into());
    c.elasticsearch.password = Some(Secret::new("changeme"));
    let h = Harness::start(&c).await;
    let mut events: Vec<_> = (0..10).map(fixtures::event).collect();
    events[2].description = "REJECT".into();
    events[7].description = "THROTTLE".into();
    h.state.enqueue(events, HashMap::new()).await.unwrap();
    eventually(30, "9 delivered, 1 dead", || async {
        let s = h.sink("elasticsearch").status();
        s.delivered == 9 && s.dead_lettered == 1
    })
    .await;
    {
        let s = es.lock().unwrap();
        assert_eq!(s.docs.len(), 9);
        assert_eq!(s.bulk_requests, 2, "only the throttled item is sent again");
        assert!(
            s.auth_seen.iter().all(|a| a == "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="),
            "{:?}",
            s.auth_seen
        );
    }
    let dead = dead_letters(dir.path(), "elasticsearch");
    assert_eq!(dead[0].entry.event_id.as_deref(), Some("evt-00000002"));
    assert!(
        dead[0].entry.reason.contains("mapper_parsing_exception"),
        "{}",
        dead[0].entry.reason
    );
    assert!(!dead[0].entry.reason.contains("changeme"));
    // Once the cause is fixed, `attackmesh dlq replay` hands the event back and it is delivered.
    es.lock().unwrap().fixed = true;
    let report =
        attackmesh_siem_export::dlq::replay(dir.path(), &["elasticsearch".to_owned()], Some("elasticsearch"), &[])
            .unwrap();
    assert_eq!(report.replayed.get("elasticsearch"), Some(&1));
    eventually(30, "replayed event delivered", || async {
        es.lock().unwrap().docs.contains_key("evt-00000002")
    })
    .await;
    eventually(5, "marked replayed", || async {
        dead_letters(dir.path(), "elasticsearch")[0].state == attackmesh_siem_export::dlq::ReplayState::Replayed
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_dead_elasticsearch_does_not_delay_the_file_sink() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // Nothing listens here.
    let unused = attackmesh_testkit::free_addr();
    c.elasticsearch.url = Some(format!("http://{unused}"));
    c.file.path = Some(dir.path().join("out.ndjson"));
    let h = Harness::start(&c).await;
    h.state
        .enqueue((0..50).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "file sink delivered", || async {
        h.sink("file").status().delivered == 50
    })
    .await;
    let es = h.sink("elasticsearch").status();
    assert_eq!((es.delivered, es.queue_depth, es.healthy), (0, 50, false));
    assert!(es.last_error.contains("connect"), "{}", es.last_error);
    h.shutdown().await;
}

#[tokio::test]
async fn an_outage_delays_delivery_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then leave it closed: Elasticsearch is down.
    let addr = attackmesh_testkit::free_addr();
    let mut c = es_config(dir.path(), addr);
    c.retry.max_backoff = std::time::Duration::from_millis(200);
    let h = Harness::start(&c).await;
    for b in 0..10u64 {
        h.state
            .enqueue((b * 100..b * 100 + 100).map(fixtures::event).collect(), HashMap::new())
            .await
            .unwrap();
    }
    // Wait for the sink's first failed attempt rather than a fixed time.
    eventually(30, "a failed delivery attempt", || async {
        !h.sink("elasticsearch").status().last_error.is_empty()
    })
    .await;
    let down = h.sink("elasticsearch").status();
    assert_eq!(
        (down.delivered, down.queue_depth, down.healthy),
        (0, 1000, false),
        "{down:?}"
    );
    assert!(down.oldest_age.as_ref().is_some_and(|a| a.nanos > 0 || a.seconds > 0));
    // Elasticsearch comes back on the same address.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (_, es) = double_on(listener, Es::default()).await;
    delivered(&h, 1000).await;
    assert_eq!(es.lock().unwrap().docs.len(), 1000);
    let up = h.sink("elasticsearch").status();
    assert!(
        up.healthy && up.last_error.is_empty() && up.dead_lettered == 0,
        "{up:?}"
    );
    eventually(5, "queue drained", || async {
        h.sink("elasticsearch").status().queue_depth == 0
    })
    .await;
    h.shutdown().await;
}
