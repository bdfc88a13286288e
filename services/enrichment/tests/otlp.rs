//! OpenTelemetry logs into enrichment over real gRPC (`LogsService/Export`) and OTLP/HTTP
//! (`POST /v1/logs`): records are attributed and exported durably before the answer, rejected
//! ones are reported in `partial_success`, tokens and roles are those of Ingest, and a Falco alert
//! from falcosidekick's OTLP output is attributed exactly as the same alert over `POST /falco`.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, io::Write as _};

use attackmesh::{
    formats::otlp::proto::{
        collector::{ExportLogsServiceRequest, ExportLogsServiceResponse, logs_service_client::LogsServiceClient},
        common::{AnyValue, InstrumentationScope, KeyValue, any_value::Value as V},
        logs::{LogRecord, ResourceLogs, ScopeLogs},
        resource::Resource,
    },
    proto::EnrichedEvent,
};
use attackmesh_enrichment::otlp::MAX_TRACE_BATCHES;
use attackmesh_testkit::{channel, wait_for_sink, wait_health, with_token};
use common::*;
use prost::Message as _;
use tonic_health::pb::health_check_response::ServingStatus;

fn s(text: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::StringValue(text.to_owned())),
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: s(value),
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap()).unwrap()
}

fn request(service: &str, scope: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "node-7")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: scope.to_owned(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A generic detection as an OTel-instrumented detector logs it.
fn generic(body: &str, trace: u8) -> LogRecord {
    LogRecord {
        time_unix_nano: now_nanos(),
        severity_number: 17,
        body: s(body),
        event_name: "auth.bruteforce".into(),
        attributes: vec![
            kv("security_rule.name", "SSH brute force"),
            kv(
                "security_rule.reference",
                "https://attack.mitre.org/techniques/T1110/001/",
            ),
            kv("source.address", "203.0.113.9"),
        ],
        trace_id: vec![trace; 16],
        span_id: vec![trace; 8],
        flags: 1,
        ..Default::default()
    }
}

/// A Falco alert as Falco's `http_output` posts it, and as falcosidekick's OTLP logs output
/// logs it (body = output; priority, source, rule, hostname, tags and timestamp attributes).
fn falco_alert(rule: &str) -> (String, LogRecord) {
    let now = chrono::Utc::now();
    let alert = serde_json::json!({
        "hostname": "node-7", "output": format!("{rule} (user=root)"), "priority": "Warning",
        "rule": rule, "source": "syscall", "tags": ["container", "mitre_execution", "T1059"],
        "time": now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "output_fields": {"proc.cmdline": "bash", "proc.name": "bash", "user.name": "root"},
    });
    let record = LogRecord {
        time_unix_nano: now_nanos(),
        observed_time_unix_nano: now_nanos(),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: s(alert["output"].as_str().unwrap()),
        attributes: vec![
            kv("priority", "Warning"),
            kv("source", "syscall"),
            kv("rule", rule),
            kv("hostname", "node-7"),
            kv("tags", "container,mitre_execution,T1059"),
            kv("timestamp", &now.format("%Y-%m-%d %H:%M:%S%.9f +0000 UTC").to_string()),
        ],
        ..Default::default()
    };
    (alert.to_string(), record)
}

fn attribution(e: &EnrichedEvent) -> serde_json::Value {
    let metadata = e.metadata.clone().unwrap_or_default();
    serde_json::json!({
        "technique_ids": e.technique_ids, "confidence": e.confidence_score, "status": e.attribution_status,
        "severity": e.severity, "event_type": e.event_type, "source_service": e.source_service,
        "description": e.description, "timestamp": e.timestamp.as_ref().map(|t| (t.seconds, t.nanos)),
        "techniques": metadata.techniques.iter().map(|t| (t.id.clone(), t.confidence, t.evidence.iter().map(|e| e.rule_id.clone()).collect::<Vec<_>>())).collect::<Vec<_>>(),
        "actors": metadata.threat_actors.iter().map(|a| (a.group_id.clone(), a.score)).collect::<Vec<_>>(),
        "attack_version": e.attack_version,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_export_is_durable_reports_rejections_and_matches_falco_http() {
    let cluster = Cluster::start().await;
    let mut client = LogsServiceClient::new(channel(cluster.enrichment.addr));

    let (alert_json, falco_record) = falco_alert("Terminal shell in container");
    let mut future = generic("from the future", 9);
    future.time_unix_nano = now_nanos() + 3 * 86_400 * 1_000_000_000;
    let mut bad_severity = generic("bad severity", 8);
    bad_severity.severity_number = 99;
    let records = vec![generic("ssh brute force", 1), future, generic("again", 2), bad_severity];
    let generic_request = request("authwatch", "authwatch", records);
    let falco_request = request("falco", "falco", vec![falco_record]);

    let answer = client
        .export(with_token(generic_request.clone(), DETECTOR_TOKEN))
        .await
        .unwrap()
        .into_inner();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2);
    assert!(
        partial
            .error_message
            .contains("first: resourceLogs[0].scopeLogs[0].logRecords[1]: timestamp"),
        "{}",
        partial.error_message
    );
    let answer = client
        .export(with_token(falco_request.clone(), DETECTOR_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);

    // Acknowledged means durable in export: the accepted records reach the sink, the
    // rejected ones never do.
    let mapped: Vec<_> = [&generic_request, &falco_request]
        .iter()
        .flat_map(|r| attackmesh::formats::otlp::otlp_from_request((*r).clone()))
        .filter_map(|r| r.result.ok())
        .map(|e| e.event)
        .collect();
    let future_id = mapped
        .iter()
        .find(|e| e.description == "from the future")
        .unwrap()
        .event_id
        .clone();
    let expected: BTreeSet<String> = mapped
        .iter()
        .map(|e| e.event_id.clone())
        .filter(|id| *id != future_id)
        .collect();
    assert_eq!(expected.len(), 3);
    let held = wait_for_sink(&cluster.sink(), &expected, |_| true).await;
    assert!(held.iter().all(|e| e.event_id != future_id));
    let brute = held.iter().find(|e| e.description == "ssh brute force").unwrap();
    assert_eq!(brute.event_type, "auth.bruteforce");
    assert_eq!(brute.original_format, "otlp");
    assert_eq!(brute.submitted_by, "det");
    assert!(
        brute.technique_ids.contains(&"T1110.001".to_owned()),
        "{:?}",
        brute.technique_ids
    );

    // The same alert over Falco's HTTP output is attributed the same way.
    let (status, _, body) = http_post(
        cluster.enrichment.http.unwrap(),
        "/falco",
        &[
            ("authorization", &format!("Bearer {DETECTOR_TOKEN}")),
            ("content-type", "application/json"),
        ],
        alert_json.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let over_http = attackmesh_enrichment::http::parse_body(&alert_json).unwrap().remove(0);
    let ids: BTreeSet<String> = expected.iter().cloned().chain([over_http.event_id.clone()]).collect();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let falco: Vec<&EnrichedEvent> = events.iter().filter(|e| e.original_format == "falco").collect();
    assert_eq!(falco.len(), 2);
    assert!(!falco[0].technique_ids.is_empty());
    assert_eq!(attribution(falco[0]), attribution(falco[1]));

    // Records of many traces travel as one batch, each keeping its ids as attributes.
    let many = request(
        "authwatch",
        "",
        (11..11 + MAX_TRACE_BATCHES as u8 + 2)
            .map(|t| generic(&format!("trace {t}"), t))
            .collect(),
    );
    let answer = client
        .export(with_token(many.clone(), DETECTOR_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);
    let ids = attackmesh::formats::otlp::otlp_from_request(many)
        .into_iter()
        .map(|r| r.result.unwrap().event.event_id)
        .collect();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let traced = events.iter().find(|e| e.description == "trace 12").unwrap();
    assert_eq!(traced.attributes["trace.id"], "0c".repeat(16));

    // Tokens and roles are those of Ingest.
    let refused = client.export(generic_request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = client
        .export(with_token(generic_request.clone(), ANALYST_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_takes_protobuf_json_and_gzip_and_retries_while_export_is_down() {
    let mut cluster = Cluster::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let http = cluster.enrichment.http.unwrap();
    let bearer = format!("Bearer {DETECTOR_TOKEN}");
    let proto = ("content-type", "application/x-protobuf");
    let json = ("content-type", "application/json");

    let first = request("authwatch", "", vec![generic("over protobuf", 3)]);
    let (status, headers, body) = http_post_bytes(
        http,
        "/v1/logs",
        &[("authorization", &bearer), proto, ("content-encoding", "gzip")],
        &gzip(&first.encode_to_vec()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(
        ExportLogsServiceResponse::decode(&body[..]).unwrap().partial_success,
        None
    );

    // OTLP/JSON: camelCase, hex ids, int64 as strings; one record's bad field is named.
    let time = now_nanos().to_string();
    let body = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "curl"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": time, "severityText": "WARN", "body": {"stringValue": "over json"},
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"},
            {"timeUnixNano": time, "traceId": 12}
        ]}]
    }]});
    let (status, headers, text) = http_post(
        http,
        "/v1/logs",
        &[("authorization", &bearer), json],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "application/json");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"]
            .to_string()
            .trim_matches('"'),
        "1"
    );
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("logRecords[1]: field `traceId`"), "{message}");
    let ids = [&first]
        .iter()
        .flat_map(|r| attackmesh::formats::otlp::otlp_from_request((*r).clone()))
        .chain(attackmesh::formats::otlp::otlp_from_json(&body.to_string()).unwrap())
        .filter_map(|r| r.result.ok())
        .map(|e| e.event.event_id)
        .collect();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let over_json = events.iter().find(|e| e.description == "over json").unwrap();
    assert_eq!(over_json.severity, attackmesh::proto::Severity::Medium as i32);

    // Refusals, each a Status in the request's encoding.
    let (status, _, _) = http_post(http, "/v1/logs", &[proto], &first.encode_to_vec()).await;
    assert_eq!(status, 401);
    let (status, _, _) = http_post(
        http,
        "/v1/logs",
        &[("authorization", &format!("Bearer {ANALYST_TOKEN}")), proto],
        &first.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, text) = http_post(
        http,
        "/v1/logs",
        &[("authorization", &bearer), ("content-type", "text/plain")],
        b"x",
    )
    .await;
    assert_eq!(status, 415, "{text}");
    let (status, _, text) = http_post(
        http,
        "/v1/logs",
        &[("authorization", &bearer), json],
        b"{\"resourceLogs\": 5}",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("resourceLogs"), "{text}");
    let bomb = gzip(&vec![b' '; 1024 * 1024]);
    let (status, _, _) = http_post(
        http,
        "/v1/logs",
        &[("authorization", &bearer), json, ("content-encoding", "gzip")],
        &bomb,
    )
    .await;
    assert_eq!(status, 413, "the inflated size counts");

    // Export down: nothing taken, a retryable answer with Retry-After (and UNAVAILABLE over gRPC).
    cluster.export.take().unwrap().kill();
    wait_health(cluster.enrichment.addr, ServingStatus::NotServing).await;
    let later = request("authwatch", "", vec![generic("while export is down", 4)]);
    let (status, headers, _) = http_post_bytes(
        http,
        "/v1/logs",
        &[("authorization", &bearer), proto],
        &later.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 503);
    assert!(headers["retry-after"].parse::<u64>().unwrap() >= 1);
    let mut client = LogsServiceClient::new(channel(cluster.enrichment.addr));
    let refused = client.export(with_token(later, DETECTOR_TOKEN)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
}
