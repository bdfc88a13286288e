//! The storage contract, run against SQLite and (when configured) PostgreSQL: versions,
//! merging, filters, exclusive `added_after`, and paging while writers add objects.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use attackmesh_intel::{
    StixObject, Store,
    store::{EVENT_RETENTION_SECS, EventObjects, Query, StoredStatus, VersionMatch, WriteMode},
};
use chrono::{TimeZone, Utc};
use serde_json::json;

fn obj(v: serde_json::Value) -> StixObject {
    StixObject::from_value(v).unwrap()
}

async fn versions_filters_and_cursors(store: &Store) {
    let c = common::unique("c");
    let now = Utc::now();
    let mut v1 = common::indicator(1);
    let id = v1["id"].as_str().unwrap().to_owned();
    let results = store
        .write(
            &c,
            vec![obj(v1.clone()), obj(common::indicator(2))],
            WriteMode::Exact,
            now,
        )
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.added));
    // The same version again is not a new version.
    let again = store
        .write(&c, vec![obj(v1.clone())], WriteMode::Exact, now)
        .await
        .unwrap();
    assert!(!again[0].added);
    v1["modified"] = json!("2026-02-01T00:00:00.000Z");
    store
        .write(&c, vec![obj(v1.clone())], WriteMode::Exact, now)
        .await
        .unwrap();
    assert_eq!(store.count(&c).await.unwrap(), 2);

    let q = |versions: Vec<VersionMatch>| Query {
        object_id: Some(id.clone()),
        versions,
        ..Default::default()
    };
    let last = store.query(&c, &q(vec![])).await.unwrap();
    assert_eq!(last.records.len(), 1);
    assert_eq!(last.records[0].version, "2026-02-01T00:00:00.000Z");
    let first = store.query(&c, &q(vec![VersionMatch::First])).await.unwrap();
    assert_eq!(first.records[0].version, "2026-01-01T00:00:00.000Z");
    assert_eq!(
        store
            .query(&c, &q(vec![VersionMatch::All]))
            .await
            .unwrap()
            .records
            .len(),
        2
    );
    let at = VersionMatch::At(
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .timestamp_micros(),
    );
    assert_eq!(
        store.query(&c, &q(vec![at])).await.unwrap().records[0].version,
        "2026-01-01T00:00:00.000Z"
    );

    // added_after is exclusive and date_added strictly increases.
    let all = store
        .query(
            &c,
            &Query {
                versions: vec![VersionMatch::All],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.records.len(), 3);
    assert!(
        all.records
            .windows(2)
            .all(|w| w[0].date_added_us < w[1].date_added_us && w[0].seq < w[1].seq)
    );
    let after = Query {
        added_after_us: Some(all.records[0].date_added_us),
        versions: vec![VersionMatch::All],
        ..Default::default()
    };
    assert_eq!(store.query(&c, &after).await.unwrap().records.len(), 2);
    let typed = Query {
        types: vec!["sighting".into()],
        ..Default::default()
    };
    assert!(store.query(&c, &typed).await.unwrap().records.is_empty());

    // Other collections are separate.
    assert_eq!(store.count(&common::unique("other")).await.unwrap(), 0);

    let status = StoredStatus {
        collection: c.clone(),
        requester: "writer".into(),
        body: "{\"id\":\"s-1\"}".into(),
    };
    store.put_status("s-1", &status, now).await.unwrap();
    assert_eq!(store.status("s-1").await.unwrap(), Some(status));
    assert_eq!(store.status("s-2").await.unwrap(), None);
    let cursor = common::unique("push");
    assert_eq!(store.cursor(&cursor).await.unwrap(), 0);
    store.set_cursor(&cursor, 41).await.unwrap();
    store.set_cursor(&cursor, 42).await.unwrap();
    assert_eq!(store.cursor(&cursor).await.unwrap(), 42);
}

