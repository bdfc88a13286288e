//! The campaign panel's data over real HTTP: campaigns built by the real campaign builder from
//! one intruder's events, shipped to intel as campaign alerts, and read back from the store at
//! their latest revision (SQLite, and PostgreSQL when configured), behind the page's tokens.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use attackmesh::proto::{Campaign, Endpoint, EnrichedEvent, EnrichmentMetadata};
use attackmesh_attack::Kb;
use attackmesh_campaign::{CampaignBuilder, CampaignConfig, campaign_alert};
use attackmesh_intel::{
    Intel, Store,
    store::matrix::{MatrixCounts, MatrixFilter},
};
use common::{ADMIN, DETECTOR, READER, TestServer, client};
use reqwest::StatusCode;
use serde_json::Value;

const INTRUDER: &str = "203.0.113.45";
/// Day 20,000 since the epoch (2024-10-04), 00:00 UTC, in seconds.
const T0: i64 = 20_000 * 86_400;

/// The intruder's events, an hour apart: scanning, then brute force, a valid account, a shell.
/// Techniques come late in kill-chain order on purpose: the panel must put tactics in order.
fn events() -> Vec<EnrichedEvent> {
    let kb = Kb::embedded().unwrap();
    let steps = [
        ("zeek", "T1046"),
        ("cowrie", "T1110.001"),
        ("cowrie", "T1078"),
        ("falco", "T1059.004"),
    ];
    steps
        .iter()
        .enumerate()
        .map(|(i, (detector, technique))| EnrichedEvent {
            event_id: format!("evt-{i}"),
            revision: 1,
            timestamp: Some(pbjson_types::Timestamp {
                seconds: T0 + 3_600 * i as i64,
                nanos: 0,
            }),
            source_service: (*detector).into(),
            severity: 3,
            event_type: "alert".into(),
            source: Some(Endpoint {
                ip: INTRUDER.into(),
                ..Default::default()
            }),
            destination: Some(Endpoint {
                hostname: "web-1".into(),
                ..Default::default()
            }),
            confidence_score: 0.8,
            technique_ids: vec![(*technique).into()],
            metadata: Some(EnrichmentMetadata {
                techniques: vec![kb.technique_detail(kb.technique(technique).unwrap())],
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The campaign revisions the builder emits: after the first two events, then after all.
fn revisions(kb: &Arc<Kb>) -> (Campaign, Campaign) {
    let mut builder = CampaignBuilder::new(kb.clone(), CampaignConfig::default()).unwrap();
    let events = events();
    for e in &events[..2] {
        builder.observe(e);
    }
    let first = builder.updates().remove(0);
    for e in &events[2..] {
        builder.observe(e);
    }
    let last = builder.updates().remove(0);
    assert_eq!(first.campaign_id, last.campaign_id);
    assert!(last.revision > first.revision);
    (first, last)
}

/// Ingests the latest revision, then the older one (a late redelivery): the store keeps the
/// latest, whole.
async fn keeps_the_latest_revision(store: Store, collection: &str) {
    let kb = Arc::new(Kb::embedded().unwrap());
    let mut config = common::config();
    config.collections[0].id = collection.to_owned();
    let intel = Intel::new(store.clone(), (*kb).clone(), &config);
    let (first, last) = revisions(&kb);
    intel
        .ingest_events(collection, &[campaign_alert(&kb, &last)])
        .await
        .unwrap();
    intel
        .ingest_events(collection, &[campaign_alert(&kb, &first)])
        .await
        .unwrap();
    let body = store.campaign(collection, &last.campaign_id).await.unwrap().unwrap();
    let stored: Campaign = serde_json::from_str(&body).unwrap();
    assert_eq!(stored, last);
    let listed = store.campaigns(collection, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(store.campaign(collection, "campaign--nope").await.unwrap().is_none());
}

/// The matrix of `collection` restricted to `campaign`, over the events' whole day.
async fn campaign_matrix(store: &Store, collection: &str, campaign: &str) -> MatrixCounts {
    let filter = MatrixFilter {
        from_us: T0 * 1_000_000,
        to_us: (T0 + 86_400) * 1_000_000,
        campaign: Some(campaign.to_owned()),
        ..Default::default()
    };
    store.matrix_counts(collection, &filter).await.unwrap()
}

/// The technique ids of a matrix answer with how many events carried each.
fn counted(counts: &MatrixCounts) -> Vec<(&str, u64)> {
    counts
        .techniques
        .iter()
        .map(|(t, tally)| (t.as_str(), tally.count))
        .collect()
}

/// Members stored before the campaign alert are tagged by it; a member arriving after the alert
/// is tagged on arrival; an event outside the campaign never is; a later revision that merged
/// another campaign takes over that campaign's events.
async fn tags_the_members(store: Store, collection: &str) {
    let kb = Arc::new(Kb::embedded().unwrap());
    let mut config = common::config();
    config.collections[0].id = collection.to_owned();
    let intel = Intel::new(store.clone(), (*kb).clone(), &config);
    let (_, campaign) = revisions(&kb);
    let events = events();
    let mut outsider = events[0].clone();
    outsider.event_id = "evt-outsider".into();
    intel.ingest_events(collection, &events[..3]).await.unwrap();
    intel.ingest_events(collection, &[outsider.clone()]).await.unwrap();
    assert_eq!(
        campaign_matrix(&store, collection, &campaign.campaign_id).await.events,
        0
    );

    intel
        .ingest_events(collection, &[campaign_alert(&kb, &campaign)])
        .await
        .unwrap();
    let counts = campaign_matrix(&store, collection, &campaign.campaign_id).await;
    assert_eq!(counts.events, 3);
    assert_eq!(counted(&counts), [("T1046", 1), ("T1078", 1), ("T1110.001", 1)]);

    // The shell arrives after the alert that lists it.
    intel.ingest_events(collection, &events[3..]).await.unwrap();
    let counts = campaign_matrix(&store, collection, &campaign.campaign_id).await;
    assert_eq!(counts.events, 4);
    assert_eq!(
        counted(&counts),
        [("T1046", 1), ("T1059.004", 1), ("T1078", 1), ("T1110.001", 1)]
    );
    let facets = store.facets(collection).await.unwrap();
    assert_eq!(facets.campaigns, [(campaign.campaign_id.clone(), 4)]);

    // Another campaign holds the outsider; a later revision of the first merges it.
    let mut other = campaign.clone();
    other.campaign_id = "campaign--00000000-0000-4000-8000-000000000001".into();
    other.revision = 1;
    other.detectors.truncate(1);
    other.detectors[0].event_ids = vec![outsider.event_id.clone()];
    intel
        .ingest_events(collection, &[campaign_alert(&kb, &other)])
        .await
        .unwrap();
    assert_eq!(
        counted(&campaign_matrix(&store, collection, &other.campaign_id).await),
        [("T1046", 1)]
    );
    let mut merged = campaign.clone();
    merged.revision += 1;
    merged.merged_ids = vec![other.campaign_id.clone()];
    merged.detectors[0].event_ids.push(outsider.event_id.clone());
    // More members than one statement binds (the rest were never stored here).
    merged.detectors[0]
        .event_ids
        .extend((0..450).map(|i| format!("evt-elsewhere-{i}")));
    intel
        .ingest_events(collection, &[campaign_alert(&kb, &merged)])
        .await
        .unwrap();
    let counts = campaign_matrix(&store, collection, &campaign.campaign_id).await;
    assert_eq!(counts.events, 5);
    assert_eq!(
        counted(&counts),
        [("T1046", 2), ("T1059.004", 1), ("T1078", 1), ("T1110.001", 1)]
    );
    assert_eq!(campaign_matrix(&store, collection, &other.campaign_id).await.events, 0);
}

#[tokio::test]
async fn sqlite_campaign_alerts_tag_their_members_in_the_matrix() {
    let (store, _dir) = common::sqlite_store().await;
    tags_the_members(store, "rw").await;
}

#[tokio::test]
async fn postgres_campaign_alerts_tag_their_members_in_the_matrix() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    tags_the_members(store, &common::unique("campaign-tags")).await;
}

#[tokio::test]
async fn sqlite_keeps_the_latest_campaign_revision() {
    let (store, _dir) = common::sqlite_store().await;
    keeps_the_latest_revision(store, "rw").await;
}

#[tokio::test]
async fn postgres_keeps_the_latest_campaign_revision() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    keeps_the_latest_revision(store, &common::unique("campaign")).await;
}

#[tokio::test]
async fn the_campaign_panel_needs_an_analyst_and_shows_the_campaign() {
    let (store, _dir) = common::sqlite_store().await;
    let s = TestServer::start(common::config(), store).await;
    let kb = Arc::new(Kb::embedded().unwrap());
    let (first, last) = revisions(&kb);
    s.intel.ingest_events("rw", &events()).await.unwrap();
    for c in [&first, &last] {
        s.intel.ingest_events("rw", &[campaign_alert(&kb, c)]).await.unwrap();
    }
    let id = last.campaign_id.clone();
    let paths = ["/ui/api/campaigns".to_owned(), format!("/ui/api/campaigns/{id}")];
    let get = |path: &str, token: Option<&str>| {
        let mut req = client().get(format!("{}{path}", s.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for path in &paths {
        let resp = get(path, None).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            !resp.text().await.unwrap().contains(INTRUDER),
            "{path}: nothing without a token"
        );
        let resp = get(path, Some(DETECTOR.1)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(
            !resp.text().await.unwrap().contains(INTRUDER),
            "{path}: nothing for a detector"
        );
        for who in [READER, ADMIN] {
            let resp = get(path, Some(who.1)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path} as {}", who.0);
        }
    }

    let list: Value = get(&paths[0], Some(READER.1)).await.unwrap().json().await.unwrap();
    let listed = list["campaigns"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["entity"], INTRUDER);
    assert_eq!(listed[0]["revision"], last.revision);

    let panel: Value = get(&paths[1], Some(READER.1)).await.unwrap().json().await.unwrap();
    assert_eq!(panel["campaign"]["entity"], INTRUDER);
    assert_eq!(panel["campaign"]["first_seen"], "2024-10-04T00:00:00.000Z");
    assert_eq!(panel["campaign"]["last_seen"], "2024-10-04T03:00:00.000Z");
    // Tactics in kill-chain order, whatever order the techniques came in.
    let tactics: Vec<&str> = panel["kill_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tactics,
        [
            "Initial Access",
            "Execution",
            "Persistence",
            "Privilege Escalation",
            "Defense Evasion",
            "Credential Access",
            "Discovery"
        ]
    );
    // The timeline: each technique with the time it was first seen, in that order.
    let timeline: Vec<(&str, &str)> = panel["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["first_seen"].as_str().unwrap()))
        .collect();
    assert_eq!(
        timeline,
        [
            ("T1046", "2024-10-04T00:00:00.000Z"),
            ("T1110.001", "2024-10-04T01:00:00.000Z"),
            ("T1078", "2024-10-04T02:00:00.000Z"),
            ("T1059.004", "2024-10-04T03:00:00.000Z"),
        ]
    );
    // Members: the event ids per detector.
    let cowrie = panel["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["detector"] == "cowrie")
        .unwrap();
    assert_eq!(cowrie["event_ids"], serde_json::json!(["evt-1", "evt-2"]));
    assert!(panel["risk"]["score"].as_f64().unwrap() > 0.0);
    assert!(!panel["risk"]["formula"].as_str().unwrap().is_empty());
    assert!(
        panel["risk"]["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == INTRUDER)
    );
    let evidence = panel["groups"]["evidence"].as_str().unwrap();
    assert!(["none", "weak", "strong"].contains(&evidence), "{evidence}");
    assert!(panel["groups"]["wording"].as_str().unwrap().starts_with(evidence));
    // The Attack Flow: one action per technique in time order, each pointing at the next.
    let actions = panel["flow"]["actions"].as_array().unwrap();
    let techniques: Vec<&str> = actions.iter().map(|a| a["technique_id"].as_str().unwrap()).collect();
    assert_eq!(techniques, ["T1046", "T1110.001", "T1078", "T1059.004"]);
    let edges = panel["flow"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3);
    for (edge, pair) in edges.iter().zip(actions.windows(2)) {
        assert_eq!(edge["from"], pair[0]["id"]);
        assert_eq!(edge["to"], pair[1]["id"]);
    }

    let resp = get("/ui/api/campaigns/campaign--unknown", Some(READER.1))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
