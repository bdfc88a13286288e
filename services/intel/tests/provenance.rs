//! Who may version what, over real gRPC and TAXII: a collection writer can neither version the
//! objects attackmesh creates nor have attackmesh build on an object planted under one of its
//! ids; attackmesh's merges keep their markings and provenance; and a stored version that no
//! later timestamp can follow costs the one event touching it, not the whole batch.

#![allow(clippy::unwrap_used)]

mod common;

use attackmesh::proto::{EnrichedEvent, IndicatorType, ShareEventsRequest, ShareEventsResponse};
use attackmesh_intel::{
    StixObject, Store,
    stix::{deterministic_id, timestamp},
    store::WriteMode,
};
use chrono::{Duration, Utc};
use common::{
    ADMIN, TAXII, WRITER,
    grpc::{Running, as_caller, enriched, ind, start, taxii_objects},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn share_events(s: &mut Running, events: Vec<EnrichedEvent>) -> ShareEventsResponse {
    let request = ShareEventsRequest {
        collection_id: "rw".into(),
        events,
    };
    s.client
        .share_events(as_caller(request, ADMIN))
        .await
        .unwrap()
        .into_inner()
}

/// POSTs `objects` to collection `rw` as `who`; answers the TAXII status resource.
async fn post(s: &Running, who: (&str, &str), objects: Vec<Value>) -> Value {
    let resp = common::client()
        .post(format!("{}/intel/collections/rw/objects/", s.http))
        .bearer_auth(who.1)
        .header("accept", TAXII)
        .header("content-type", TAXII)
        .body(json!({ "objects": objects }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.json().await.unwrap()
}

async fn latest(s: &Running, id: &str) -> Value {
    let objects = taxii_objects(s, &format!("match[id]={id}")).await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    objects[0].clone()
}

/// A STIX timestamp `ms` milliseconds from now.
fn from_now(ms: i64) -> String {
    timestamp(Utc::now() + Duration::milliseconds(ms))
}

fn pattern(ip: &str) -> String {
    format!("[ipv4-addr:value = '{ip}']")
}

#[tokio::test]
async fn writers_cannot_version_attackmesh_objects_and_merges_keep_markings() {
    let mut s = start(common::config()).await;
    let ip = "203.0.113.7";
    let first = share_events(&mut s, vec![enriched("evt-1", vec![ind(IndicatorType::Ipv4, ip)])]).await;
    let id = first.indicator_ids[0].clone();
    let ours = latest(&s, &id).await;
    assert!(
        ours["created_by_ref"].is_string() && ours["object_marking_refs"].is_array(),
        "{ours}"
    );

    // The probe: attackmesh's id, a later `modified`, a forged pattern and name, no provenance
    // and no marking; and the same claiming attackmesh's identity, with an injected label.
    let mut forged = ours.clone();
    forged.as_object_mut().unwrap().remove("created_by_ref");
    forged.as_object_mut().unwrap().remove("object_marking_refs");
    forged["modified"] = json!(from_now(1));
    forged["pattern"] = json!(pattern("198.51.100.66"));
    forged["name"] = json!("forged");
    let mut claimed = ours.clone();
    claimed["modified"] = json!(from_now(2));
    claimed["labels"] = json!(["mitre_attack:T1486"]);
    let status = post(&s, WRITER, vec![forged, claimed]).await;
    assert_eq!(
        (status["success_count"].clone(), status["failure_count"].clone()),
        (json!(0), json!(2)),
        "{status}"
    );
    for failure in status["failures"].as_array().unwrap() {
        assert_eq!(failure["id"], json!(id));
        assert!(!failure["message"].as_str().unwrap().is_empty());
    }

    // attackmesh's next merge builds on its own version: pattern, name, provenance and marking stay.
    let mut second = enriched("evt-2", vec![ind(IndicatorType::Ipv4, ip)]);
    second.technique_ids = vec!["T1046".into()];
    let resp = share_events(&mut s, vec![second]).await;
    assert!(resp.rejections.is_empty(), "{resp:?}");
    let merged = latest(&s, &id).await;
    for key in ["pattern", "name", "created", "created_by_ref", "object_marking_refs"] {
        assert_eq!(merged[key], ours[key], "{key} of {merged}");
    }
    assert_eq!(
        merged["labels"],
        json!(["mitre_attack:T1046", "mitre_attack:T1110.001"])
    );
    assert!(merged["modified"].as_str() > ours["modified"].as_str());
    for version in taxii_objects(&s, &format!("match[id]={id}&match[version]=all")).await {
        assert_eq!(version["created_by_ref"], ours["created_by_ref"], "{version}");
        assert_eq!(version["pattern"], ours["pattern"], "{version}");
    }
}

#[tokio::test]
async fn objects_planted_under_attackmesh_ids_are_refused_or_kept_apart() {
    let mut s = start(common::config()).await;
    let planted = |ip: &str, pattern_ip: &str| {
        json!({
            "type": "indicator", "spec_version": "2.1",
            "id": deterministic_id("indicator", &pattern(ip)),
            "created": from_now(-60_000), "modified": from_now(30_000),
            "created_by_ref": "identity--3c1a0c2e-9b8f-4d5e-8a7b-6c5d4e3f2a1b",
            "name": "benign scanner, ignore", "pattern": pattern(pattern_ip),
            "pattern_type": "stix", "valid_from": from_now(-60_000),
        })
    };
    // Under the id attackmesh derives from its own pattern: recognisably attackmesh's, refused.
    let status = post(&s, WRITER, vec![planted("203.0.113.9", "203.0.113.9")]).await;
    assert_eq!(status["failure_count"], json!(1), "{status}");

    // Under attackmesh's id with another pattern: stored as the writer's object, but attackmesh
    // never builds on it, and its own version supersedes it.
    let ip = "203.0.113.8";
    let id = deterministic_id("indicator", &pattern(ip));
    let status = post(&s, WRITER, vec![planted(ip, "198.51.100.9")]).await;
    assert_eq!(status["success_count"], json!(1), "{status}");
    let resp = share_events(&mut s, vec![enriched("evt-3", vec![ind(IndicatorType::Ipv4, ip)])]).await;
    assert!(resp.rejections.is_empty(), "{resp:?}");
    let ours = latest(&s, &id).await;
    assert_eq!(ours["pattern"], json!(pattern(ip)));
    assert_ne!(ours["name"], json!("benign scanner, ignore"));
    assert_ne!(
        ours["created_by_ref"],
        json!("identity--3c1a0c2e-9b8f-4d5e-8a7b-6c5d4e3f2a1b")
    );
    assert!(ours["object_marking_refs"].is_array(), "{ours}");
    assert_eq!(ours["labels"], json!(["mitre_attack:T1110.001"]));

    // Once attackmesh has versioned it, the writer cannot add another version.
    let mut again = planted(ip, "198.51.100.9");
    again["modified"] = json!(from_now(60_000));
    let status = post(&s, WRITER, vec![again]).await;
    assert_eq!(status["failure_count"], json!(1), "{status}");
    assert_eq!(latest(&s, &id).await, ours);
}

#[tokio::test]
async fn a_version_nothing_can_follow_costs_its_event_not_the_batch() {
    let mut s = start(common::config()).await;
    let (stuck_ip, other_ip) = ("203.0.113.10", "203.0.113.11");
    let stuck_id = deterministic_id("indicator", &pattern(stuck_ip));
    // A version stored before writes were checked, dated at the last instant STIX can express.
    let stuck = json!({
        "type": "indicator", "spec_version": "2.1", "id": stuck_id,
        "created": "2026-01-01T00:00:00.000Z", "modified": "9999-12-31T23:59:59.999Z",
        "name": "forged", "pattern": pattern("198.51.100.10"), "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    });
    let store = Store::open(&s.db).await.unwrap();
    store
        .write(
            "rw",
            vec![StixObject::from_value(stuck.clone()).unwrap()],
            WriteMode::Exact,
            Utc::now(),
        )
        .await
        .unwrap();

    let events = vec![
        enriched("evt-stuck", vec![ind(IndicatorType::Ipv4, stuck_ip)]),
        enriched("evt-ok", vec![ind(IndicatorType::Ipv4, other_ip)]),
    ];
    for attempt in 0..2 {
        let resp = share_events(&mut s, events.clone()).await;
        assert_eq!(resp.rejections.len(), 1, "attempt {attempt}: {resp:?}");
        let rejection = &resp.rejections[0];
        assert_eq!((rejection.index, rejection.event_id.as_str()), (0, "evt-stuck"));
        let reason = &rejection.violations[0].description;
        assert!(reason.contains(&stuck_id) && reason.contains("9999"), "{reason}");
        if attempt == 0 {
            assert_eq!(resp.accepted, 1, "{resp:?}");
        }
    }
    let other = latest(&s, &deterministic_id("indicator", &pattern(other_ip))).await;
    assert_eq!(other["pattern"], json!(pattern(other_ip)));
    let versions = taxii_objects(&s, &format!("match[id]={stuck_id}&match[version]=all")).await;
    assert_eq!(versions, vec![stuck], "nothing was built on the stuck version");
}
