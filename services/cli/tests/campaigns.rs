//! Campaigns in the stream: an `attackmesh serve all` builds the intruder's campaign in its
//! correlation service from what three detectors report, and the campaign alert reaches the
//! file sink through siem-export — one campaign id, every detector a member, the campaign's own
//! alerts (which siem-export's correlation sink carries back) never members of it.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, path::Path, time::Duration};

use attackmesh::proto::{
    AckStatus, Campaign, DetectionEvent, DetectorKind, Endpoint, EnrichedEvent, IngestRequest, Severity,
    ingest_service_client::IngestServiceClient,
};
use common::*;
use tokio::time::Instant;

const T0: i64 = 1_767_225_600;
const INTRUDER: &str = "203.0.113.45";

fn detection(id: &str, secs: i64, service: &str, kind: DetectorKind, hint: &str) -> DetectionEvent {
    DetectionEvent {
        event_id: id.into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: T0 + secs,
            nanos: 0,
        }),
        source_service: service.into(),
        detector_kind: kind as i32,
        event_type: format!("{service}.alert"),
        source: Some(Endpoint {
            ip: INTRUDER.into(),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.20.0.30".into(),
            port: 22,
            ..Default::default()
        }),
        severity: Severity::High as i32,
        description: format!("{service} saw {INTRUDER}"),
        technique_hints: vec![hint.into()],
        ..Default::default()
    }
}

/// The latest campaign alert of each campaign id in the file sink.
fn campaigns(path: &Path) -> Vec<(EnrichedEvent, Campaign)> {
    let mut latest: std::collections::BTreeMap<String, (EnrichedEvent, Campaign)> = Default::default();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let e: EnrichedEvent = attackmesh::json::from_json(line).unwrap();
        let Some(c) = e.campaign.as_deref().cloned() else {
            continue;
        };
        assert_eq!(e.event_id, c.campaign_id, "a campaign alert's id is its campaign's");
        assert_eq!(e.revision, c.revision);
        if latest
            .get(&c.campaign_id)
            .is_none_or(|(_, old)| old.revision < c.revision)
        {
            latest.insert(c.campaign_id.clone(), (e, c));
        }
    }
    latest.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_all_delivers_the_intruders_campaign_to_the_file_sink() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let addrs = Addrs::new();
    let config = base_config(dir, &addrs);
    let serve = Serve::start(dir, addrs, &config).await;
    let addrs = serve.addrs;

    let events = vec![
        detection("scan-1", 0, "suricata-edge", DetectorKind::TrafficMonitor, "T1046"),
        detection("ssh-1", 60, "cowrie-decoy", DetectorKind::Decoy, "T1110"),
        detection("conn-1", 120, "zeek-core", DetectorKind::TrafficMonitor, "T1021"),
    ];
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", addrs.enrichment))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = IngestServiceClient::new(channel);
    let mut request = tonic::Request::new(tokio_stream::iter(vec![IngestRequest {
        batch_id: 1,
        events,
        ..Default::default()
    }]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("edge-detector")).parse().unwrap(),
    );
    let answer = client
        .ingest(request)
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, AckStatus::Durable as i32, "{answer:?}");

    let sink = dir.join("out/events.ndjson");
    let all = BTreeSet::from(["cowrie-decoy", "suricata-edge", "zeek-core"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (alert, campaign) = loop {
        let found = campaigns(&sink);
        if let [(alert, campaign)] = found.as_slice() {
            let members: BTreeSet<&str> = campaign.detectors.iter().map(|d| d.source_service.as_str()).collect();
            if members == all {
                break (alert.clone(), campaign.clone());
            }
        }
        assert!(found.len() <= 1, "one intruder, one campaign: {found:#?}");
        assert!(
            Instant::now() < deadline,
            "no campaign of all three detectors in the file sink: {found:#?}\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert.event_type, attackmesh_campaign::CAMPAIGN_EVENT_TYPE);
    assert!(campaign.entities.iter().any(|e| e.value == INTRUDER), "{campaign:#?}");
    // Let the alerts siem-export's correlation sink carries back arrive before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = campaigns(&sink);
    assert_eq!(found.len(), 1, "{found:#?}");
    let members: BTreeSet<&str> = found[0].1.detectors.iter().map(|d| d.source_service.as_str()).collect();
    assert_eq!(members, all, "a campaign alert never joins a campaign");
}
