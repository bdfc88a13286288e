//! The storage contract of versions, run against SQLite and (when configured) PostgreSQL: only
//! an object's creator adds versions of it, merges build on their creator's versions only and
//! follow everyone's, a refused object costs its event and not the batch, and an older
//! database is upgraded in place.

#![allow(clippy::unwrap_used)]

mod common;

use attackmesh_intel::{
    StixObject, Store,
    store::{EventObjects, Query, WriteMode},
};
use chrono::{TimeZone, Utc};
use serde_json::json;

fn obj(v: serde_json::Value) -> StixObject {
    StixObject::from_value(v).unwrap()
}

/// An indicator `n` created by `creator` (none when empty), modified at `modified`.
fn by(creator: &str, n: usize, modified: &str) -> StixObject {
    let mut v = common::indicator(n);
    v["modified"] = json!(modified);
    if !creator.is_empty() {
        v["created_by_ref"] = json!(creator);
    }
    obj(v)
}

const OURS: &str = "identity--11111111-1111-4111-8111-111111111111";
const THEIRS: &str = "identity--22222222-2222-4222-8222-222222222222";

/// Only an object's creator adds versions of it; merges build on their creator's versions only
/// and follow everyone's; marking definitions are not versioned.
async fn creators_version_their_own_objects(store: &Store) {
    let c = common::unique("creators");
    let now = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let write = |objects: Vec<StixObject>, mode| store.write(&c, objects, mode, now);
    let first = write(vec![by(OURS, 1, "2026-01-01T00:00:00.000Z")], WriteMode::Exact)
        .await
        .unwrap();
    assert!(first[0].added && first[0].refused.is_none());
    for creator in [THEIRS, ""] {
        let other = write(vec![by(creator, 1, "2026-02-01T00:00:00.000Z")], WriteMode::Exact)
            .await
            .unwrap();
        assert!(!other[0].added, "{creator}");
        assert!(other[0].refused.as_deref().unwrap().contains("creator"), "{other:?}");
    }
    let own = write(vec![by(OURS, 1, "2026-02-01T00:00:00.000Z")], WriteMode::Exact)
        .await
        .unwrap();
    assert!(own[0].added && own[0].refused.is_none());

    // Someone else's object under the id first: a merge neither builds on it nor stays behind it.
    let mut planted = by(THEIRS, 2, "2026-03-01T00:00:00.000Z");
    planted.set("name", "planted");
    write(vec![planted], WriteMode::Exact).await.unwrap();
    let mut ours = by(OURS, 2, "2026-01-15T00:00:00.000Z");
    ours.set("labels", json!(["mitre_attack:T1046"]));
    let merged = write(vec![ours], WriteMode::Merge).await.unwrap();
    assert!(merged[0].added, "{merged:?}");
    assert_eq!(merged[0].version, "2026-03-01T00:00:00.001Z");
    let latest = store
        .query(
            &c,
            &Query {
                object_id: Some(common::indicator(2)["id"].as_str().unwrap().into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&latest.records[0].body).unwrap();
    assert_eq!((body["created_by_ref"].as_str(), body.get("name")), (Some(OURS), None));
    // Merged again: built on its own version, not on the planted one.
    let mut again = by(OURS, 2, "2026-01-16T00:00:00.000Z");
    again.set("labels", json!(["mitre_attack:T1110"]));
    write(vec![again], WriteMode::Merge).await.unwrap();
    let latest = store
        .query(
            &c,
            &Query {
                object_id: Some(common::indicator(2)["id"].as_str().unwrap().into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&latest.records[0].body).unwrap();
    assert_eq!(body["labels"], json!(["mitre_attack:T1046", "mitre_attack:T1110"]));
    assert_eq!(body.get("name"), None);

    let marking = |statement: &str| {
        obj(json!({"type": "marking-definition", "spec_version": "2.1",
            "id": "marking-definition--33333333-3333-4333-8333-333333333333",
            "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
            "definition": {"statement": statement}}))
    };
    write(vec![marking("(c) ACME")], WriteMode::Exact).await.unwrap();
    let same = write(vec![marking("(c) ACME")], WriteMode::Exact).await.unwrap();
    assert!(!same[0].added && same[0].refused.is_none());
    let changed = write(vec![marking("public")], WriteMode::Exact).await.unwrap();
    assert!(changed[0].refused.as_deref().unwrap().contains("marking definitions"));
}

/// A stored version no later version can follow refuses merges over it: in a write of events,
/// only the event touching it is left out; a merge write is written whole or not at all.
async fn refused_objects_cost_their_event_only(store: &Store) {
    let c = common::unique("refused");
    let now = Utc::now();
    store
        .write(&c, vec![by("", 1, "9999-12-31T23:59:59.999Z")], WriteMode::Exact, now)
        .await
        .unwrap();
    // Each observation adds a technique, so each would be a new version.
    let labelled = |n: usize| {
        let mut o = by("", n, "2026-01-01T00:00:00.000Z");
        o.set("labels", json!(["mitre_attack:T1046"]));
        o
    };
    let event = |id: &str, n: usize| EventObjects {
        event_id: id.into(),
        revision: 1,
        objects: vec![labelled(n), labelled(n + 100)],
        observations: Vec::new(),
        matrix: None,
        campaign: None,
    };
    let written = store
        .write_events(
            &c,
            vec![],
            vec![event("evt-ok", 2), event("evt-stuck", 1), event("evt-ok-2", 3)],
            now,
        )
        .await
        .unwrap();
    assert_eq!(written.refused.len(), 1, "{written:?}");
    assert_eq!(
        (written.refused[0].index, written.refused[0].event_id.as_str()),
        (1, "evt-stuck")
    );
    assert!(written.refused[0].reason.contains("9999-12-31T23:59:59.999Z"));
    let ids: Vec<&str> = written.results.iter().map(|r| r.id.as_str()).collect();
    let id = |n: usize| common::indicator(n)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ids,
        vec![id(2), id(102), id(3), id(103)],
        "the others, and nothing of the stuck event"
    );
    assert_eq!(
        store.event_revision(&c, "evt-stuck").await.unwrap(),
        None,
        "not recorded"
    );
    assert_eq!(store.event_revision(&c, "evt-ok-2").await.unwrap(), Some(1));
    assert_eq!(
        store.count(&c).await.unwrap(),
        5,
        "indicator 101 was rolled back with its event"
    );

    let all = store
        .write(&c, vec![labelled(4), labelled(1)], WriteMode::Merge, now)
        .await
        .unwrap();
    assert!(all.iter().all(|r| !r.added), "{all:?}");
    assert!(all[1].refused.is_some());
    assert_eq!(
        store.count(&c).await.unwrap(),
        5,
        "a merge is written whole or not at all"
    );
}

#[tokio::test]
async fn sqlite_store_versions() {
    let (store, _dir) = common::sqlite_store().await;
    creators_version_their_own_objects(&store).await;
    refused_objects_cost_their_event_only(&store).await;
}

#[tokio::test]
async fn postgres_store_versions() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    creators_version_their_own_objects(&store).await;
    refused_objects_cost_their_event_only(&store).await;
}

/// A database of an older release: statuses without requester and collection gain them, and a
/// cursor key is made once.
#[tokio::test]
async fn sqlite_store_upgrades_an_older_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intel.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE statuses (id TEXT PRIMARY KEY, created_us INTEGER NOT NULL, body TEXT NOT NULL);
             INSERT INTO statuses VALUES ('old', 0, '{}');",
        )
        .unwrap();
    }
    let url = format!("sqlite:{}", path.display());
    let store = Store::open(&url).await.unwrap();
    let old = store.status("old").await.unwrap().unwrap();
    assert_eq!((old.collection.as_str(), old.requester.as_str()), ("", ""));
    let key = store.cursor_key().to_vec();
    assert!(key.len() >= 32);
    drop(store);
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.cursor_key(), key.as_slice(), "the key survives a reopen");
}

