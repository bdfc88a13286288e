//! The Splunk HEC sink against a receiver that answers as Splunk documents it (HEC_FORMAT):
//! `Authorization: Splunk <token>` (401 code 2 without a token, 401 code 3 for a malformed
//! header, 403 code 4 for an unknown token), concatenated JSON objects (not an array),
//! `invalid-event-number` on 400 code 6 with the events before it indexed, 503 code 9 when busy,
//! indexer acknowledgement on a channel (`/services/collector/ack`), and 400 code 14 when the
//! token has acknowledgement disabled.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use attackmesh_runtime::secret::Secret;
use attackmesh_testkit::fixtures;
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};

use common::{Harness, config, dead_letters, eventually};

#[derive(Default)]
struct Hec {
    /// token → whether indexer acknowledgement is enabled for it.
    tokens: HashMap<String, bool>,
    /// Answer 503 code 9 to this many event requests first.
    busy: usize,
    indexed: Vec<Value>,
    requests: usize,
    largest_body: usize,
    next_ack: u64,
    /// ackId → polls left before it reads true.
    acks: HashMap<u64, u32>,
    ack_polls: usize,
    channels: HashSet<String>,
}

type Shared = Arc<Mutex<Hec>>;

fn answer(status: u16, body: Value) -> (StatusCode, Json<Value>) {
    (StatusCode::from_u16(status).unwrap(), Json(body))
}

/// Splunk's token check: the token, or the answer to give.
fn token(hec: &Hec, headers: &HeaderMap) -> Result<String, (StatusCode, Json<Value>)> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(answer(401, json!({"text": "Token is required", "code": 2})));
    };
    let Some(token) = value.strip_prefix("Splunk ") else {
        return Err(answer(401, json!({"text": "Invalid authorization", "code": 3})));
    };
    if !hec.tokens.contains_key(token) {
        return Err(answer(403, json!({"text": "Invalid token", "code": 4})));
    }
    Ok(token.to_owned())
}

async fn event(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, Json<Value>) {
    let mut hec = s.lock().unwrap();
    hec.requests += 1;
    hec.largest_body = hec.largest_body.max(body.len());
    let token = match token(&hec, &headers) {
        Ok(t) => t,
        Err(a) => return a,
    };
    if hec.busy > 0 {
        hec.busy -= 1;
        return answer(503, json!({"text": "Server is busy", "code": 9}));
    }
    let ack = hec.tokens[&token];
    let channel = headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if ack && channel.is_none() {
        return answer(400, json!({"text": "Data channel is missing", "code": 10}));
    }
    if body.is_empty() {
        return answer(400, json!({"text": "No data", "code": 5}));
    }
    // Concatenated objects; events before a bad one are indexed, as Splunk does.
    for (i, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        let Ok(obj) = item else {
            return answer(
                400,
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}),
            );
        };
        match obj.get("event") {
            None => {
                return answer(
                    400,
                    json!({"text": "Event field is required", "code": 12, "invalid-event-number": i}),
                );
            }
            Some(Value::String(s)) if s.is_empty() => {
                return answer(
                    400,
                    json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": i}),
                );
            }
            // The fault this double injects: a `time` Splunk cannot read.
            Some(e) if e["description"] == "POISON" || !obj["time"].is_number() => {
                return answer(
                    400,
                    json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}),
                );
            }
            Some(_) => hec.indexed.push(obj),
        }
    }
    if ack {
        hec.channels.insert(channel.unwrap_or_default());
        let id = hec.next_ack;
        hec.next_ack += 1;
        hec.acks.insert(id, 1);
        return answer(200, json!({"text": "Success", "code": 0, "ackId": id}));
    }
    answer(200, json!({"text": "Success", "code": 0}))
}

async fn ack(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut hec = s.lock().unwrap();
    let token = match token(&hec, &headers) {
        Ok(t) => t,
        Err(a) => return a,
    };
    if !hec.tokens[&token] {
        return answer(400, json!({"text": "ACK is disabled", "code": 14}));
    }
    if headers.get("x-splunk-request-channel").is_none() {
        return answer(400, json!({"text": "Data channel is missing", "code": 10}));
    }
    hec.ack_polls += 1;
    let mut out = serde_json::Map::new();
    for id in body["acks"].as_array().cloned().unwrap_or_default() {
        let id = id.as_u64().unwrap_or(u64::MAX);
        let done = match hec.acks.get_mut(&id) {
            Some(0) => true,
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        };
        out.insert(id.to_string(), Value::Bool(done));
    }
    answer(200, json!({"acks": out}))
}

