//! No secret value — bearer tokens, the Elasticsearch password, the Splunk HEC token, a TAXII
//! push password, or a wrong token a client presented — appears in what `attackmesh serve all`
//! writes (stdout and stderr at `log_level: trace`), in `/metrics`, in gRPC or HTTP error
//! messages, or in the dead letters on disk, while every sink refuses its credentials.
//!
//! The sinks are fakes in this test that answer 401/403 the way Elasticsearch, Splunk and a
//! TAXII server do, and record the credentials they were sent (so the test knows the secrets
//! were really used). The finder is itself tested on deliberately leaky text.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use attackmesh::proto::{DetectionEvent, IngestRequest};
use axum::{Router, http::StatusCode, response::IntoResponse};
use base64::Engine as _;
use common::{Addrs, Serve, base_config, call, find_secrets, http_client, token};
use prost::Message;

const ES_USER: &str = "elastic-writer";
const ES_PASSWORD: &str = "es-pw-Q8v!rT2#zK9m";
const HEC_TOKEN: &str = "7c1e4b2a-9d3f-4e8b-a6c5-0f1e2d3c4b5a";
const TAXII_USER: &str = "partner-push";
const TAXII_PASSWORD: &str = "taxii-pw-Lm4&Xp7@Wq1";
const WRONG_TOKEN: &str = "wrong-token-presented-by-a-client-9f8e";

fn secrets() -> Vec<(&'static str, &'static str)> {
    let mut all = vec![
        ("elasticsearch password", ES_PASSWORD),
        ("splunk hec token", HEC_TOKEN),
        ("taxii push password", TAXII_PASSWORD),
        ("token a client got wrong", WRONG_TOKEN),
    ];
    for (name, _, value) in common::TOKENS {
        all.push((name, value));
    }
    all
}

#[test]
fn the_finder_catches_every_form_a_secret_takes() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaky = [
        format!("WARN sink failed password={ES_PASSWORD}"),
        format!(
            "request headers: authorization: Basic {}",
            b64.encode(format!("{ES_USER}:{ES_PASSWORD}"))
        ),
        format!("POST /services/collector/event Authorization: Splunk {HEC_TOKEN}"),
        format!("url=https://x/?p={}", "es-pw-Q8v%21rT2%23zK9m"),
        format!("{{\"password\":{}}}", serde_json::to_string(TAXII_PASSWORD).unwrap()),
        format!(
            "token digest input {}",
            HEC_TOKEN.bytes().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        format!("call refused for Bearer {}", token("edge-detector")),
    ];
    for text in &leaky {
        assert!(
            !find_secrets(text, &secrets(), &[ES_USER, TAXII_USER]).is_empty(),
            "missed a leak in: {text}"
        );
    }
    let clean = "INFO sink failed status=401 sink=elasticsearch user=elastic-writer password=<redacted>";
    assert!(find_secrets(clean, &secrets(), &[ES_USER, TAXII_USER]).is_empty());
}

/// What the fake sinks were sent.
#[derive(Default)]
struct Seen {
    es: Vec<String>,
    hec: Vec<String>,
    taxii: Vec<String>,
}

