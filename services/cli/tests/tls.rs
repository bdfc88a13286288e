//! attackmesh under mutual TLS with certificates made for the test, run as `attackmesh serve all`
//! and as one `attackmesh serve <service>` process per service (each with a certificate of its
//! own): every gRPC listener, the Falco input, TAXII and `/metrics` speak TLS and want a client
//! certificate from the client CA, and every internal link — enrichment to attribution and
//! export, the intel sink to intel, intel to attribution — presents its process's certificate,
//! so a detector's event arrives attributed in the file sink and at intel, and a manual share
//! is attributed by the remote attribution service.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use attackmesh::proto::{
    AckStatus, AttributionStatus, DetectionEvent, EnrichedEvent, GetSinkStatusRequest, Indicator, IndicatorType,
    IngestRequest, ShareIndicatorsRequest, export_service_client::ExportServiceClient,
    ingest_service_client::IngestServiceClient, intel_service_client::IntelServiceClient,
};
use attackmesh_testkit::pki::{Pki, client_config};
use common::{Addrs, Serve, base_config, token};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A rule only the attribution service of these tests knows (its `rules_dir`), so a share
/// attributed to [`REMOTE_TECHNIQUE`] was attributed by that service, not by an embedded engine.
const REMOTE_PACK: &str = r#"
pack: remote-only
version: 1.0.0
description: Known to the attribution service of the TLS tests only
rules:
  - id: share-marker
    description: The marker of the TLS tests' manual share
    event_type: [intel.share]
    when:
      - { field: description, contains: [remote-attribution-marker] }
    confidence: 0.9
    techniques: [T1486]
"#;
/// The technique of [`REMOTE_PACK`].
const REMOTE_TECHNIQUE: &str = "T1486";

fn https_client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let config = client_config(ca, identity);
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A mesh CA, the config every process reads, and the detector's client TLS.
struct Mesh {
    pki: Pki,
    addrs: Addrs,
    config: Value,
    client_cert: String,
    client_key: String,
}

impl Mesh {
    /// Mutual TLS with one server certificate, the test's rule pack on attribution, the intel
    /// sink pointed at intel and intel's attribution at the attribution service (both written
    /// `http://`: TLS comes from the CA).
    fn new(dir: &Path) -> Self {
        let pki = Pki::new("attackmesh test ca");
        let (server_cert, server_key) = pki.leaf("attackmesh");
        let (client_cert, client_key) = pki.leaf("edge-detector");
        let addrs = Addrs::new();
        let mut config = base_config(dir, &addrs);
        let ca = write(dir, "ca.pem", &pki.ca_pem);
        config["tls"] = serde_json::json!({
            "cert_file": write(dir, "server.pem", &server_cert),
            "key_file": write(dir, "server.key", &server_key),
            "client_ca_file": ca,
            "ca_file": ca,
            "server_name": "localhost",
        });
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        write(&rules, "remote-only.yaml", REMOTE_PACK);
        config["attribution"] = serde_json::json!({"rules_dir": rules});
        config["siem_export"]["intel"] = serde_json::json!({"endpoints": [format!("http://{}", addrs.intel)]});
        config["intel"]["attribution"] = serde_json::json!({"endpoints": [format!("http://{}", addrs.attribution)]});
        Self {
            pki,
            addrs,
            config,
            client_cert,
            client_key,
        }
    }