async fn receiver(hec: Hec) -> (SocketAddr, Shared) {
    let shared = Arc::new(Mutex::new(hec));
    let app = Router::new()
        .route("/services/collector/event", post(event))
        .route("/services/collector/ack", post(ack))
        .with_state(shared.clone());
    let (listener, addr) = attackmesh_testkit::bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

fn hec_config(dir: &std::path::Path, addr: SocketAddr, token: &str) -> attackmesh_siem_export::SiemExportConfig {
    let mut c = config(dir);
    c.splunk_hec.url = Some(format!("http://{addr}"));
    c.splunk_hec.token = Some(Secret::new(token));
    c.splunk_hec.index = Some("security".into());
    c.splunk_hec.ack_poll_interval = std::time::Duration::from_millis(20);
    c
}

fn tokens(list: &[(&str, bool)]) -> HashMap<String, bool> {
    list.iter().map(|(t, a)| (t.to_string(), *a)).collect()
}

fn indexed_ids(s: &Shared) -> Vec<String> {
    s.lock()
        .unwrap()
        .indexed
        .iter()
        .map(|o| o["event"]["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn batches_are_concatenated_objects_under_the_byte_cap() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("good", false)]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = hec_config(dir.path(), addr, "good");
    c.splunk_hec.max_request_bytes = 16 * 1024;
    let h = Harness::start(&c).await;
    let events: Vec<_> = (0..60).map(fixtures::event).collect();
    h.state.enqueue(events, HashMap::new()).await.unwrap();
    eventually(30, "60 events delivered", || async {
        h.sink("splunk_hec").status().delivered == 60
    })
    .await;
    assert_eq!(indexed_ids(&hec).len(), 60);
    {
        let s = hec.lock().unwrap();
        assert!(s.requests > 1, "60 events of ~3 KiB need several requests");
        assert!(
            s.largest_body <= 16 * 1024,
            "a request of {} bytes exceeds the cap",
            s.largest_body
        );
        let first = &s.indexed[0];
        assert_eq!(first["index"], "security");
        assert_eq!(first["sourcetype"], "attackmesh:alert");
        assert_eq!(first["host"], "suricata-edge-01");
        assert!(first["time"].as_f64().unwrap() > 1.7e9);
        let e = &first["event"];
        assert_eq!(
            e["mitre_attack"]["technique_ids"],
            json!(["T1110.001", "T1110", "T1046"])
        );
        assert_eq!(e["mitre_attack"]["techniques"][0]["tactics"][0]["id"], "TA0006");
        assert_eq!(e["mitre_attack"]["threat_actors"][0]["group_id"], "G0016");
        assert_eq!(e["annotations"]["mitre_attack"]["mitre_technique_id"][0], "T1110.001");
        assert_eq!(
            (e["src"].as_str(), e["dest_port"].as_u64(), e["user"].as_str()),
            (Some("203.0.113.7"), Some(22), Some("root"))
        );
        assert_eq!(e["severity"], "high");
        assert_eq!(
            (e["source_service"].as_str(), e["submitted_by"].as_str()),
            (Some("suricata-edge-01"), Some("suricata-edge")),
            "the claimed source and the token that sent it"
        );
        assert_eq!(
            first["fields"]["mitre_technique_id"],
            json!(["T1110.001", "T1110", "T1046"])
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_dead_letters_with_the_reason_and_never_leaks_the_token() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("good", false)]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&hec_config(dir.path(), addr, "s3cret-wrong-token")).await;
    h.state
        .enqueue((0..5).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "5 dead letters", || async {
        h.sink("splunk_hec").status().dead_lettered == 5
    })
    .await;
    let dead = dead_letters(dir.path(), "splunk_hec");
    assert!(
        dead[0].entry.reason.contains("403") && dead[0].entry.reason.contains("code 4"),
        "{}",
        dead[0].entry.reason
    );
    assert_eq!(dead[0].entry.event_id.as_deref(), Some("evt-00000000"));
    let status = h.sink("splunk_hec").status();
    assert_eq!((status.delivered, status.dead_lettered, status.healthy), (0, 5, false));
    assert!(status.last_error.contains("Invalid token"), "{}", status.last_error);
    for text in [
        status.last_error.clone(),
        format!("{:?}", hec_config(dir.path(), addr, "s3cret-wrong-token")),
    ] {
        assert!(!text.contains("s3cret"), "secret leaked: {text}");
    }
    assert!(hec.lock().unwrap().indexed.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn a_busy_collector_is_retried_until_it_takes_the_events() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("good", false)]),
        busy: 3,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&hec_config(dir.path(), addr, "good")).await;
    h.state
        .enqueue((0..10).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "10 events delivered after code 9", || async {
        h.sink("splunk_hec").status().delivered == 10
    })
    .await;
    assert_eq!(indexed_ids(&hec).len(), 10);
    let status = h.sink("splunk_hec").status();
    assert!(status.retried >= 30, "three busy answers for 10 events: {status:?}");
    assert!(status.healthy && status.dead_lettered == 0, "{status:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn an_invalid_event_is_split_out_and_dead_lettered_the_rest_delivered() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("good", false)]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&hec_config(dir.path(), addr, "good")).await;
    let mut events: Vec<_> = (0..10).map(fixtures::event).collect();
    events[4].description = "POISON".into();
    h.state.enqueue(events, HashMap::new()).await.unwrap();
    eventually(30, "9 delivered + 1 dead", || async {
        let s = h.sink("splunk_hec").status();
        s.delivered == 9 && s.dead_lettered == 1
    })
    .await;
    let ids = indexed_ids(&hec);
    assert!(!ids.contains(&"evt-00000004".to_owned()));
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        9,
        "nothing indexed twice: {ids:?}"
    );
    let dead = &dead_letters(dir.path(), "splunk_hec")[0].entry;
    assert_eq!(dead.event_id.as_deref(), Some("evt-00000004"));
    assert!(dead.reason.contains("code 6"), "{}", dead.reason);
    h.shutdown().await;
}

#[tokio::test]
async fn indexer_acknowledgement_is_polled_on_the_channel_before_delivery_counts() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("acked", true)]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = hec_config(dir.path(), addr, "acked");
    c.splunk_hec.ack = true;
    let h = Harness::start(&c).await;
    h.state
        .enqueue((0..20).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "20 delivered", || async {
        h.sink("splunk_hec").status().delivered == 20
    })
    .await;
    {
        let s = hec.lock().unwrap();
        assert_eq!(s.indexed.len(), 20);
        assert!(s.ack_polls >= 2, "each ackId needs two polls here: {}", s.ack_polls);
        assert_eq!(s.channels.len(), 1, "one channel per sink");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_token_without_acknowledgement_falls_back_cleanly() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("plain", false)]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = hec_config(dir.path(), addr, "plain");
    c.splunk_hec.ack = true;
    let h = Harness::start(&c).await;
    h.state
        .enqueue((0..5).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "5 delivered without ack", || async {
        h.sink("splunk_hec").status().delivered == 5
    })
    .await;
    assert_eq!(indexed_ids(&hec).len(), 5);
    assert!(dead_letters(dir.path(), "splunk_hec").is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_malformed_authorization_header_is_what_the_receiver_refuses() {
    // The double itself must answer as Splunk does, or the tests above prove nothing.
    let (addr, _hec) = receiver(Hec {
        tokens: tokens(&[("good", false)]),
        ..Default::default()
    })
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/services/collector/event");
    let r = client.post(&url).body("{\"event\":1}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 2);
    let r = client
        .post(&url)
        .header("authorization", "Bearer good")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 3);
    let r = client
        .post(&url)
        .header("authorization", "Splunk good")
        .body("{\"time\":1}{\"time\":2,\"event\":1}")
        .send()
        .await
        .unwrap();
    let v = r.json::<Value>().await.unwrap();
    assert_eq!(
        (v["code"].as_u64(), v["invalid-event-number"].as_u64()),
        (Some(12), Some(0))
    );
}

#[tokio::test]
async fn a_rotated_token_file_is_used_without_a_restart() {
    let (addr, hec) = receiver(Hec {
        tokens: tokens(&[("token-before", false)]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("hec-token");
    std::fs::write(&token_file, "token-before\n").unwrap();
    let mut c = hec_config(dir.path(), addr, "unused");
    c.splunk_hec.token = None;
    c.splunk_hec.token_file = Some(token_file.clone());
    c.validate().unwrap();
    let h = Harness::start(&c).await;
    h.state
        .enqueue((0..5).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "5 events delivered", || async {
        h.sink("splunk_hec").status().delivered == 5
    })
    .await;

    // Rotation as an operator does it: the Secret's file changes, then the old token is revoked.
    let staged = dir.path().join(".hec-token.new");
    std::fs::write(&staged, "token-after\n").unwrap();
    std::fs::rename(&staged, &token_file).unwrap();
    hec.lock().unwrap().tokens = tokens(&[("token-after", false)]);
    h.state
        .enqueue((5..10).map(fixtures::event).collect(), HashMap::new())
        .await
        .unwrap();
    eventually(30, "10 events delivered", || async {
        h.sink("splunk_hec").status().delivered == 10
    })
    .await;
    assert_eq!(h.sink("splunk_hec").status().dead_lettered, 0);
    assert_eq!(indexed_ids(&hec).len(), 10);
    h.shutdown().await;
}