async fn merged_versions_accumulate(store: &Store) {
    let c = common::unique("m");
    let sid = "sighting--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";
    let sighting = |t: &str| {
        obj(
            json!({"type": "sighting", "spec_version": "2.1", "id": sid, "created": t, "modified": t,
            "sighting_of_ref": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "count": 1,
            "first_seen": t, "last_seen": t}),
        )
    };
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for (i, t) in [
        "2026-01-01T00:00:00.000Z",
        "2026-01-02T00:00:00.000Z",
        "2026-01-03T00:00:00.000Z",
    ]
    .iter()
    .enumerate()
    {
        store
            .write(
                &c,
                vec![sighting(t)],
                WriteMode::Merge,
                t0 + chrono::Duration::seconds(i as i64),
            )
            .await
            .unwrap();
    }
    let all = store
        .query(
            &c,
            &Query {
                versions: vec![VersionMatch::All],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.records.len(), 3, "one new version per observation");
    let latest = store.query(&c, &Query::default()).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&latest.records[0].body).unwrap();
    assert_eq!(body["count"], json!(3));
    assert_eq!(body["first_seen"], json!("2026-01-01T00:00:00.000Z"));
    assert_eq!(body["last_seen"], json!("2026-01-03T00:00:00.000Z"));
    assert_eq!(body["created"], json!("2026-01-01T00:00:00.000Z"));

    // Pruning keeps the newest versions only, and the latest stays the latest.
    assert_eq!(store.prune_versions(&c, &[sid.to_owned()], 2).await.unwrap(), 1);
    let all = store
        .query(
            &c,
            &Query {
                versions: vec![VersionMatch::All],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.records.len(), 2);
    assert_eq!(all.records[1].body, latest.records[0].body);
    assert_eq!(
        store.prune_versions(&c, &[sid.to_owned()], 0).await.unwrap(),
        0,
        "0 keeps everything"
    );
}

/// A reader pages with a small limit while a writer keeps adding: every object is seen exactly
/// once, in write order.
async fn paging_while_objects_arrive(store: &Store) {
    let c = common::unique("p");
    let total = 300usize;
    store
        .write(
            &c,
            (0..50).map(|n| obj(common::indicator(n))).collect(),
            WriteMode::Exact,
            Utc::now(),
        )
        .await
        .unwrap();
    let writer = {
        let (store, c) = (store.clone(), c.clone());
        tokio::spawn(async move {
            for chunk in (50..total).collect::<Vec<_>>().chunks(10) {
                let objects = chunk.iter().map(|n| obj(common::indicator(*n))).collect();
                store.write(&c, objects, WriteMode::Exact, Utc::now()).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut q = Query {
        limit: 7,
        ..Default::default()
    };
    loop {
        let page = store.query(&c, &q).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.id.clone()));
        if let Some(last) = page.records.last() {
            q.after_seq = last.seq;
        }
        if !page.more && writer.is_finished() {
            // One more read after the writer is done picks up its last objects.
            let tail = store.query(&c, &q).await.unwrap();
            seen.extend(tail.records.iter().map(|r| r.id.clone()));
            if !tail.more {
                break;
            }
            q.after_seq = tail.records.last().unwrap().seq;
        }
    }
    writer.await.unwrap();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no object twice");
    assert_eq!(seen.len(), total, "no object skipped");
    let expected: Vec<String> = (0..total)
        .map(|n| common::indicator(n)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, expected, "write order");
}

/// Events are applied once per (collection, event id, revision); the record of an applied event
/// is written with its objects and forgotten after the retention period.
async fn events_are_applied_once_per_revision(store: &Store) {
    let c = common::unique("events");
    let now = Utc::now();
    let sighting = json!({
        "type": "sighting", "spec_version": "2.1", "id": "sighting--6b0e3d4c-1f0a-5c1e-9d7a-2f4b8e9c0a11",
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
        "sighting_of_ref": common::indicator(1)["id"], "count": 1
    });
    let event = |id: &str, revision: u32, indicator: usize| EventObjects {
        event_id: id.into(),
        revision,
        objects: vec![obj(common::indicator(indicator))],
        observations: vec![obj(sighting.clone())],
        matrix: None,
        campaign: None,
    };
    let first = store
        .write_events(&c, vec![], vec![event("evt-1", 1, 1), event("evt-1", 1, 1)], now)
        .await
        .unwrap();
    assert_eq!(first.duplicates, 1, "a repeat inside one batch");
    assert_eq!(first.results.iter().filter(|r| r.added).count(), 2);
    assert_eq!(store.event_revision(&c, "evt-1").await.unwrap(), Some(1));
    assert_eq!(
        store.event_revision("other", "evt-1").await.unwrap(),
        None,
        "per collection"
    );

    let again = store
        .write_events(&c, vec![], vec![event("evt-1", 1, 1)], now)
        .await
        .unwrap();
    assert_eq!((again.duplicates, again.results.len()), (1, 0));

    // A higher revision is applied without its observations; a lower one is a duplicate.
    let revised = store
        .write_events(&c, vec![], vec![event("evt-1", 2, 2), event("evt-1", 1, 3)], now)
        .await
        .unwrap();
    assert_eq!(revised.duplicates, 1);
    let ids: Vec<&str> = revised.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![common::indicator(2)["id"].as_str().unwrap()]);
    assert_eq!(store.event_revision(&c, "evt-1").await.unwrap(), Some(2));
    let sightings = store
        .query(
            &c,
            &Query {
                types: vec!["sighting".into()],
                versions: vec![VersionMatch::All],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sightings.records.len(), 1, "the observation is counted once");

    // Past the retention period the event is forgotten by the next write to the collection.
    let later = now + chrono::Duration::seconds(EVENT_RETENTION_SECS + 1);
    store
        .write_events(&c, vec![], vec![event("evt-2", 1, 4)], later)
        .await
        .unwrap();
    assert_eq!(store.event_revision(&c, "evt-1").await.unwrap(), None);
    assert_eq!(store.event_revision(&c, "evt-2").await.unwrap(), Some(1));
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (store, _dir) = common::sqlite_store().await;
    versions_filters_and_cursors(&store).await;
    merged_versions_accumulate(&store).await;
    paging_while_objects_arrive(&store).await;
    events_are_applied_once_per_revision(&store).await;
}

#[tokio::test]
async fn postgres_store_contract() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    versions_filters_and_cursors(&store).await;
    merged_versions_accumulate(&store).await;
    paging_while_objects_arrive(&store).await;
    events_are_applied_once_per_revision(&store).await;
}

#[tokio::test]
async fn postgres_replicas_share_one_ordered_collection() {
    let Some(a) = common::postgres_store().await else {
        return;
    };
    let url = std::env::var("TEST_POSTGRES_URL").unwrap();
    let b = Store::open(&url).await.unwrap();
    assert_eq!(
        a.cursor_key(),
        b.cursor_key(),
        "cursors of one replica are redeemed by the other"
    );
    let c = common::unique("replicas");
    let write = |store: Store, range: std::ops::Range<usize>, c: String| {
        tokio::spawn(async move {
            for n in range {
                store
                    .write(&c, vec![obj(common::indicator(n))], WriteMode::Exact, Utc::now())
                    .await
                    .unwrap();
            }
        })
    };
    let (wa, wb) = (write(a.clone(), 0..60, c.clone()), write(b.clone(), 60..120, c.clone()));
    wa.await.unwrap();
    wb.await.unwrap();
    let all = a
        .query(
            &c,
            &Query {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.records.len(), 120);
    assert!(
        all.records.windows(2).all(|w| w[0].date_added_us < w[1].date_added_us),
        "date_added follows the paging order across replicas"
    );
}