async fn fake_sinks(seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
    use axum::{extract::State, http::HeaderMap, routing::any};
    type S = Arc<Mutex<Seen>>;
    fn auth(headers: &HeaderMap) -> String {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
    async fn es(State(seen): State<S>, headers: HeaderMap) -> impl IntoResponse {
        seen.lock().unwrap().es.push(auth(&headers));
        let body = format!(
            r#"{{"error":{{"root_cause":[{{"type":"security_exception","reason":"unable to authenticate user [{ES_USER}] for REST request [/_bulk]"}}],"type":"security_exception","reason":"unable to authenticate user [{ES_USER}] for REST request [/_bulk]"}},"status":401}}"#
        );
        (StatusCode::UNAUTHORIZED, [("content-type", "application/json")], body)
    }
    async fn hec(State(seen): State<S>, headers: HeaderMap) -> impl IntoResponse {
        seen.lock().unwrap().hec.push(auth(&headers));
        (
            StatusCode::FORBIDDEN,
            [("content-type", "application/json")],
            r#"{"text":"Invalid token","code":4}"#,
        )
    }
    async fn taxii(State(seen): State<S>, headers: HeaderMap) -> impl IntoResponse {
        seen.lock().unwrap().taxii.push(auth(&headers));
        (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/taxii+json;version=2.1")],
            r#"{"title":"Unauthorized","http_status":"401"}"#,
        )
    }
    let app = Router::new()
        .route("/services/collector/{*rest}", any(hec))
        .route("/taxii/{*rest}", any(taxii))
        .fallback(es)
        .with_state(seen);
    let (listener, addr) = attackmesh_testkit::bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_logs_errors_metrics_or_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sinks = fake_sinks(seen.clone()).await;
    let addrs = Addrs::new();
    let password_file = dir.path().join("taxii.pw");
    std::fs::write(&password_file, format!("{TAXII_PASSWORD}\n")).unwrap();

    let mut config = base_config(dir.path(), &addrs);
    config["telemetry"]["log_level"] = "trace".into();
    config["siem_export"]["elasticsearch"] = serde_json::json!({
        "url": format!("http://{sinks}"),
        "username": ES_USER,
        "password": ES_PASSWORD,
    });
    config["siem_export"]["splunk_hec"] = serde_json::json!({
        "url": format!("http://{sinks}"),
        "token": HEC_TOKEN,
    });
    config["siem_export"]["retry"] = serde_json::json!({
        "initial_backoff": "50ms", "max_backoff": "200ms", "max_duration": "2s"
    });
    config["intel"]["collections"] = serde_json::json!([
        {"id": "shared", "title": "Shared", "read": ["*"], "write": ["*"]}
    ]);
    config["intel"]["default_collection"] = "shared".into();
    config["intel"]["push"] = serde_json::json!([{
        "name": "partner",
        "collection": "shared",
        "url": format!("http://{sinks}/taxii/api1/collections/partner/"),
        "username": TAXII_USER,
        "password_file": password_file,
        "interval": "200ms",
    }]);
    let serve = Serve::start(dir.path(), addrs, &config).await;
    let addrs = serve.addrs;
    let mut evidence = String::new();

    // Detections flow to every sink, which refuse the credentials.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let batch = IngestRequest {
        batch_id: 1,
        events: (0..5)
            .map(|i| DetectionEvent {
                event_id: format!("secret-test-{i}"),
                timestamp: Some(pbjson_types::Timestamp { seconds: now, nanos: 0 }),
                event_type: "test.secret".into(),
                source_service: "edge".into(),
                description: "ET SCAN Potential SSH Scan".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let detector = format!("Bearer {}", token("edge-detector"));
    let ingest = "/attackmesh.v1.IngestService/Ingest";
    let (code, message) = call(addrs.enrichment, ingest, Some(&detector), batch.encode_to_vec()).await;
    evidence.push_str(&format!("ingest: {code:?} {message}\n"));

    // An indicator shared by an analyst gives the TAXII push something to send.
    let share = attackmesh::proto::ShareIndicatorsRequest {
        indicators: vec![attackmesh::proto::Indicator {
            r#type: attackmesh::proto::IndicatorType::Ipv4 as i32,
            value: "203.0.113.9".into(),
        }],
        technique_ids: vec!["T1046".into()],
        description: "scanner".into(),
        confidence: 0.7,
        source_service: "soc".into(),
        ..Default::default()
    };
    let analyst = format!("Bearer {}", token("soc-analyst"));
    let (code, message) = call(
        addrs.intel,
        "/attackmesh.v1.IntelService/ShareIndicators",
        Some(&analyst),
        share.encode_to_vec(),
    )
    .await;
    evidence.push_str(&format!("share: {code:?} {message}\n"));

    // Wrong and misplaced credentials, over gRPC and HTTP: the answers must not echo them.
    for auth in [
        format!("Bearer {WRONG_TOKEN}"),
        format!("Basic {WRONG_TOKEN}"),
        WRONG_TOKEN.to_owned(),
    ] {
        let (code, message) = call(addrs.enrichment, ingest, Some(&auth), batch.encode_to_vec()).await;
        evidence.push_str(&format!("wrong token: {code:?} {message}\n"));
        let export = "/attackmesh.v1.ExportService/GetSinkStatus";
        let (code, message) = call(addrs.siem_export, export, Some(&auth), Vec::new()).await;
        evidence.push_str(&format!("wrong token: {code:?} {message}\n"));
    }
    let client = http_client();
    for auth in [format!("Bearer {WRONG_TOKEN}"), format!("Basic {WRONG_TOKEN}")] {
        for (method, url) in [
            ("POST", format!("http://{}/falco", addrs.falco)),
            ("GET", format!("http://{}/taxii2/", addrs.taxii)),
        ] {
            let request = if method == "POST" {
                client.post(&url).body("[]")
            } else {
                client.get(&url).header("accept", "application/taxii+json;version=2.1")
            };
            let response = request.header("authorization", &auth).send().await.unwrap();
            evidence.push_str(&format!(
                "{method} {url}: {} {}\n",
                response.status(),
                response.text().await.unwrap()
            ));
        }
    }
    // The detector's own token used where it is not allowed.
    let (code, message) = call(
        addrs.siem_export,
        "/attackmesh.v1.ExportService/Export",
        Some(&detector),
        Vec::new(),
    )
    .await;
    evidence.push_str(&format!("detector on Export: {code:?} {message}\n"));

    // Wait until every sink has been tried with its credentials, and a little longer for
    // retries, dead letters and their log lines.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = {
            let s = seen.lock().unwrap();
            !s.es.is_empty() && !s.hec.is_empty() && !s.taxii.is_empty()
        };
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sinks were never tried:\n{evidence}\n{}",
            serve
                .output()
                .lines()
                .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let s = seen.lock().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", b64.encode(format!("{ES_USER}:{ES_PASSWORD}")));
        assert!(s.es.contains(&basic), "elasticsearch got {:?}", s.es);
        assert!(s.hec.contains(&format!("Splunk {HEC_TOKEN}")), "hec got {:?}", s.hec);
        let basic = format!("Basic {}", b64.encode(format!("{TAXII_USER}:{TAXII_PASSWORD}")));
        assert!(s.taxii.contains(&basic), "taxii got {:?}", s.taxii);
    }

    let (code, message) = call(
        addrs.siem_export,
        "/attackmesh.v1.ExportService/GetSinkStatus",
        Some(&analyst),
        Vec::new(),
    )
    .await;
    evidence.push_str(&format!("sink status: {code:?} {message}\n"));
    let metrics = client
        .get(format!("http://{}/metrics", addrs.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("attackmesh_"), "metrics are served: {metrics}");
    evidence.push_str(&metrics);
    for entry in walk(&dir.path().join("export")) {
        if let Ok(bytes) = std::fs::read(&entry) {
            evidence.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    drop(serve);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "trace logging was on");
    let everything = format!("{log}\n{evidence}");

    let leaks = find_secrets(&everything, &secrets(), &[ES_USER, TAXII_USER]);
    assert!(
        leaks.is_empty(),
        "secrets leaked:\n{}",
        leaks
            .iter()
            .map(|l| format!("- {} ({}): …{}…", l.secret, l.form, l.context))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
