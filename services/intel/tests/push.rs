//! Push to a remote TAXII 2.1 collection (another attackmesh TAXII server on 127.0.0.1:0):
//! every version arrives, the cursor persists, and an unreachable remote loses nothing.

#![allow(clippy::unwrap_used)]

mod common;

use attackmesh_intel::{
    StixObject,
    config::PushTarget,
    push::Pusher,
    store::{Query, VersionMatch, WriteMode},
};
use common::{TestServer, WRITER};

fn target(name: &str, url: String, token: &std::path::Path) -> PushTarget {
    serde_json::from_value(serde_json::json!({
        "name": name, "url": url, "token_file": token, "batch": 7, "interval": "100ms", "timeout": "5s"
    }))
    .unwrap()
}

#[tokio::test]
async fn new_versions_reach_the_remote_once_and_the_cursor_persists() {
    let (remote_store, _rd) = common::sqlite_store().await;
    let remote = TestServer::start(common::config(), remote_store).await;
    let (local, _ld) = common::sqlite_store().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{}\n", WRITER.1)).unwrap();
    let objects: Vec<StixObject> = (0..20)
        .map(|n| StixObject::from_value(common::indicator(n)).unwrap())
        .collect();
    local
        .write("src", objects, WriteMode::Exact, chrono::Utc::now())
        .await
        .unwrap();

    let t = target("remote", remote.url("collections/rw/"), &token);
    let mut pusher = Pusher::new(t.clone(), "src".into(), local.clone()).unwrap();
    let mut delivered = 0;
    loop {
        match pusher.push_once().await.unwrap() {
            0 => break,
            n => delivered += n,
        }
    }
    assert_eq!(delivered, 20);
    assert_eq!(remote.intel.store().count("rw").await.unwrap(), 20);

    // A new version is pushed; what was delivered is not sent again, even by a new pusher.
    let mut v2 = common::indicator(3);
    v2["modified"] = serde_json::json!("2026-05-01T00:00:00.000Z");
    local
        .write(
            "src",
            vec![StixObject::from_value(v2).unwrap()],
            WriteMode::Exact,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let mut again = Pusher::new(t, "src".into(), local.clone()).unwrap();
    assert_eq!(again.push_once().await.unwrap(), 1);
    assert_eq!(again.push_once().await.unwrap(), 0);
    let all = Query {
        versions: vec![VersionMatch::All],
        limit: 100,
        ..Default::default()
    };
    assert_eq!(remote.intel.store().query("rw", &all).await.unwrap().records.len(), 21);
}

#[tokio::test]
async fn refused_or_unreachable_remotes_keep_the_cursor() {
    let (local, _ld) = common::sqlite_store().await;
    local
        .write(
            "src",
            vec![StixObject::from_value(common::indicator(1)).unwrap()],
            WriteMode::Exact,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-valid-token").unwrap();
    let dead = attackmesh_testkit::free_addr();
    let mut down = Pusher::new(
        target("down", format!("http://{dead}/api1/collections/x/"), &token),
        "src".into(),
        local.clone(),
    )
    .unwrap();
    assert!(down.push_once().await.is_err());
    assert_eq!(local.cursor("push:down:src").await.unwrap(), 0);

    let (remote_store, _rd) = common::sqlite_store().await;
    let remote = TestServer::start(common::config(), remote_store).await;
    let mut refused = Pusher::new(
        target("refused", remote.url("collections/rw/"), &token),
        "src".into(),
        local.clone(),
    )
    .unwrap();
    let err = refused.push_once().await.unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("not-a-valid-token"), "credentials never appear in errors");
    assert_eq!(local.cursor("push:refused:src").await.unwrap(), 0);
}

#[tokio::test]
async fn one_postgres_replica_holds_a_push_lease_until_it_is_gone() {
    let Some(a) = common::postgres_store().await else {
        return;
    };
    let b = common::postgres_store().await.unwrap();
    let name = common::unique("push:lease");
    let (mut first, mut second) = (a.lease(&name), b.lease(&name));
    assert!(first.hold().await.unwrap());
    assert!(!second.hold().await.unwrap(), "a second replica does not push");
    assert!(first.hold().await.unwrap(), "the holder keeps it");
    let mut other = a.lease(&common::unique("push:other"));
    assert!(other.hold().await.unwrap(), "another target's lease is its own");
    drop(first);
    // The lock goes with the holder's session, which ends when its connection closes.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !second.hold().await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the lease never came free");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
