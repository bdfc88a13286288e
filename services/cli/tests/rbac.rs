//! Access control over real gRPC and HTTP against `attackmesh serve all`: every RPC of the
//! published schema × every role (and no or a wrong token) is checked against one expected
//! table. The RPC list comes from the compiled proto descriptor, so an RPC added to the schema
//! without a row here fails this test. Message size limits and per-detector rate limits are
//! checked on the same process.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use attackmesh::proto::{DetectionEvent, IngestRequest};
use common::{Addrs, Serve, base_config, call, http_client, token};
use prost::Message;
use tonic::Code;

/// Who may call what: (service, method, roles admitted). `*` admits any authenticated caller.
const TABLE: &[(&str, &str, &[&str])] = &[
    ("attackmesh.v1.IngestService", "Ingest", &["detector", "admin"]),
    ("attackmesh.v1.IngestService", "Enrich", &["analyst", "admin"]),
    ("attackmesh.v1.AttributionService", "Attribute", &["admin"]),
    ("attackmesh.v1.AttributionService", "MapPatterns", &["analyst", "admin"]),
    (
        "attackmesh.v1.AttributionService",
        "GetTechnique",
        &["analyst", "admin"],
    ),
    ("attackmesh.v1.AttributionService", "GetGroup", &["analyst", "admin"]),
    ("attackmesh.v1.AttributionService", "GetKnowledgeBaseInfo", &["*"]),
    ("attackmesh.v1.ExportService", "Export", &["admin"]),
    ("attackmesh.v1.ExportService", "GetSinkStatus", &["analyst", "admin"]),
    ("attackmesh.v1.IntelService", "ShareIndicators", &["analyst", "admin"]),
    ("attackmesh.v1.IntelService", "ListCollections", &["analyst", "admin"]),
    ("attackmesh.v1.IntelService", "ShareEvents", &["admin"]),
    ("attackmesh.v1.CorrelationService", "Observe", &["admin"]),
];

/// Callers tried on every RPC: (label, role, authorization header).
fn callers() -> Vec<(&'static str, Option<&'static str>, Option<String>)> {
    vec![
        ("no token", None, None),
        ("unknown token", None, Some("Bearer not-a-token-anyone-has".to_owned())),
        ("not bearer", None, Some(format!("Basic {}", token("ops-admin")))),
        (
            "detector",
            Some("detector"),
            Some(format!("Bearer {}", token("edge-detector"))),
        ),
        (
            "analyst",
            Some("analyst"),
            Some(format!("Bearer {}", token("soc-analyst"))),
        ),
        ("admin", Some("admin"), Some(format!("Bearer {}", token("ops-admin")))),
    ]
}

/// Every RPC of the `attackmesh.v1` services, read from the descriptor the binary serves.
fn schema_rpcs() -> BTreeSet<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(attackmesh::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = BTreeSet::new();
    for file in set.file {
        let package = file.package().to_owned();
        for service in file.service {
            let name = format!("{package}.{}", service.name());
            for method in &service.method {
                rpcs.insert((name.clone(), method.name().to_owned()));
            }
        }
    }
    rpcs
}

