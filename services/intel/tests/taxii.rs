//! The TAXII 2.1 server over real HTTP on 127.0.0.1:0: authentication and per-collection
//! permissions, media types, size limits, filters, and paging while objects arrive.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{ADMIN, DETECTOR, READER, TAXII, TestServer, WRITER, client};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn server() -> (TestServer, tempfile::TempDir) {
    let (store, dir) = common::sqlite_store().await;
    (TestServer::start(common::config(), store).await, dir)
}

fn get(url: &str, who: (&str, &str)) -> reqwest::RequestBuilder {
    client().get(url).basic_auth(who.0, Some(who.1)).header("accept", TAXII)
}

fn post(url: &str, who: (&str, &str), body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .bearer_auth(who.1)
        .header("accept", TAXII)
        .header("content-type", TAXII)
        .body(body.to_string())
}

async fn error_body(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], TAXII);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["http_status"], json!(status.as_u16().to_string()), "{body}");
    assert!(body["title"].is_string());
    body
}

#[tokio::test]
async fn discovery_and_collections_follow_the_caller() {
    let (s, _d) = server().await;
    let resp = get(&format!("{}/taxii2/", s.base), READER).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], TAXII);
    let d: Value = resp.json().await.unwrap();
    assert_eq!(d["api_roots"], json!(["/intel/"]));
    let root: Value = get(&s.url(""), READER).send().await.unwrap().json().await.unwrap();
    assert_eq!(root["versions"], json!([TAXII]));
    assert_eq!(root["max_content_length"], json!(64 * 1024));
    let reader: Value = get(&s.url("collections/"), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reader["collections"].as_array().unwrap().len(),
        1,
        "the private collection is invisible"
    );
    assert_eq!(reader["collections"][0]["can_write"], json!(false));
    let writer: Value = get(&s.url("collections/"), WRITER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(writer["collections"].as_array().unwrap().len(), 2);
    let resp = get(&s.url("collections/private/"), READER).send().await.unwrap();
    error_body(resp, StatusCode::NOT_FOUND).await;
    let resp = get(&s.url("collections/rw/"), ADMIN).send().await.unwrap();
    let c: Value = resp.json().await.unwrap();
    assert_eq!(
        (c["can_read"].clone(), c["can_write"].clone()),
        (json!(true), json!(true))
    );
}