    /// Client TLS presenting the detector's certificate.
    fn grpc_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.pki.ca_pem))
            .domain_name("localhost")
            .identity(Identity::from_pem(&self.client_cert, &self.client_key))
    }

    async fn channel(&self, addr: std::net::SocketAddr) -> Channel {
        Channel::from_shared(format!("https://localhost:{}", addr.port()))
            .unwrap()
            .tls_config(self.grpc_tls())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

fn authed<T>(message: T, caller: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", token(caller)).parse().unwrap());
    request
}

/// Polls `check` until it answers `Some`, for at most a minute.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, serve: &Serve, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{}", serve.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every internal link works: a detector's batch goes enrichment → attribution → export over
/// TLS, comes back durable, lands attributed (not DEGRADED) in the file sink and reaches intel
/// through the intel sink; a manual share without technique ids is attributed by the remote
/// attribution service.
async fn every_internal_link_works(mesh: &Mesh, serve: &Serve, dir: &Path, event_id: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let batch = IngestRequest {
        batch_id: 7,
        events: vec![DetectionEvent {
            event_id: event_id.into(),
            timestamp: Some(pbjson_types::Timestamp { seconds: now, nanos: 0 }),
            event_type: "suricata.alert".into(),
            source_service: "edge".into(),
            description: "ET SCAN Potential SSH Scan".into(),
            attributes: BTreeMap::from([("alert.signature".to_owned(), "ET SCAN Potential SSH Scan".to_owned())]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let request = authed(tokio_stream::iter([batch]), "edge-detector");
    let mut answers = IngestServiceClient::new(mesh.channel(serve.addrs.enrichment).await)
        .ingest(request)
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    assert_eq!(
        answer.status,
        AckStatus::Durable as i32,
        "{answer:?}\n{}",
        serve.output()
    );

    let sink = dir.join("out/events.ndjson");
    let delivered: EnrichedEvent = eventually("the event in the file sink", serve, || {
        let text = std::fs::read_to_string(&sink).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| attackmesh::json::from_json::<EnrichedEvent>(l).ok())
            .find(|e| e.event_id == event_id);
        async move { found }
    })
    .await;
    assert_eq!(
        delivered.attribution_status,
        AttributionStatus::Ok as i32,
        "attributed by the attribution service, not DEGRADED: {delivered:?}"
    );
    assert!(
        delivered.technique_ids.iter().any(|t| t.starts_with("T1046")),
        "{:?}",
        delivered.technique_ids
    );

    let export = mesh.channel(serve.addrs.siem_export).await;
    eventually("the event delivered to intel", serve, || {
        let mut client = ExportServiceClient::new(export.clone());
        async move {
            let sinks = client
                .get_sink_status(authed(GetSinkStatusRequest {}, "ops-admin"))
                .await
                .ok()?
                .into_inner()
                .sinks;
            sinks.iter().find(|s| s.name == "intel" && s.delivered >= 1).map(|_| ())
        }
    })
    .await;

    let share = ShareIndicatorsRequest {
        indicators: vec![Indicator {
            r#type: IndicatorType::Ipv4 as i32,
            value: "203.0.113.77".into(),
        }],
        description: "remote-attribution-marker seen by the SOC".into(),
        confidence: 0.9,
        source_service: "soc".into(),
        ..Default::default()
    };
    let shared = IntelServiceClient::new(mesh.channel(serve.addrs.intel).await)
        .share_indicators(authed(share, "ops-admin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        shared.attribution_status,
        AttributionStatus::Ok as i32,
        "intel reached the attribution service: {shared:?}\n{}",
        serve.output()
    );
    assert!(
        shared.technique_ids.iter().any(|t| t == REMOTE_TECHNIQUE),
        "the technique came from the attribution service's own rule: {:?}",
        shared.technique_ids
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_and_internal_link_of_serve_all_speaks_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = Mesh::new(dir.path());
    let addrs = mesh.addrs;
    let serve = Serve::start_with(dir.path(), addrs, &mesh.config, Some(mesh.grpc_tls())).await;
    let addrs = serve.addrs;

    every_internal_link_works(&mesh, &serve, dir.path(), "tls-1").await;

    // gRPC without a client certificate, or in plaintext, gets nowhere.
    for (url, tls) in [
        (
            format!("https://localhost:{}", addrs.attribution.port()),
            Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&mesh.pki.ca_pem))
                    .domain_name("localhost"),
            ),
        ),
        (format!("http://{}", addrs.attribution), None),
    ] {
        let mut endpoint = Channel::from_shared(url.clone())
            .unwrap()
            .timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let refused = match endpoint.connect().await {
            Err(_) => true,
            Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                .await
                .is_err(),
        };
        assert!(refused, "{url} answered without a client certificate");
    }

    // The HTTP listeners: with a client certificate they answer, without one they do not.
    let good = https_client(&mesh.pki.ca_pem, Some((&mesh.client_cert, &mesh.client_key)));
    let anonymous = https_client(&mesh.pki.ca_pem, None);
    let falco_alert = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/falco/events.ndjson"
    ))
    .unwrap()
    .lines()
    .next()
    .unwrap()
    .to_owned();
    let falco = format!("https://localhost:{}/falco", addrs.falco.port());
    let response = good
        .post(&falco)
        .header("authorization", format!("Bearer {}", token("edge-detector")))
        .header("content-type", "application/json")
        .body(falco_alert.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap());
    let taxii = format!("https://localhost:{}/taxii2/", addrs.taxii.port());
    let response = good
        .get(&taxii)
        .header("authorization", format!("Bearer {}", token("soc-analyst")))
        .header("accept", "application/taxii+json;version=2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let metrics = format!("https://localhost:{}/metrics", addrs.metrics.port());
    let text = good.get(&metrics).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("attackmesh_"), "{text}");

    let plain = common::http_client();
    for url in [&falco, &taxii, &metrics] {
        assert!(
            anonymous.get(url).send().await.is_err(),
            "{url} served without a client certificate"
        );
        let plaintext = url.replace("https://localhost", "http://127.0.0.1");
        assert!(
            plain.get(&plaintext).send().await.is_err(),
            "{plaintext} served in plaintext"
        );
    }
    drop(serve);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_internal_link_between_separate_serve_processes_speaks_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(dir.path());
    // Each process has its own certificate, and the links their token file (no run token
    // outside `serve all`); one metrics listener per process would collide, so none.
    let token_file = write(dir.path(), "internal.token", &format!("{}\n", token("ops-admin")));
    let config = &mut mesh.config;
    config["listen"].as_object_mut().unwrap().remove("metrics");
    config["enrichment"]["attribution"] = serde_json::json!({"token_file": token_file});
    config["enrichment"]["export"] = serde_json::json!({"token_file": token_file});
    config["siem_export"]["intel"]["token_file"] = serde_json::json!(token_file);
    config["intel"]["attribution"]["token_file"] = serde_json::json!(token_file);
    config["correlation"]["enrichment"] = serde_json::json!({"token_file": token_file});
    let certs: HashMap<&str, (PathBuf, PathBuf)> = ["attribution", "enrichment", "siem-export", "intel", "correlation"]
        .into_iter()
        .map(|service| {
            let (cert, key) = mesh.pki.leaf(service);
            let files = (
                write(dir.path(), &format!("{service}.pem"), &cert),
                write(dir.path(), &format!("{service}.key"), &key),
            );
            (service, files)
        })
        .collect();
    let env = |service: &str| {
        let (cert, key) = &certs[service];
        vec![
            ("ATTACKMESH_TLS__CERT_FILE".to_owned(), cert.display().to_string()),
            ("ATTACKMESH_TLS__KEY_FILE".to_owned(), key.display().to_string()),
        ]
    };
    let serve = Serve::start_each(dir.path(), mesh.addrs, &mesh.config, Some(mesh.grpc_tls()), env).await;

    every_internal_link_works(&mesh, &serve, dir.path(), "tls-separate-1").await;
    drop(serve);
}
