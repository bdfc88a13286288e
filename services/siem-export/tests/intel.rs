//! The intel sink against a real intel service over gRPC on 127.0.0.1: events with indicators
//! become STIX indicator objects in intel's store, an event intel refuses goes to the dead-letter
//! queue with intel's reason, and a batch queued while intel is down is retried and delivered
//! once it starts.

#![allow(clippy::unwrap_used)]

mod common;

use std::{net::SocketAddr, path::Path};

use attackmesh_intel::{IntelConfig, Store, export_bundle};
use attackmesh_runtime::auth::Role;
use attackmesh_siem_export::SiemExportConfig;
use attackmesh_testkit::{Running, Tokens, bind, fixtures, free_addr};
use common::{Harness, dead_letters, eventually};
use tokio::net::TcpListener;

/// The name intel knows the export service by.
const CALLER: &str = "siem-export";
/// The token [`CALLER`] presents (testkit's `<name>-token`).
const TOKEN: &str = "siem-export-token";

struct Intel {
    config: IntelConfig,
    service: Running<attackmesh_intel::Error>,
}

impl Intel {
    /// Serves intel on `listener` with its store under `dir`, admitting [`CALLER`] as admin,
    /// and waits until it is SERVING.
    async fn start(listener: TcpListener, dir: &Path) -> Intel {
        let config = IntelConfig {
            data_dir: dir.to_owned(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let tokens = Tokens::new(&[(CALLER, Role::Admin)]);
        assert_eq!(tokens.bearer(CALLER), TOKEN);
        let server = tokens.server().await;
        let (http, _) = bind().await;
        let serve_config = config.clone();
        let service = Running::start_on(listener, |listener, shutdown| async move {
            attackmesh_intel::server::serve(&serve_config, server, listener, http, shutdown).await
        })
        .await;
        Intel { config, service }
    }

    /// Patterns of the indicator objects in the default collection.
    async fn indicator_patterns(&self) -> Vec<String> {
        let store = Store::open(self.config.db_url().expose()).await.unwrap();
        let mut buf = Vec::new();
        export_bundle(&store, &self.config.default_collection_id(), &mut buf)
            .await
            .unwrap();
        let bundle: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        bundle["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["type"] == "indicator")
            .map(|o| o["pattern"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

fn config(dir: &Path, intel: SocketAddr) -> SiemExportConfig {
    let mut c = common::config(dir);
    c.intel.peer.endpoints = vec![format!("http://{intel}")];
    c.intel.peer.token = Some(attackmesh_runtime::secret::Secret::new(TOKEN));
    c
}

#[tokio::test]
async fn indicators_reach_the_intel_store_and_refused_events_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, addr) = bind().await;
    let intel = Intel::start(listener, &dir.path().join("intel")).await;
    let data = dir.path().join("export");
    let harness = Harness::start(&config(&data, addr)).await;

    let mut events: Vec<_> = (0..3).map(fixtures::event).collect();
    events[2].event_id = "evt-refused".into();
    events[2].revision = 0;
    // Enqueued as an older exporter might have: intel validates each event on its own.
    harness.state.enqueue(events, Default::default()).await.unwrap();
    let sink = harness.sink("intel").clone();
    eventually(30, "2 delivered and 1 dead-lettered", || async {
        let s = sink.status();
        s.delivered == 2 && s.dead_lettered == 1
    })
    .await;
    assert_eq!(sink.status().kind, "intel");

    let patterns = intel.indicator_patterns().await;
    for observable in [
        "[ipv4-addr:value = '203.0.113.7']",
        "[domain-name:value = 'scanner.example']",
    ] {
        assert!(
            patterns.iter().any(|p| p == observable),
            "{observable} not in {patterns:?}"
        );
    }
    let dead = dead_letters(&data, "intel");
    assert_eq!(dead.len(), 1);
    let entry = &dead[0].entry;
    assert_eq!(entry.event_id.as_deref(), Some("evt-refused"));
    assert!(
        entry.reason.contains("intel rejected the event: revision"),
        "{}",
        entry.reason
    );

    harness.shutdown().await;
    intel.stop().await;
}

#[tokio::test]
async fn events_queued_while_intel_is_down_are_retried_and_delivered_once_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on yet: connections are refused until intel starts on it.
    let addr = free_addr();
    let data = dir.path().join("export");
    let harness = Harness::start(&config(&data, addr)).await;
    harness
        .state
        .enqueue((0..4).map(fixtures::event).collect(), Default::default())
        .await
        .unwrap();
    let sink = harness.sink("intel").clone();
    eventually(30, "the intel sink retried", || async { sink.status().retried > 0 }).await;
    let status = sink.status();
    assert!(!status.healthy && status.last_error.contains("intel"), "{status:?}");
    assert_eq!(status.delivered, 0);

    let intel = Intel::start(TcpListener::bind(addr).await.unwrap(), &dir.path().join("intel")).await;
    eventually(60, "4 delivered after intel started", || async {
        sink.status().delivered == 4
    })
    .await;
    let status = sink.status();
    assert!(status.healthy && status.dead_lettered == 0, "{status:?}");
    assert!(!intel.indicator_patterns().await.is_empty());

    harness.shutdown().await;
    intel.stop().await;
}
