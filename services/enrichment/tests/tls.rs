//! Mutual TLS on every hop: a detector reaches enrichment, and enrichment reaches attribution
//! and export, only with certificates from the mesh CA; the events arrive attributed.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, net::SocketAddr, path::Path};

use attackmesh::proto::{AckStatus, AttributionStatus, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_runtime::tls::TlsConfig;
use attackmesh_testkit::{pki::Pki, port_scan, wait_for_sink};
use common::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn mesh_tls(pki: &Pki, dir: &Path, name: &str) -> TlsConfig {
    let (cert, key) = pki.leaf(name);
    let write = |file: &str, text: &str| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.ca_pem);
    TlsConfig {
        cert_file: Some(write("cert.pem", &cert)),
        key_file: Some(write("key.pem", &key)),
        client_ca_file: Some(ca.clone()),
        ca_file: Some(ca),
        server_name: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_speaks_mutual_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("mesh ca");
    let with_tls = |name: &str| {
        let mut r = runtime();
        r.tls = mesh_tls(&pki, dir.path(), name);
        r
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let attribution = start_attribution_with(any, with_tls("attribution"));
    let export = start_export_with(any, dir.path(), with_tls("export"));
    let enrichment_runtime = with_tls("enrichment");
    let mut config = enrichment_config(dir.path(), attribution.addr, export.addr);
    config.attribution.peer.inherit_tls(&enrichment_runtime.tls);
    config.export.peer.inherit_tls(&enrichment_runtime.tls);
    let enrichment = start_enrichment_with(any, config, enrichment_runtime);

    let (cert, key) = pki.leaf("detector");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(cert, key))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://{}", enrichment.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let channel = loop {
        // Serving starts once the KB is loaded and export answered over TLS.
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let mut client = IngestServiceClient::new(channel);
    let ids: BTreeSet<String> = (0..5).map(|i| format!("tls-{i}")).collect();
    let mut delivered = false;
    for _ in 0..100 {
        let batch = IngestRequest {
            batch_id: 1,
            events: ids.iter().map(|id| port_scan(id, "203.0.113.80")).collect(),
            ..Default::default()
        };
        let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap();
        if answers[0].status == AckStatus::Durable as i32 {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(delivered, "export reachable over mutual TLS");
    let attributed = |m: &std::collections::BTreeMap<String, attackmesh::proto::EnrichedEvent>| {
        m.values().all(|e| e.attribution_status == AttributionStatus::Ok as i32)
    };
    wait_for_sink(&sink_path(dir.path()), &ids, attributed).await;

    // A plaintext detector is refused at the transport.
    let plain = Channel::from_shared(format!("http://{}", enrichment.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let batch = IngestRequest::default();
        assert!(
            ingest(&mut IngestServiceClient::new(plain), DETECTOR_TOKEN, vec![batch])
                .await
                .is_err()
        );
    }
}
