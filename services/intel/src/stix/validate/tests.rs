use attackmesh::proto::{EnrichedEvent, Indicator, IndicatorType};
use chrono::TimeZone;
use serde_json::json;

use super::{types::stix_pattern_shape, *};
use crate::stix::{StixOptions, Tlp, TlpVersion, stix_objects_for};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn indicator() -> Value {
    json!({
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
        "pattern": "[ipv4-addr:value = '10.0.0.1']", "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z"
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn problem(v: &Value) -> String {
    check(v, now()).expect_err(&v.to_string())
}

#[test]
fn what_attackmesh_builds_is_valid() {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let event = EnrichedEvent {
        event_id: "e".into(),
        event_type: "port_scan".into(),
        source_service: "sensor".into(),
        technique_ids: vec!["T1046".into()],
        confidence_score: 0.5,
        related_indicators: vec![
            Indicator {
                r#type: IndicatorType::Ipv4 as i32,
                value: "203.0.113.5".into(),
            },
            Indicator {
                r#type: IndicatorType::Url as i32,
                value: "http://evil.example/it's".into(),
            },
        ],
        revision: 1,
        ..Default::default()
    };
    for version in [TlpVersion::V1, TlpVersion::V2] {
        let options = StixOptions {
            tlp: Tlp::Green,
            tlp_version: version,
            ..Default::default()
        };
        let mut objects = options.base_objects();
        objects.extend(stix_objects_for(&event, &kb, &options));
        assert!(objects.len() > 4);
        for object in objects {
            let value = Value::Object(object.0.clone());
            assert_eq!(check(&value, Utc::now()), Ok(object), "{value}");
        }
    }
}

#[test]
fn the_mandatory_checks_refuse_what_stix2_validator_refuses() {
    let ind = indicator;
    let cases = [
        (json!([1]), "JSON object"),
        (
            json!({"type": "indicator", "id": ind()["id"], "spec_version": "2.1"}),
            "`created` is missing",
        ),
        (without(ind(), "type"), "`type` is missing"),
        (with(ind(), "type", json!("IN")), "`type`"),
        (
            with(ind(), "id", json!("malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f")),
            "`id`",
        ),
        (
            with(ind(), "id", json!("indicator--8e2e2d2b17d44cbf938f98ee46b3cd3f")),
            "`id`",
        ),
        (
            with(ind(), "id", json!("indicator--8e2e2d2b-17d4-0cbf-938f-98ee46b3cd3f")),
            "`id`",
        ),
        (without(ind(), "spec_version"), "`spec_version` is missing"),
        (with(ind(), "spec_version", json!("2.0")), "only STIX 2.1"),
        (with(ind(), "created", json!("yesterday")), "`created`"),
        (with(ind(), "created", json!("2026-01-01T00:00:00Z")), "millisecond"),
        (
            with(ind(), "modified", json!("2026-01-01T00:00:00.000+00:00")),
            "`modified`",
        ),
        (with(ind(), "modified", json!("2026-01-01t00:00:00.000z")), "`modified`"),
        (
            with(ind(), "modified", json!("2026-02-29T00:00:00.000Z")),
            "no real instant",
        ),
        (
            with(ind(), "modified", json!("2025-12-31T23:59:59.999Z")),
            "precedes `created`",
        ),
        (
            with(ind(), "modified", json!("9999-12-31T23:59:59.999Z")),
            "ahead of this server's clock",
        ),
        (
            with(ind(), "created", json!("0000-01-01T00:00:00.000Z")),
            "before year 0001",
        ),
        (with(ind(), "modified", json!(20260101)), "timestamp string"),
        (without(ind(), "pattern"), "`pattern` is required"),
        (without(ind(), "valid_from"), "`valid_from` is required"),
        (with(ind(), "valid_from", json!("soon")), "`valid_from`"),
        (
            with(ind(), "valid_until", json!("2025-01-01T00:00:00Z")),
            "`valid_until`",
        ),
        (
            with(ind(), "pattern", json!("ipv4-addr:value = '1.2.3.4'")),
            "`pattern`",
        ),
        (
            with(ind(), "pattern", json!("[ipv4-addr:value = '1.2.3.4'")),
            "`pattern`",
        ),
        (
            with(ind(), "pattern", json!("[ipv4-addr:value = '1.2.3.4]")),
            "`pattern`",
        ),
        (with(ind(), "pattern", json!(7)), "`pattern` must be a string"),
        (with(ind(), "description", Value::Null), "null"),
        (with(ind(), "labels", json!([])), "empty list"),
        (with(ind(), "labels", json!([1])), "`labels`"),
        (with(ind(), "Name", json!("x")), "property name"),
        (with(ind(), "ab", json!("x")), "property name"),
        (with(ind(), "confidence", json!(101)), "`confidence`"),
        (with(ind(), "confidence", json!(50.5)), "`confidence`"),
        (with(ind(), "revoked", json!("no")), "`revoked`"),
        (
            with(
                ind(),
                "created_by_ref",
                json!("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"),
            ),
            "identity",
        ),
        (
            with(ind(), "object_marking_refs", json!(["tlp:red"])),
            "marking-definition",
        ),
        (with(ind(), "sample_refs", json!(["nope"])), "`sample_refs`"),
        (
            with(ind(), "external_references", json!([{"url": "https://x"}])),
            "source_name",
        ),
        (
            with(ind(), "kill_chain_phases", json!([{"phase_name": "x"}])),
            "kill_chain_name",
        ),
        (
            with(ind(), "granular_markings", json!([{"selectors": ["name"]}])),
            "granular_markings",
        ),
        (with(ind(), "payload_hex", json!("abc")), "hex"),
        (with(ind(), "payload_bin", json!("***")), "base64"),
        (with(ind(), "type", json!("bundle")), "bundle"),
    ];
    for (value, expected) in cases {
        let why = problem(&value);
        assert!(why.contains(expected), "{value}: {why}");
    }
}

#[test]
fn type_specific_properties_are_required() {
    let common = |ty: &str| {
        json!({"type": ty, "spec_version": "2.1", "id": format!("{ty}--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"),
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z"})
    };
    for (ty, missing) in [
        ("attack-pattern", "name"),
        ("relationship", "relationship_type"),
        ("sighting", "sighting_of_ref"),
        ("report", "published"),
        ("malware", "is_family"),
        ("note", "content"),
    ] {
        assert!(problem(&common(ty)).contains(&format!("`{missing}`")), "{ty}");
    }
    let relationship = with(
        with(
            with(common("relationship"), "relationship_type", json!("indicates")),
            "source_ref",
            indicator()["id"].clone(),
        ),
        "target_ref",
        json!("attack-pattern--7e150503-88e7-4861-866b-ff1ac82c4475"),
    );
    assert!(check(&relationship, now()).is_ok());
    assert!(
        problem(&with(relationship.clone(), "relationship_type", json!("Indicates"))).contains("relationship_type")
    );
    assert!(
        problem(&with(
            relationship,
            "target_ref",
            json!("sighting--7e150503-88e7-4861-866b-ff1ac82c4475")
        ))
        .contains("may not reference a `sighting`")
    );
    let sighting = with(common("sighting"), "sighting_of_ref", indicator()["id"].clone());
    assert!(check(&with(sighting.clone(), "count", json!(3)), now()).is_ok());
    assert!(problem(&with(sighting.clone(), "count", json!(1_000_000_000))).contains("`count`"));
    let seen = with(
        with(sighting, "first_seen", json!("2026-01-02T00:00:00Z")),
        "last_seen",
        json!("2026-01-01T00:00:00Z"),
    );
    assert!(problem(&seen).contains("`last_seen`"));
    let family = with(common("malware"), "is_family", json!(true));
    assert!(problem(&family).contains("`name`"));
    assert!(check(&with(family, "name", json!("x")), now()).is_ok());
}

#[test]
fn observables_and_custom_objects_need_only_what_their_kind_needs() {
    let ip = json!({"type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "10.0.0.1"});
    assert!(check(&ip, now()).is_ok());
    assert!(check(&with(ip.clone(), "spec_version", json!("2.1")), now()).is_ok());
    assert!(problem(&with(ip.clone(), "spec_version", json!("2.0"))).contains("2.1"));
    assert!(problem(&without(ip, "value")).contains("`value`"));
    let file = json!({"type": "file", "id": "file--ff26c055-6336-5bc5-b98d-13d6226742dd"});
    assert!(problem(&file).contains("hashes, name"));
    let custom = json!({"type": "x-acme-thing", "id": "x-acme-thing--ff26c055-6336-5bc5-b98d-13d6226742dd", "spec_version": "2.1"});
    assert!(check(&custom, now()).is_ok(), "a custom observable");
    let custom_sdo = with(custom, "created", json!("2026-01-01T00:00:00.000Z"));
    assert!(problem(&custom_sdo).contains("`modified` is missing"));
    let marking = json!({"type": "marking-definition", "spec_version": "2.1",
        "id": "marking-definition--ff26c055-6336-5bc5-b98d-13d6226742dd", "created": "2026-01-01T00:00:00Z"});
    assert!(problem(&marking).contains("definition, extensions"));
    let statement = with(
        with(marking.clone(), "definition_type", json!("statement")),
        "definition",
        json!({"statement": "(c) ACME"}),
    );
    assert!(check(&statement, now()).is_ok());
    assert!(problem(&with(marking, "definition", json!({"statement": "x"}))).contains("go together"));
}

#[test]
fn timestamps_are_utc_real_and_bounded() {
    let ok = |t: &str, millis| timestamp_of(&json!(t), millis).is_ok();
    assert!(ok("2026-01-01T00:00:00Z", false));
    assert!(!ok("2026-01-01T00:00:00Z", true));
    assert!(ok("2026-01-01T00:00:00.123Z", true));
    assert!(ok("2026-01-01T00:00:00.123456789Z", true));
    assert!(ok("0001-01-01T00:00:00.000Z", true));
    assert!(ok("9999-12-31T23:59:59.999Z", true));
    for bad in [
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00.12Z",
        "2026-01-01 00:00:00.123Z",
        "2026-13-01T00:00:00.123Z",
        "2026-01-01T24:00:00.123Z",
        "0000-12-31T00:00:00.123Z",
        "+10000-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.1é3Z",
        "é026-01-01T00:00:00.123Z",
        "",
    ] {
        assert!(!ok(bad, true), "{bad}");
    }
    // Ahead of the clock: a little is a fast clock, a lot is refused.
    let ahead = |secs: i64| {
        let t = crate::stix::timestamp(now() + chrono::TimeDelta::seconds(secs));
        check(
            &with(with(indicator(), "created", json!(t)), "modified", json!(t)),
            now(),
        )
    };
    assert!(ahead(MAX_CLOCK_SKEW_SECS).is_ok());
    assert!(ahead(MAX_CLOCK_SKEW_SECS + 1).is_err());
}

#[test]
fn patterns_need_the_shape_of_observation_expressions() {
    for good in [
        "[ipv4-addr:value = '10.0.0.1']",
        "([a:b = 'x'] AND [c:d = 'y']) WITHIN 5 SECONDS",
        "[file:name IN ('a]', 'b\\'c')] START t'2026-01-01T00:00:00Z' STOP t'2026-01-02T00:00:00Z'",
    ] {
        assert_eq!(stix_pattern_shape(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "a",
        "[a:b = 'x'",
        "[a:b = 'x]",
        "(a:b = 'x')",
        "[a:b = 'x'])",
        "x [a:b = 'y']",
    ] {
        assert!(stix_pattern_shape(bad).is_err(), "{bad}");
    }
}

#[test]
fn identifiers() {
    assert!(is_identifier("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"));
    assert!(is_identifier("x-acme-thing--8e2e2d2b-17d4-5cbf-a38f-98ee46b3cd3f"));
    for bad in [
        "indicator--8e2e2d2b-17d4-4cbf-738f-98ee46b3cd3f",
        "indicator--{8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f}",
        "Indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "ab--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "indicator-8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "indicator--",
    ] {
        assert!(!is_identifier(bad), "{bad}");
    }
    assert!(is_identifier_of("tool--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "tool"));
    assert!(!is_identifier_of(
        "tool--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "malware"
    ));
}