#[test]
fn the_table_names_every_rpc_of_the_schema_and_nothing_else() {
    let schema = schema_rpcs();
    let table: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(s, m, _)| ((*s).to_owned(), (*m).to_owned()))
        .collect();
    let missing: Vec<_> = schema.difference(&table).collect();
    assert!(missing.is_empty(), "RPCs without an RBAC row in this test: {missing:?}");
    let stale: Vec<_> = table.difference(&schema).collect();
    assert!(stale.is_empty(), "rows for RPCs that are not in the schema: {stale:?}");
    assert!(schema.len() >= 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_admits_exactly_the_roles_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = Addrs::new();
    let mut config = base_config(dir.path(), &addrs);
    config["enrichment"]["ingest"] = serde_json::json!({"max_message_bytes": 256 * 1024});
    config["enrichment"]["max_body_bytes"] = serde_json::json!(64 * 1024);
    config["enrichment"]["rate_limits"] = serde_json::json!({
        "detectors": {"slow-detector": {"events_per_second": 1.0, "burst": 2.0}}
    });
    config["intel"]["max_body_bytes"] = serde_json::json!(64 * 1024);
    config["intel"]["collections"] = serde_json::json!([
        {"id": "rbac-test", "title": "RBAC test", "read": ["*"], "write": ["*"]}
    ]);
    let serve = Serve::start(dir.path(), addrs, &config).await;
    let addrs = serve.addrs;

    let mut failures = Vec::new();
    let mut checked = 0;
    for (service, method) in schema_rpcs() {
        let row = TABLE.iter().find(|(s, m, _)| *s == service && *m == method).unwrap();
        let addr = addrs
            .grpc_for(&service)
            .unwrap_or_else(|| panic!("no listener known for {service}: add it to Addrs::grpc_for"));
        let path = format!("/{service}/{method}");
        for (label, role, authorization) in callers() {
            let (code, message) = call(addr, &path, authorization.as_deref(), Vec::new()).await;
            let admitted = role.is_some_and(|r| row.2.contains(&r) || row.2.contains(&"*"));
            let ok = match (role, admitted) {
                (None, _) => code == Code::Unauthenticated,
                (Some(_), false) => code == Code::PermissionDenied,
                (Some(_), true) => !matches!(
                    code,
                    Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented
                ),
            };
            checked += 1;
            if !ok {
                failures.push(format!("{path} as {label}: {code:?} {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "RBAC mismatches:\n{}", failures.join("\n"));
    assert_eq!(checked, TABLE.len() * callers().len());

    // Health is open to probes without a token; reflection needs a token of any role.
    for addr in [addrs.attribution, addrs.enrichment, addrs.siem_export, addrs.intel] {
        let (code, _) = call(addr, "/grpc.health.v1.Health/Check", None, Vec::new()).await;
        assert_eq!(code, Code::Ok, "health on {addr}");
        let reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert_eq!(call(addr, reflect, None, Vec::new()).await.0, Code::Unauthenticated);
        let analyst = format!("Bearer {}", token("soc-analyst"));
        let (code, _) = call(addr, reflect, Some(&analyst), Vec::new()).await;
        assert!(
            !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
            "reflection: {code:?}"
        );
        // An unknown method is admin-only, and then unimplemented.
        let unknown = "/attackmesh.v1.IngestService/DropEverything";
        assert_eq!(
            call(addr, unknown, Some(&analyst), Vec::new()).await.0,
            Code::PermissionDenied
        );
    }

    http_endpoints_follow_the_same_roles(&addrs).await;
    oversized_messages_are_refused(&addrs).await;
    detector_rate_limits_answer_retry(&addrs).await;
    drop(serve);
}

async fn http_endpoints_follow_the_same_roles(addrs: &Addrs) {
    let client = http_client();
    let bearer = |name: &str| format!("Bearer {}", token(name));
    let falco = format!("http://{}/falco", addrs.falco);
    let taxii = format!("http://{}/taxii2/", addrs.taxii);
    // POST /falco: detectors and admins; an empty alert list passes auth and is then a 400.
    for (auth, want) in [
        (None, 401),
        (Some("Bearer nope".to_owned()), 401),
        (Some(bearer("soc-analyst")), 403),
        (Some(bearer("edge-detector")), 400),
        (Some(bearer("ops-admin")), 400),
    ] {
        let mut request = client
            .post(&falco)
            .header("content-type", "application/json")
            .body("[]");
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert_eq!(status, want, "POST /falco with {auth:?}");
    }
    // TAXII discovery: analysts and admins.
    for (auth, want) in [
        (None, 401),
        (Some(bearer("edge-detector")), 403),
        (Some(bearer("soc-analyst")), 200),
        (Some(bearer("ops-admin")), 200),
    ] {
        let mut request = client
            .get(&taxii)
            .header("accept", "application/taxii+json;version=2.1");
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert_eq!(status, want, "GET /taxii2/ with {auth:?}");
    }
}

async fn oversized_messages_are_refused(addrs: &Addrs) {
    // gRPC: a 400 KiB Ingest message against a 256 KiB limit.
    let event = DetectionEvent {
        event_id: "oversized-1".into(),
        description: "x".repeat(4000),
        original: "y".repeat(60_000),
        ..Default::default()
    };
    let request = IngestRequest {
        batch_id: 1,
        events: vec![event; 7],
        ..Default::default()
    };
    let body = request.encode_to_vec();
    assert!(body.len() > 400 * 1024);
    let detector = format!("Bearer {}", token("edge-detector"));
    let (code, message) = call(
        addrs.enrichment,
        "/attackmesh.v1.IngestService/Ingest",
        Some(&detector),
        body,
    )
    .await;
    assert!(
        matches!(code, Code::OutOfRange | Code::ResourceExhausted),
        "oversized Ingest message: {code:?} {message}"
    );

    // HTTP: bodies over max_body_bytes are 413, declared or streamed.
    let client = http_client();
    let big = "z".repeat(100 * 1024);
    let falco = client
        .post(format!("http://{}/falco", addrs.falco))
        .header("authorization", &detector)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(falco.status().as_u16(), 413);
    let chunks = futures_body(big.clone());
    let falco = client
        .post(format!("http://{}/falco", addrs.falco))
        .header("authorization", &detector)
        .header("content-type", "application/json")
        .body(chunks)
        .send()
        .await;
    // The server answers 413 as soon as the limit is crossed and closes the connection; a client
    // still sending its chunks may see that close before it reads the answer.
    match falco {
        Ok(response) => assert_eq!(response.status().as_u16(), 413, "streamed body without a length"),
        Err(e) => assert!(e.is_request(), "streamed body without a length: {e}"),
    }
    let taxii = client
        .post(format!("http://{}/intel/collections/rbac-test/objects/", addrs.taxii))
        .header("authorization", format!("Bearer {}", token("ops-admin")))
        .header("accept", "application/taxii+json;version=2.1")
        .header("content-type", "application/taxii+json;version=2.1")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(taxii.status().as_u16(), 413, "TAXII POST over the limit");
}

fn futures_body(text: String) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text.into_bytes().chunks(8192).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(tokio_stream::iter(chunks))
}

async fn detector_rate_limits_answer_retry(addrs: &Addrs) {
    use attackmesh::proto::{AckStatus, IngestResponse};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let batch = |id: u64| IngestRequest {
        batch_id: id,
        events: (0..20)
            .map(|i| DetectionEvent {
                event_id: format!("rate-{id}-{i}"),
                timestamp: Some(pbjson_types::Timestamp { seconds: now, nanos: 0 }),
                event_type: "test.rate".into(),
                source_service: "slow".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let slow = format!("Bearer {}", token("slow-detector"));
    let mut statuses = Vec::new();
    for id in 1..=3 {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", addrs.enrichment))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(tokio_stream::iter(vec![batch(id).encode_to_vec()]));
        request.metadata_mut().insert("authorization", slow.parse().unwrap());
        let path = http::uri::PathAndQuery::from_static("/attackmesh.v1.IngestService/Ingest");
        let mut stream = grpc
            .streaming(request, path, common::RawCodec)
            .await
            .unwrap()
            .into_inner();
        let answer = IngestResponse::decode(stream.message().await.unwrap().unwrap().as_slice()).unwrap();
        statuses.push((answer.status, answer.retry_after.is_some()));
    }
    assert!(
        statuses
            .iter()
            .any(|(status, after)| *status == AckStatus::Retry as i32 && *after),
        "a detector over its rate is told to retry later: {statuses:?}"
    );
}
