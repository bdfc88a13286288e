//! What a TAXII writer posts, checked as stix2-validator would: each invalid object (missing
//! common or type-specific properties, malformed, absurd or far-future timestamps) is a failure
//! in the status resource while the valid objects beside it are stored, and the POST answers
//! 202. Status resources are seen only by their requester and the collection's readers, and
//! `next` cursors are opaque and checked.

#![allow(clippy::unwrap_used)]

mod common;

use attackmesh_intel::stix::timestamp;
use chrono::{Duration, Utc};
use common::{ADMIN, READER, TAXII, TestServer, WRITER, client};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn server() -> (TestServer, tempfile::TempDir) {
    let (store, dir) = common::sqlite_store().await;
    (TestServer::start(common::config(), store).await, dir)
}

fn get(url: &str, who: (&str, &str)) -> reqwest::RequestBuilder {
    client().get(url).bearer_auth(who.1).header("accept", TAXII)
}

async fn post(s: &TestServer, collection: &str, who: (&str, &str), objects: Vec<Value>) -> reqwest::Response {
    client()
        .post(s.url(&format!("collections/{collection}/objects/")))
        .bearer_auth(who.1)
        .header("accept", TAXII)
        .header("content-type", TAXII)
        .body(json!({ "objects": objects }).to_string())
        .send()
        .await
        .unwrap()
}

/// POSTs to `rw` as the writer, expects 202 and answers the status resource.
async fn accepted(s: &TestServer, objects: Vec<Value>) -> Value {
    let resp = post(s, "rw", WRITER, objects).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.json().await.unwrap()
}