#[tokio::test]
async fn sqlite_store_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("nested/intel.db").display());
    let store = Store::open(&url).await.unwrap();
    store
        .write("c", vec![obj(common::indicator(1))], WriteMode::Exact, Utc::now())
        .await
        .unwrap();
    store.set_cursor("push:x", 1).await.unwrap();
    drop(store);
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.count("c").await.unwrap(), 1);
    assert_eq!(store.cursor("push:x").await.unwrap(), 1);
}

/// A database whose `schema_version` is `version` (none: as the unversioned previous release
/// left it) opens, or is refused, as this release reads it.
async fn open_at_version(url: &str, set: impl AsyncFnOnce(Option<u32>)) -> Result<Store, attackmesh_intel::Error> {
    let store = Store::open(url).await.unwrap();
    store
        .write("kept", vec![obj(common::indicator(1))], WriteMode::Exact, Utc::now())
        .await
        .unwrap();
    drop(store);
    set(None).await;
    Store::open(url).await
}

#[tokio::test]
async fn sqlite_schema_version_is_recorded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intel.db");
    let url = format!("sqlite:{}", path.display());
    let version = |path: std::path::PathBuf| {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT value FROM settings WHERE name = 'schema_version'", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap()
    };
    let set = |value: Option<u32>| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        match value {
            None => conn
                .execute("DELETE FROM settings WHERE name = 'schema_version'", [])
                .unwrap(),
            Some(v) => conn
                .execute(
                    "UPDATE settings SET value = ?1 WHERE name = 'schema_version'",
                    [v.to_string()],
                )
                .unwrap(),
        };
    };
    // The previous release wrote no version: the database opens and is stamped.
    let store = open_at_version(&url, async |v| set(v)).await.unwrap();
    assert_eq!(store.count("kept").await.unwrap(), 1);
    drop(store);
    assert_eq!(version(path.clone()), "1");
    set(Some(2));
    let err = Store::open(&url).await.err().unwrap().to_string();
    assert!(
        err.contains("intel schema version 2, written by a newer attackmesh"),
        "{err}"
    );
    assert!(err.contains("reads versions up to 1"), "{err}");
    assert_eq!(version(path.clone()), "2", "the newer database is left as it is");
}

