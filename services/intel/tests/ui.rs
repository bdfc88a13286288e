//! The live matrix page and its data over real HTTP on 127.0.0.1:0: who may read it, and that
//! the store's aggregation (roll-up plus raw edges) counts exactly what a plain count over the
//! ingested events gives, in SQLite and (when configured) PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use attackmesh::proto::{Endpoint, EnrichedEvent, EnrichmentMetadata, Evidence, TechniqueDetail};
use attackmesh_intel::{
    Store,
    store::matrix::{DAY_US, HOUR_US, MatrixFilter},
};
use common::{ADMIN, DETECTOR, READER, TestServer, client};
use reqwest::StatusCode;
use serde_json::Value;

const DATA: &[&str] = &[
    "/ui/api/matrix",
    "/ui/api/counts?since=all",
    "/ui/api/facets",
    "/ui/api/layer",
    "/ui/api/techniques/T1110",
];

/// Day 20,000 since the epoch (2024-10-04), 00:00 UTC.
const T0: i64 = 20_000 * DAY_US;
const TECHNIQUES: &[&str] = &["T1110.001", "T1078", "T1046", "T1059.004", "T1021.004"];
const DETECTORS: &[&str] = &["suricata", "zeek", "cowrie"];
const HOSTS: &[&str] = &["web-1", "db-1", "10.0.0.5", "10.0.0.9"];