fn failed_ids(status: &Value) -> Vec<String> {
    let mut ids: Vec<String> = status["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn stored_ids(s: &TestServer) -> Vec<String> {
    let body: Value = get(&s.url("collections/rw/objects/?match[version]=all"), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = body
        .get("objects")
        .and_then(Value::as_array)
        .map(|o| o.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

fn with(mut object: Value, key: &str, value: Value) -> Value {
    object[key] = value;
    object
}

fn without(mut object: Value, key: &str) -> Value {
    object.as_object_mut().unwrap().remove(key);
    object
}

#[tokio::test]
async fn each_invalid_object_is_a_failure_and_the_valid_ones_are_stored() {
    let (s, _d) = server().await;
    let ind = common::indicator;
    let indicator_id = ind(1)["id"].clone();
    let relationship = json!({
        "type": "relationship", "spec_version": "2.1",
        "id": "relationship--1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
        "relationship_type": "indicates", "source_ref": indicator_id,
    });
    let invalid = vec![
        json!({"type": "indicator", "id": ind(100)["id"], "spec_version": "2.1"}),
        with(ind(101), "created", json!("yesterday")),
        with(ind(102), "modified", json!("2025-12-31T00:00:00.000Z")),
        with(
            with(ind(103), "created", json!("0000-01-01T00:00:00.000Z")),
            "modified",
            json!("0000-01-01T00:00:00.000Z"),
        ),
        with(ind(104), "modified", json!("2026-01-01T02:00:00.000+02:00")),
        with(
            with(ind(105), "created", json!("2026-01-01T00:00:00Z")),
            "modified",
            json!("2026-01-01T00:00:00Z"),
        ),
        with(ind(106), "modified", json!("2026-02-30T00:00:00.000Z")),
        without(ind(107), "pattern"),
        with(ind(108), "pattern", json!("ipv4-addr:value = '10.0.0.1'")),
        with(ind(109), "valid_until", json!("2025-01-01T00:00:00Z")),
        with(ind(110), "description", Value::Null),
        with(ind(111), "Name", json!("upper-case property")),
        with(ind(112), "labels", json!([])),
        with(ind(113), "confidence", json!(101)),
        with(ind(114), "created_by_ref", json!(indicator_id)),
        with(ind(115), "object_marking_refs", json!(["tlp:red"])),
        relationship,
    ];
    let valid = vec![ind(1), ind(2)];
    let mut envelope = invalid.clone();
    envelope.extend(valid.clone());
    let status = accepted(&s, envelope).await;
    assert_eq!(status["status"], json!("complete"));
    assert_eq!(status["success_count"], json!(2), "{status:#}");
    assert_eq!(status["failure_count"], json!(invalid.len()), "{status:#}");
    let mut expected: Vec<String> = invalid.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    expected.sort();
    assert_eq!(failed_ids(&status), expected);
    for failure in status["failures"].as_array().unwrap() {
        assert!(!failure["message"].as_str().unwrap().is_empty(), "{failure}");
    }
    let mut want: Vec<String> = valid.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    want.sort();
    assert_eq!(stored_ids(&s).await, want, "only the valid objects are served");
}

#[tokio::test]
async fn one_bad_modified_fails_that_object_not_the_post() {
    let (s, _d) = server().await;
    let bad = with(common::indicator(5), "modified", json!("not a timestamp"));
    let status = accepted(&s, vec![common::indicator(4), bad.clone(), common::indicator(6)]).await;
    assert_eq!(status["success_count"], json!(2), "{status:#}");
    assert_eq!(failed_ids(&status), vec![bad["id"].as_str().unwrap().to_owned()]);
    assert_eq!(stored_ids(&s).await.len(), 2);
}

#[tokio::test]
async fn far_future_versions_are_refused_at_write() {
    let (s, _d) = server().await;
    let last_instant = with(common::indicator(7), "modified", json!("9999-12-31T23:59:59.999Z"));
    let in_two_days = timestamp(Utc::now() + Duration::days(2));
    let ahead = with(
        with(common::indicator(8), "created", json!(in_two_days)),
        "modified",
        json!(in_two_days),
    );
    // A writer's clock a minute ahead is not absurd.
    let skewed = with(
        common::indicator(9),
        "modified",
        json!(timestamp(Utc::now() + Duration::minutes(1))),
    );
    let status = accepted(&s, vec![last_instant.clone(), ahead.clone(), skewed.clone()]).await;
    let mut expected = vec![
        last_instant["id"].as_str().unwrap().to_owned(),
        ahead["id"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(failed_ids(&status), expected, "{status:#}");
    assert_eq!(stored_ids(&s).await, vec![skewed["id"].as_str().unwrap().to_owned()]);
}

#[tokio::test]
async fn status_resources_are_seen_by_their_requester_and_the_collection_readers() {
    let (s, _d) = server().await;
    let resp = post(&s, "private", WRITER, vec![common::indicator(20)]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let status: Value = resp.json().await.unwrap();
    let url = s.url(&format!("status/{}/", status["id"].as_str().unwrap()));
    for who in [WRITER, ADMIN] {
        let polled: Value = get(&url, who).send().await.unwrap().json().await.unwrap();
        assert_eq!(polled, status);
    }
    // The reader may not read `private`: its status is as missing as one that never existed.
    let hidden = get(&url, READER).send().await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let hidden: Value = hidden.json().await.unwrap();
    let missing_id = "00000000-0000-4000-8000-000000000000";
    let missing = get(&s.url(&format!("status/{missing_id}/")), READER)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing: Value = missing.json().await.unwrap();
    let described = |v: &Value, id: &str| v["description"].as_str().unwrap().replace(id, "ID");
    assert_eq!(
        described(&hidden, status["id"].as_str().unwrap()),
        described(&missing, missing_id)
    );
    assert_eq!(hidden["title"], missing["title"]);
}

#[tokio::test]
async fn next_cursors_are_opaque_and_refused_unless_this_server_issued_them_here() {
    let (s, _d) = server().await;
    accepted(&s, (30..35).map(common::indicator).collect()).await;
    let resp = post(&s, "private", WRITER, (40..43).map(common::indicator).collect()).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let page: Value = get(&s.url("collections/rw/objects/?limit=2"), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["next"].as_str().unwrap().to_owned();
    assert!(next.parse::<i64>().is_err(), "not a row number: {next}");

    let page_two: Value = get(&s.url(&format!("collections/rw/objects/?limit=2&next={next}")), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page_two["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            common::indicator(32)["id"].as_str().unwrap(),
            common::indicator(33)["id"].as_str().unwrap()
        ]
    );

    let mut tampered = next.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (collection, cursor) in [
        ("rw", "3"),
        ("rw", "0"),
        ("rw", tampered.as_str()),
        ("private", next.as_str()),
    ] {
        let url = s.url(&format!("collections/{collection}/objects/?next={cursor}"));
        let resp = get(&url, WRITER).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{collection} {cursor}");
    }
}
