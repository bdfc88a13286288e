//! The gRPC `IntelService` over real gRPC on 127.0.0.1:0, wired by `server::serve` with the
//! TAXII listener beside it: sharing (attributed, explicit, degraded), sharing enriched events,
//! validation, permissions.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use attackmesh::proto::{
    AttributionStatus, IndicatorType, ListCollectionsRequest, ShareEventsRequest, ShareIndicatorsRequest,
};
use attackmesh_intel::IntelConfig;
use attackmesh_testkit::free_addr;
use common::{
    ADMIN, READER, TAXII, WRITER,
    grpc::{Running, as_caller, enriched, ind, start, taxii_objects},
};
use tonic::Code;

fn share(collection: &str, techniques: &[&str]) -> ShareIndicatorsRequest {
    ShareIndicatorsRequest {
        collection_id: collection.into(),
        indicators: vec![
            ind(IndicatorType::Ipv4, "203.0.113.50"),
            ind(IndicatorType::ProcessCommandLine, "crontab -l"),
        ],
        technique_ids: techniques.iter().map(|t| t.to_string()).collect(),
        description: "cron persistence seen by the SOC".into(),
        confidence: 0.9,
        source_service: "soc".into(),
    }
}

#[tokio::test]
async fn shared_indicators_are_attributed_stored_and_served() {
    let mut s = start(common::config()).await;
    let resp = s
        .client
        .share_indicators(as_caller(share("rw", &[]), WRITER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.attribution_status, AttributionStatus::Ok as i32);
    assert!(
        resp.technique_ids.contains(&"T1053.003".to_owned()),
        "{:?}",
        resp.technique_ids
    );
    assert_eq!(resp.object_ids.len(), 2);
    let explicit = s
        .client
        .share_indicators(as_caller(share("rw", &["T1110.001"]), WRITER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explicit.technique_ids, vec!["T1110.001"]);
    assert_eq!(explicit.object_ids, resp.object_ids, "same observables, same objects");

    let url = format!(
        "{}/intel/collections/rw/objects/{}/versions/",
        s.http, resp.object_ids[0]
    );
    let versions: serde_json::Value = common::client()
        .get(url)
        .basic_auth(READER.0, Some(READER.1))
        .header("accept", TAXII)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "the second share made a new version"
    );

    let list = s
        .client
        .list_collections(as_caller(ListCollectionsRequest {}, READER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.collections.len(), 1);
    assert_eq!(list.collections[0].id, "rw");
    assert!(list.collections[0].can_read && !list.collections[0].can_write);
    assert!(list.collections[0].object_count >= 4, "{:?}", list.collections[0]);
}

#[tokio::test]
async fn bad_requests_and_foreign_collections_are_refused() {
    let mut s = start(common::config()).await;
    let err = s
        .client
        .share_indicators(as_caller(share("rw", &["T9999"]), WRITER))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("technique_ids[0]"), "{}", err.message());
    let mut empty = share("rw", &[]);
    empty.indicators.clear();
    let err = s.client.share_indicators(as_caller(empty, WRITER)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut bad = share("rw", &[]);
    bad.indicators.push(ind(IndicatorType::Ipv4, "300.1.1.1"));
    let err = s.client.share_indicators(as_caller(bad, WRITER)).await.unwrap_err();
    assert!(err.message().contains("indicators[2].value"), "{}", err.message());
    let err = s
        .client
        .share_indicators(as_caller(share("rw", &[]), READER))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = s
        .client
        .share_indicators(as_caller(share("nope", &[]), WRITER))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = s
        .client
        .share_indicators(as_caller(share("rw", &[]), common::DETECTOR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "detectors may not share intel");
}

#[tokio::test]
async fn attribution_service_down_means_degraded_without_technique_links() {
    // A port nobody listens on.
    let dead = free_addr();
    let config = IntelConfig {
        attribution: attackmesh_runtime::peer::PeerConfig {
            endpoints: vec![format!("http://{dead}")],
            request_timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        },
        ..common::config()
    };
    let mut s = start(config).await;
    let resp = s
        .client
        .share_indicators(as_caller(share("rw", &[]), WRITER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.attribution_status, AttributionStatus::Degraded as i32);
    assert!(resp.technique_ids.is_empty());
    assert_eq!(resp.object_ids.len(), 2, "the indicators are still shared");
    let links = taxii_objects(&s, "match[type]=relationship").await;
    assert!(links.is_empty(), "no technique links: {links:?}");
}

async fn object_count(s: &mut Running, collection: &str) -> u64 {
    let list = s
        .client
        .list_collections(as_caller(ListCollectionsRequest {}, ADMIN))
        .await
        .unwrap()
        .into_inner();
    list.collections
        .iter()
        .find(|c| c.id == collection)
        .unwrap()
        .object_count
}

#[tokio::test]
async fn shared_events_store_their_indicators_reject_invalid_ones_and_resend_idempotently() {
    let mut s = start(common::config()).await;
    let mut invalid = enriched("evt-bad", vec![ind(IndicatorType::Ipv4, "203.0.113.9")]);
    invalid.revision = 0;
    invalid.technique_ids = vec!["not-a-technique".into()];
    let events = vec![
        enriched(
            "evt-1",
            vec![
                ind(IndicatorType::Ipv4, "203.0.113.50"),
                ind(IndicatorType::Domain, "c2.example"),
            ],
        ),
        invalid,
        enriched("evt-quiet", Vec::new()),
    ];
    let request = ShareEventsRequest {
        collection_id: "rw".into(),
        events,
    };
    let first = s
        .client
        .share_events(as_caller(request.clone(), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.accepted, first.skipped), (1, 1));
    assert_eq!(first.indicator_ids.len(), 2, "{:?}", first.indicator_ids);
    assert!(first.objects_stored >= 2);
    assert_eq!(first.rejections.len(), 1);
    let rejection = &first.rejections[0];
    assert_eq!((rejection.index, rejection.event_id.as_str()), (1, "evt-bad"));
    let fields: Vec<&str> = rejection.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, vec!["technique_ids[0]", "revision"]);
    let stored = object_count(&mut s, "rw").await;
    let versions = taxii_objects(&s, "match[version]=all").await;
    assert_eq!(sighting_counts(&s).await, vec![1, 1]);
    // The live matrix counts the valid events, the one with nothing to share too.
    assert_eq!(matrix_events(&s).await, 2);

    // A redelivered batch (lost answer, sender crash) changes nothing: the events are
    // duplicates, reported as skipped, and no sighting counts the observation again.
    let again = s
        .client
        .share_events(as_caller(request.clone(), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.accepted, again.skipped, again.objects_stored), (0, 2, 0));
    assert!(again.indicator_ids.is_empty(), "{:?}", again.indicator_ids);
    assert_eq!(again.rejections.len(), 1, "invalid events are still refused");
    assert_eq!(object_count(&mut s, "rw").await, stored);
    assert_eq!(taxii_objects(&s, "match[version]=all").await, versions);
    assert_eq!(sighting_counts(&s).await, vec![1, 1]);
    assert_eq!(matrix_events(&s).await, 2, "a redelivery counts nothing again");

    // A re-attributed event (higher revision) is applied: it links the new technique, but is the
    // same observation, so the sightings keep their count. Resending it is a duplicate again.
    let mut revised = request.events[0].clone();
    revised.revision = 2;
    revised.technique_ids.push("T1053.003".into());
    let revised = ShareEventsRequest {
        collection_id: "rw".into(),
        events: vec![revised],
    };
    let applied = s
        .client
        .share_events(as_caller(revised.clone(), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((applied.accepted, applied.skipped), (1, 0));
    assert_eq!(applied.indicator_ids, first.indicator_ids);
    assert!(applied.objects_stored >= 2, "new technique links: {applied:?}");
    assert!(object_count(&mut s, "rw").await > stored);
    assert_eq!(sighting_counts(&s).await, vec![1, 1]);
    let repeat = s
        .client
        .share_events(as_caller(revised, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((repeat.accepted, repeat.skipped, repeat.objects_stored), (0, 1, 0));
}

/// The events the live matrix (served beside TAXII) counts in collection `rw`.
async fn matrix_events(s: &Running) -> u64 {
    let counts: serde_json::Value = common::client()
        .get(format!("{}/ui/api/counts?since=all&collection=rw", s.http))
        .bearer_auth(common::READER.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    counts["events"].as_u64().unwrap()
}

/// The `count` of each sighting in collection `rw`, in order.
async fn sighting_counts(s: &Running) -> Vec<u64> {
    let sightings = taxii_objects(s, "match[type]=sighting").await;
    sightings.iter().map(|s| s["count"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn share_events_is_for_services_and_takes_one_to_a_batch_of_events() {
    let mut s = start(common::config()).await;
    let one = || ShareEventsRequest {
        collection_id: String::new(),
        events: vec![enriched("evt-1", vec![ind(IndicatorType::Ipv4, "203.0.113.50")])],
    };
    let err = s.client.share_events(as_caller(one(), WRITER)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let empty = ShareEventsRequest::default();
    let err = s.client.share_events(as_caller(empty, ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let unknown = ShareEventsRequest {
        collection_id: "nope".into(),
        ..one()
    };
    let err = s.client.share_events(as_caller(unknown, ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let resp = s
        .client
        .share_events(as_caller(one(), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.accepted, 1, "empty collection id: the default collection");
}

#[tokio::test]
async fn collections_a_caller_cannot_see_are_not_found_like_missing_ones() {
    let mut s = start(common::config()).await;
    let hidden = s
        .client
        .share_indicators(as_caller(share("private", &[]), READER))
        .await
        .unwrap_err();
    let missing = s
        .client
        .share_indicators(as_caller(share("nope", &[]), READER))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        hidden.message().replace("private", "ID"),
        missing.message().replace("nope", "ID")
    );
}