/// Event `i` of a deterministic spread over four days, several detectors, severities,
/// entities and one to three techniques.
fn event(i: usize) -> EnrichedEvent {
    let ts = T0 + (i as i64 * 7_919 * 1_000_000) % (4 * DAY_US) + 1_234;
    let techniques: Vec<String> = (0..1 + i % 3)
        .map(|k| TECHNIQUES[(i + 2 * k) % TECHNIQUES.len()].to_owned())
        .collect();
    EnrichedEvent {
        event_id: format!("evt-{i}"),
        revision: 1,
        timestamp: Some(pbjson_types::Timestamp {
            seconds: ts / 1_000_000,
            nanos: ((ts % 1_000_000) * 1_000) as i32,
        }),
        source_service: DETECTORS[i % DETECTORS.len()].into(),
        severity: 1 + (i % 4) as i32,
        event_type: "alert".into(),
        source: Some(Endpoint {
            ip: format!("192.0.2.{}", i % 7),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            hostname: HOSTS[i % HOSTS.len()].into(),
            ..Default::default()
        }),
        confidence_score: 0.5,
        metadata: Some(EnrichmentMetadata {
            techniques: techniques
                .iter()
                .enumerate()
                .map(|(k, id)| TechniqueDetail {
                    id: id.clone(),
                    confidence: 0.4 + 0.1 * k as f64,
                    evidence: vec![Evidence {
                        source: 1,
                        rule_id: format!("rule-{id}"),
                        detail: "matched".into(),
                        confidence: 0.4,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        technique_ids: techniques,
        ..Default::default()
    }
}

fn ts(e: &EnrichedEvent) -> i64 {
    let t = e.timestamp.as_ref().unwrap();
    t.seconds * 1_000_000 + i64::from(t.nanos / 1_000)
}

/// The plain count the aggregation must equal.
fn expected(events: &[EnrichedEvent], f: &MatrixFilter) -> (u64, BTreeMap<String, u64>) {
    let mut n = 0;
    let mut out = BTreeMap::new();
    for e in events {
        let involves = |x: &str| {
            [&e.source, &e.destination]
                .into_iter()
                .flatten()
                .any(|p| p.ip == x || p.hostname == x || p.user == x)
        };
        if ts(e) < f.from_us
            || ts(e) >= f.to_us
            || f.detector.as_ref().is_some_and(|d| *d != e.source_service)
            || f.min_severity.is_some_and(|s| e.severity < s)
            || f.entity.as_deref().is_some_and(|x| !involves(x))
        {
            continue;
        }
        n += 1;
        for t in &e.technique_ids {
            *out.entry(t.clone()).or_default() += 1;
        }
    }
    (n, out)
}

async fn check_counts(store: &Store, collection: &str, events: &[EnrichedEvent]) {
    let ranges = [
        (i64::MIN, i64::MAX),
        (T0 + 90 * 60 * 1_000_000 + 17, T0 + 3 * DAY_US + 5 * HOUR_US + 99),
        (T0 + DAY_US, T0 + 2 * DAY_US),
        (T0 + 10, T0 + 50 * 60 * 1_000_000),
    ];
    for (from_us, to_us) in ranges {
        let filters = [
            MatrixFilter::default(),
            MatrixFilter {
                detector: Some("zeek".into()),
                ..Default::default()
            },
            MatrixFilter {
                min_severity: Some(3),
                ..Default::default()
            },
            MatrixFilter {
                entity: Some("db-1".into()),
                min_severity: Some(2),
                ..Default::default()
            },
        ];
        for f in filters {
            let f = MatrixFilter { from_us, to_us, ..f };
            let got = store.matrix_counts(collection, &f).await.unwrap();
            let (n, want) = expected(events, &f);
            assert_eq!(got.events, n, "{f:?}");
            let got: BTreeMap<String, u64> = got.techniques.iter().map(|(k, v)| (k.clone(), v.count)).collect();
            assert_eq!(got, want, "{f:?}");
        }
    }
}

async fn aggregation_matches_a_plain_count(store: Store, collection: &str) {
    let mut config = common::config();
    config.collections[0].id = collection.to_owned();
    let intel = attackmesh_intel::Intel::new(store.clone(), attackmesh_attack::Kb::embedded().unwrap(), &config);
    let mut events: Vec<EnrichedEvent> = (0..400).map(event).collect();
    for chunk in events.chunks(100) {
        intel.ingest_events(collection, chunk).await.unwrap();
    }
    // A redelivered batch counts nothing again, and a campaign alert is not an observation.
    intel.ingest_events(collection, &events[..50]).await.unwrap();
    let mut alert = event(9_999);
    alert.campaign = Some(Box::default());
    intel.ingest_events(collection, &[alert]).await.unwrap();
    check_counts(&store, collection, &events).await;

    // A re-attribution (higher revision) replaces the event's techniques, time and detector.
    let mut again = events[7].clone();
    again.revision = 2;
    again.technique_ids = vec!["T1566".into()];
    again.source_service = "wazuh".into();
    again.timestamp = Some(pbjson_types::Timestamp {
        seconds: (T0 + 3 * DAY_US + 60_000_000) / 1_000_000,
        nanos: 0,
    });
    intel
        .ingest_events(collection, std::slice::from_ref(&again))
        .await
        .unwrap();
    events[7] = again;
    check_counts(&store, collection, &events).await;

    let latest = store
        .technique_events(collection, "T1566", &all_time(), 10)
        .await
        .unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].event_id, "evt-7");
    let facets = store.facets(collection).await.unwrap();
    let detectors: Vec<&str> = facets.detectors.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(detectors, ["cowrie", "suricata", "wazuh", "zeek"]);
}

fn all_time() -> MatrixFilter {
    MatrixFilter {
        from_us: i64::MIN,
        to_us: i64::MAX,
        ..Default::default()
    }
}

#[tokio::test]
async fn sqlite_aggregation_matches_a_plain_count() {
    let (store, _dir) = common::sqlite_store().await;
    aggregation_matches_a_plain_count(store, "rw").await;
}

#[tokio::test]
async fn postgres_aggregation_matches_a_plain_count() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    aggregation_matches_a_plain_count(store, &common::unique("ui")).await;
}

#[tokio::test]
async fn the_page_and_its_data_need_an_analyst_token() {
    let (store, _dir) = common::sqlite_store().await;
    let s = TestServer::start(common::config(), store).await;
    s.intel.ingest_events("rw", &[event(1)]).await.unwrap();

    // No token: the page answers 401 with the sign-in document, the data 401 with nothing.
    let page = client().get(format!("{}/ui/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(page.headers()["www-authenticate"], "Bearer");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"login\""), "{html}");
    assert!(!html.contains("T1110"), "the page itself carries no data");
    for path in DATA {
        let resp = client().get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("T1110") && !body.contains("evt-1"), "{path}: {body}");
    }
    // A detector token: 403 everywhere.
    for path in std::iter::once("/ui/").chain(DATA.iter().copied()) {
        let resp = client()
            .get(format!("{}{path}", s.base))
            .bearer_auth(DETECTOR.1)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Analysts and admins read.
    for who in [READER, ADMIN] {
        for path in std::iter::once("/ui/").chain(DATA.iter().copied()) {
            let resp = client()
                .get(format!("{}{path}", s.base))
                .bearer_auth(who.1)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path} as {}", who.0);
        }
    }
    // A collection the analyst may not read is refused, not shown.
    let resp = client()
        .get(format!("{}/ui/api/counts?collection=private", s.base))
        .bearer_auth(READER.1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_data_endpoints_answer_the_view() {
    let (store, _dir) = common::sqlite_store().await;
    let s = TestServer::start(common::config(), store).await;
    let events: Vec<EnrichedEvent> = (0..12).map(event).collect();
    s.intel.ingest_events("rw", &events).await.unwrap();
    let base = s.base.clone();
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let resp = client().get(url).bearer_auth(READER.1).send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, counts) = get("/ui/api/counts?since=all&detector=zeek".into()).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    let (n, want) = expected(
        &events,
        &MatrixFilter {
            detector: Some("zeek".into()),
            ..all_time()
        },
    );
    assert_eq!(counts["events"], n);
    for (id, count) in &want {
        assert_eq!(counts["techniques"][id]["count"], *count, "{id}");
    }
    let (status, bad) = get("/ui/api/counts?since=soon&severity=dire".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["violations"].as_array().unwrap().len(), 2, "{bad}");

    let (_, t) = get("/ui/api/techniques/T1110.001?since=all".into()).await;
    assert_eq!(t["name"], "Password Guessing");
    assert!(
        t["url"]
            .as_str()
            .unwrap()
            .starts_with("https://attack.mitre.org/techniques/T1110/001")
    );
    assert_eq!(t["rules"][0]["rule_id"], "rule-T1110.001");
    assert!(!t["events"].as_array().unwrap().is_empty());
    assert!(t["events"][0]["evidence"][0]["detail"] == "matched");
    assert!(t["groups"].as_array().unwrap().iter().any(|g| g["id"].is_string()));
    let (status, _) = get("/ui/api/techniques/T9999?since=all".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let resp = client()
        .get(format!("{}/ui/api/layer?since=all", s.base))
        .bearer_auth(READER.1)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let layer: Value = resp.json().await.unwrap();
    assert_eq!(layer["domain"], "enterprise-attack");
    let (_, all) = expected(&events, &all_time());
    let scored = layer["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["techniqueID"] == "T1046")
        .unwrap();
    assert_eq!(scored["score"], all["T1046"]);
}