#[tokio::test]
async fn wrong_credentials_are_401_with_a_challenge() {
    let (s, _d) = server().await;
    for req in [
        client().get(s.url("collections/")).header("accept", TAXII),
        client()
            .get(s.url("collections/"))
            .basic_auth(READER.0, Some("wrong"))
            .header("accept", TAXII),
        client()
            .get(s.url("collections/"))
            .basic_auth("someone-else", Some(READER.1))
            .header("accept", TAXII),
        client()
            .get(s.url("collections/"))
            .bearer_auth("wrong")
            .header("accept", TAXII),
    ] {
        let resp = req.send().await.unwrap();
        assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("Basic"));
        error_body(resp, StatusCode::UNAUTHORIZED).await;
    }
    let resp = get(&s.url("collections/"), DETECTOR).send().await.unwrap();
    error_body(resp, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn malformed_paths_are_taxii_400s() {
    let (s, _d) = server().await;
    // `%FF` decodes to bytes that are not UTF-8: no collection, object or status can be named so.
    for path in [
        "collections/%FF/",
        "collections/rw/objects/%FF/",
        "collections/rw/objects/%FF/versions/",
        "status/%FF/",
    ] {
        let resp = get(&s.url(path), READER).send().await.unwrap();
        error_body(resp, StatusCode::BAD_REQUEST).await;
    }
    let resp = post(&s.url("collections/%FF/objects/"), WRITER, &json!({"objects": []}))
        .send()
        .await
        .unwrap();
    error_body(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn read_only_collection_refuses_writes_with_403() {
    let (s, _d) = server().await;
    let envelope = json!({"objects": [common::indicator(1)]});
    let resp = post(&s.url("collections/rw/objects/"), READER, &envelope)
        .send()
        .await
        .unwrap();
    error_body(resp, StatusCode::FORBIDDEN).await;
    let resp = post(&s.url("collections/rw/objects/"), WRITER, &envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["status"], json!("complete"));
    assert_eq!(status["success_count"], json!(1));
    let polled: Value = get(&s.url(&format!("status/{}/", status["id"].as_str().unwrap())), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(polled, status);
}

#[tokio::test]
async fn media_types_are_enforced() {
    let (s, _d) = server().await;
    for accept in ["application/json", "application/taxii+json;version=2.0", "text/html"] {
        let resp = client()
            .get(s.url("collections/"))
            .bearer_auth(READER.1)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        error_body(resp, StatusCode::NOT_ACCEPTABLE).await;
    }
    let resp = client()
        .post(s.url("collections/rw/objects/"))
        .bearer_auth(WRITER.1)
        .header("accept", TAXII)
        .header("content-type", "application/json")
        .body(json!({"objects": []}).to_string())
        .send()
        .await
        .unwrap();
    error_body(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn oversized_bodies_are_413_declared_or_streamed() {
    let (s, _d) = server().await;
    let big = json!({"objects": (0..2000).map(common::indicator).collect::<Vec<_>>()});
    let resp = post(&s.url("collections/rw/objects/"), WRITER, &big)
        .send()
        .await
        .unwrap();
    error_body(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Chunked, without Content-Length: the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(big.to_string().into_bytes())];
    let resp = client()
        .post(s.url("collections/rw/objects/"))
        .bearer_auth(WRITER.1)
        .header("accept", TAXII)
        .header("content-type", TAXII)
        .body(reqwest::Body::wrap_stream(tokio_stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    error_body(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(s.intel.store().count("rw").await.unwrap(), 0, "nothing half-applied");
}

#[tokio::test]
async fn invalid_objects_are_reported_as_failures() {
    let (s, _d) = server().await;
    let mut old = common::indicator(3);
    old["spec_version"] = json!("2.0");
    let envelope = json!({"objects": [common::indicator(2), {"type": "indicator", "id": "nope"}, old]});
    let status: Value = post(&s.url("collections/rw/objects/"), WRITER, &envelope)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["success_count"], json!(1));
    assert_eq!(status["failure_count"], json!(2));
    let resp = post(
        &s.url("collections/rw/objects/"),
        WRITER,
        &json!({"not": "an envelope"}),
    )
    .send()
    .await
    .unwrap();
    error_body(resp, StatusCode::BAD_REQUEST).await;
}

async fn add(s: &TestServer, objects: Vec<Value>) {
    let resp = post(
        &s.url("collections/rw/objects/"),
        WRITER,
        &json!({ "objects": objects }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn filters_versions_and_manifest() {
    let (s, _d) = server().await;
    let mut a = common::indicator(10);
    add(&s, vec![a.clone(), common::indicator(11)]).await;
    a["modified"] = json!("2026-03-01T00:00:00.000Z");
    add(&s, vec![a.clone()]).await;
    let id = a["id"].as_str().unwrap();

    let resp = get(&s.url("collections/rw/objects/?match[version]=all"), READER)
        .send()
        .await
        .unwrap();
    let first = resp.headers()["x-taxii-date-added-first"].to_str().unwrap().to_owned();
    let last = resp.headers()["x-taxii-date-added-last"].to_str().unwrap().to_owned();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&first).is_ok() && first < last,
        "{first} {last}"
    );
    let all: Value = resp.json().await.unwrap();
    assert_eq!(all["objects"].as_array().unwrap().len(), 3);

    let latest: Value = get(&s.url("collections/rw/objects/"), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        latest["objects"].as_array().unwrap().len(),
        2,
        "latest versions only by default"
    );

    let url = s.url(&format!("collections/rw/objects/?match[id]={id}&match[version]=first"));
    let one: Value = get(&url, READER).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["objects"][0]["modified"], json!("2026-01-01T00:00:00.000Z"));

    // added_after is exclusive: after the first object's date, the first object is gone.
    let url = s.url(&format!(
        "collections/rw/objects/?match[version]=all&added_after={first}"
    ));
    let after: Value = get(&url, READER).send().await.unwrap().json().await.unwrap();
    assert_eq!(after["objects"].as_array().unwrap().len(), 2);

    let none: Value = get(&s.url("collections/rw/objects/?match[type]=malware"), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!({"more": false}));

    let versions: Value = get(&s.url(&format!("collections/rw/objects/{id}/versions/")), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        versions["versions"],
        json!(["2026-01-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"])
    );
    let object: Value = get(&s.url(&format!("collections/rw/objects/{id}/")), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(object["objects"][0]["modified"], json!("2026-03-01T00:00:00.000Z"));
    let resp = get(
        &s.url("collections/rw/objects/indicator--00000000-0000-4000-8000-000000000000/"),
        READER,
    )
    .send()
    .await
    .unwrap();
    error_body(resp, StatusCode::NOT_FOUND).await;

    let manifest: Value = get(&s.url("collections/rw/manifest/"), READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &manifest["objects"][1];
    assert_eq!(m["id"], json!(id));
    assert_eq!(m["version"], json!("2026-03-01T00:00:00.000Z"));
    assert_eq!(m["media_type"], json!("application/stix+json;version=2.1"));

    for bad in ["limit=0", "added_after=yesterday", "next=zzz", "match[version]=newest"] {
        let resp = get(&s.url(&format!("collections/rw/objects/?{bad}")), READER)
            .send()
            .await
            .unwrap();
        error_body(resp, StatusCode::BAD_REQUEST).await;
    }
}

/// A client pages with `limit` + `next` while a writer keeps posting, and at the end of the
/// data resumes with `added_after` = the last `X-TAXII-Date-Added-Last`: it sees every object
/// exactly once, in order.
#[tokio::test]
async fn paging_while_objects_arrive_has_no_duplicates_or_gaps() {
    let (s, _d) = server().await;
    add(&s, (0..40).map(common::indicator).collect()).await;
    let writer = {
        let url = s.url("collections/rw/objects/");
        tokio::spawn(async move {
            for n in 40..160 {
                let resp = post(&url, WRITER, &json!({"objects": [common::indicator(n)]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::ACCEPTED);
            }
        })
    };
    let (mut seen, mut next, mut after, mut last_date) = (Vec::new(), None::<String>, None::<String>, None::<String>);
    let mut quiet_polls = 0;
    loop {
        let mut url = s.url("collections/rw/objects/?limit=9");
        if let Some(a) = &after {
            url.push_str(&format!("&added_after={a}"));
        }
        if let Some(n) = &next {
            url.push_str(&format!("&next={n}"));
        }
        let resp = get(&url, READER).send().await.unwrap();
        if let Some(d) = resp.headers().get("x-taxii-date-added-last") {
            last_date = Some(d.to_str().unwrap().to_owned());
        }
        let page: Value = resp.json().await.unwrap();
        let objects = page["objects"].as_array().cloned().unwrap_or_default();
        assert!(objects.len() <= 9);
        seen.extend(objects.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        if page["more"] == json!(true) {
            next = Some(page["next"].as_str().unwrap().to_owned());
            continue;
        }
        next = None;
        after = last_date.clone();
        if objects.is_empty() {
            if writer.is_finished() {
                quiet_polls += 1;
                if quiet_polls > 1 {
                    break;
                }
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    writer.await.unwrap();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an object was returned twice");
    let expected: Vec<String> = (0..160)
        .map(|n| common::indicator(n)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, expected, "objects skipped or out of order");
}

/// What a remote export sink does (attackmesh on another host, with an admin token): POST the
/// objects `stix_objects_for` builds. attackmesh's own objects merge into new versions exactly
/// as in-process ingest does. (Other writers may not version them: see tests/provenance.rs.)
#[tokio::test]
async fn posted_attackmesh_objects_merge_like_local_ingest() {
    let (s, _d) = server().await;
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let options = s.intel.options().clone();
    let event = |technique: &str| attackmesh::proto::EnrichedEvent {
        event_id: "e".into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: 1_780_000_000,
            nanos: 0,
        }),
        source_service: "sensor".into(),
        event_type: "port_scan".into(),
        technique_ids: vec![technique.into()],
        confidence_score: 0.5,
        related_indicators: vec![attackmesh::proto::Indicator {
            r#type: attackmesh::proto::IndicatorType::Ipv4 as i32,
            value: "203.0.113.200".into(),
        }],
        revision: 1,
        ..Default::default()
    };
    for technique in ["T1046", "T1110"] {
        let mut objects = options.base_objects();
        objects.extend(attackmesh_intel::stix_objects_for(&event(technique), &kb, &options));
        let resp = post(&s.url("collections/rw/objects/"), ADMIN, &json!({ "objects": objects }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let url = s.url("collections/rw/objects/?match[type]=indicator,sighting");
    let latest: Value = get(&url, READER).send().await.unwrap().json().await.unwrap();
    let objects = latest["objects"].as_array().unwrap();
    let indicator = objects.iter().find(|o| o["type"] == "indicator").unwrap();
    assert_eq!(indicator["labels"], json!(["mitre_attack:T1046", "mitre_attack:T1110"]));
    let sighting = objects.iter().find(|o| o["type"] == "sighting").unwrap();
    assert_eq!(sighting["count"], json!(2));
}
