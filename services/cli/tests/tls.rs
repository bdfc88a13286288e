//! `attackmesh serve all` under mutual TLS with certificates made for the test: every gRPC
//! listener, the Falco input, TAXII and `/metrics` speak TLS and want a client certificate from
//! the client CA, and the services' own links (enrichment to attribution and export) work over
//! the same TLS, so a detector's batch is acknowledged end to end.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use attackmesh::proto::{AckStatus, DetectionEvent, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_testkit::pki::{Pki, client_config};
use common::{Addrs, Serve, base_config, token};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn https_client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let config = client_config(ca, identity);
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_of_serve_all_speaks_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("attackmesh test ca");
    let (server_cert, server_key) = pki.leaf("attackmesh");
    let (client_cert, client_key) = pki.leaf("edge-detector");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let addrs = Addrs::new();
    let mut config = base_config(dir.path(), &addrs);
    config["tls"] = serde_json::json!({
        "cert_file": write("server.pem", &server_cert),
        "key_file": write("server.key", &server_key),
        "client_ca_file": write("ca.pem", &pki.ca_pem),
        "ca_file": dir.path().join("ca.pem"),
        "server_name": "localhost",
    });
    let grpc_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(&client_cert, &client_key));
    let serve = Serve::start_with(dir.path(), addrs, &config, Some(grpc_tls.clone())).await;

    // A detector's batch goes enrichment → attribution → export over TLS and comes back durable.
    let channel = Channel::from_shared(format!("https://localhost:{}", addrs.enrichment.port()))
        .unwrap()
        .tls_config(grpc_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let batch = IngestRequest {
        batch_id: 7,
        events: vec![DetectionEvent {
            event_id: "tls-1".into(),
            timestamp: Some(pbjson_types::Timestamp { seconds: now, nanos: 0 }),
            event_type: "suricata.alert".into(),
            source_service: "edge".into(),
            description: "ET SCAN Potential SSH Scan".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut request = tonic::Request::new(tokio_stream::iter([batch]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("edge-detector")).parse().unwrap(),
    );
    let mut answers = IngestServiceClient::new(channel)
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

    // gRPC without a client certificate, or in plaintext, gets nowhere.
    for (url, tls) in [
        (
            format!("https://localhost:{}", addrs.attribution.port()),
            Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&pki.ca_pem))
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
    let good = https_client(&pki.ca_pem, Some((&client_cert, &client_key)));
    let anonymous = https_client(&pki.ca_pem, None);
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