#[tokio::test]
async fn postgres_schema_version_is_recorded_and_a_newer_one_refused() {
    if common::postgres_store().await.is_none() {
        return;
    }
    let base = std::env::var("TEST_POSTGRES_URL").unwrap();
    // A schema of its own: the other tests share the database and its settings.
    let schema = format!("versions_{}", uuid::Uuid::new_v4().simple());
    let (admin, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let url = format!("{base}?options=-csearch_path%3D{schema}");
    let set = async |value: Option<u32>| {
        let sql = match value {
            None => format!("DELETE FROM {schema}.settings WHERE name = 'schema_version'"),
            Some(v) => format!("UPDATE {schema}.settings SET value = '{v}' WHERE name = 'schema_version'"),
        };
        admin.batch_execute(&sql).await.unwrap();
    };
    let store = open_at_version(&url, async |v| set(v).await).await.unwrap();
    assert_eq!(store.count("kept").await.unwrap(), 1);
    drop(store);
    let sql = format!("SELECT value FROM {schema}.settings WHERE name = 'schema_version'");
    let stored = async |admin: &tokio_postgres::Client| admin.query_one(&sql, &[]).await.unwrap().get::<_, String>(0);
    assert_eq!(stored(&admin).await, "1");
    set(Some(2)).await;
    let err = Store::open(&url).await.err().unwrap().to_string();
    assert!(
        err.contains("intel schema version 2, written by a newer attackmesh"),
        "{err}"
    );
    assert_eq!(stored(&admin).await, "2", "the newer database is left as it is");
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
