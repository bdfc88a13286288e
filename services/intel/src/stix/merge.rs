//! New versions of objects attackmesh produces: when an indicator, relationship or sighting with
//! the same deterministic id is already stored, the new observation is folded into it and a new
//! version (later `modified`, same `created`) is written only when something changed.
//!
//! A merge builds only on a version by the same creator (`created_by_ref`) as the new object:
//! a version someone else stored under the same id is never its base, only a date the new
//! version must follow. Markings and provenance are never dropped: the base's
//! `object_marking_refs`, `granular_markings` and `created_by_ref` stay, and the new object's are
//! added. Timestamp arithmetic is checked: when no millisecond up to the last one STIX can
//! express follows the latest stored version, the merge is refused.
//!
//! Pure functions: stores call [`merge`] inside the transaction that reads the stored versions,
//! so concurrent writers never lose an observation.

use serde_json::{Map, Value};

use super::{LATEST_VERSION_US, StixObject, parse_micros, timestamp};

/// A stored version and its `modified` (or `created`) in microseconds since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// The object.
    pub object: &'a StixObject,
    /// Its version.
    pub version_us: i64,
}

/// The version to store for `new`, given the newest stored version by the same creator
/// (`base`) and the version of the newest stored version of the id by anyone (`latest_us`);
/// `Ok(None)` when nothing changed. `modified` of a new version is `now`, or one millisecond
/// after `latest_us` when the clock has not moved past it. `Err` says why no later version can
/// be written.
pub fn merge(
    base: Option<Stored<'_>>,
    latest_us: Option<i64>,
    new: StixObject,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StixObject>, String> {
    let Some(base) = base else {
        // Nothing of ours to build on: the new object as it is, after whatever else is stored.
        return match latest_us {
            // Unversioned objects (marking definitions, observables): the stored one stays.
            Some(_) if !new.0.contains_key("modified") => Ok(None),
            Some(latest) if new.version().and_then(parse_micros).is_none_or(|v| v <= latest) => {
                let mut new = new;
                new.set(
                    "modified",
                    timestamp(super::micros_to_datetime(next_version(&new, latest, now)?)),
                );
                Ok(Some(new))
            }
            _ => Ok(Some(new)),
        };
    };
    let old = base.object;
    let mut merged = old.clone();
    match new.object_type() {
        "indicator" => merge_indicator(&mut merged, &new),
        "sighting" => merge_sighting(&mut merged, &new),
        // Relationships, identities and markings carry nothing that accumulates.
        _ => {}
    }
    keep_markings_and_provenance(&mut merged, &new);
    let latest = latest_us.unwrap_or(base.version_us).max(base.version_us);
    // Unchanged and still the latest version: nothing to write. A base that another creator's
    // version has overtaken gets a new version even so, so that attackmesh's is the latest.
    if merged == *old && latest == base.version_us {
        return Ok(None);
    }
    merged.set(
        "modified",
        timestamp(super::micros_to_datetime(next_version(&merged, latest, now)?)),
    );
    Ok(Some(merged))
}

/// The `modified` of a version after `latest_us`: `now`, or the next millisecond (STIX
/// timestamps have millisecond precision here) when the clock has not moved past it.
fn next_version(object: &StixObject, latest_us: i64, now: chrono::DateTime<chrono::Utc>) -> Result<i64, String> {
    let now_us = now.timestamp_micros();
    let latest_ms = latest_us.div_euclid(1000);
    let next = if now_us.div_euclid(1000) > latest_ms {
        Some(now_us)
    } else {
        latest_ms.checked_add(1).and_then(|ms| ms.checked_mul(1000))
    };
    next.filter(|us| *us <= LATEST_VERSION_US).ok_or_else(|| {
        format!(
            "`{}` cannot get a new version: a stored version is dated {}, and no later one can follow it",
            object.id(),
            crate::stix::timestamp(super::micros_to_datetime(latest_us))
        )
    })
}

/// Markings and `created_by_ref` of the base stay; the new object's are added.
fn keep_markings_and_provenance(merged: &mut StixObject, new: &StixObject) {
    union_values(&mut merged.0, &new.0, "object_marking_refs");
    union_values(&mut merged.0, &new.0, "granular_markings");
    if merged.str("created_by_ref").is_empty() && !new.str("created_by_ref").is_empty() {
        merged.set("created_by_ref", new.str("created_by_ref").to_owned());
    }
}

fn merge_indicator(merged: &mut StixObject, new: &StixObject) {
    union_strings(&mut merged.0, &new.0, "labels");
    union_strings(&mut merged.0, &new.0, "indicator_types");
    // A linked technique makes an anomaly malicious.
    if let Some(Value::Array(types)) = merged.0.get_mut("indicator_types")
        && types.iter().any(|t| t == "malicious-activity")
    {
        types.retain(|t| t != "anomalous-activity");
    }
    union_values(&mut merged.0, &new.0, "kill_chain_phases");
    union_values(&mut merged.0, &new.0, "external_references");
    let old_conf = merged.0.get("confidence").and_then(Value::as_i64).unwrap_or(0);
    let new_conf = new.0.get("confidence").and_then(Value::as_i64).unwrap_or(0);
    if new_conf > old_conf {
        merged.set("confidence", new_conf);
    }
    if earlier(new.str("valid_from"), merged.str("valid_from")) {
        merged.set("valid_from", new.str("valid_from").to_owned());
    }
    if merged.str("description").is_empty() && !new.str("description").is_empty() {
        merged.set("description", new.str("description").to_owned());
    }
}

fn merge_sighting(merged: &mut StixObject, new: &StixObject) {
    let count = merged.0.get("count").and_then(Value::as_u64).unwrap_or(0)
        + new.0.get("count").and_then(Value::as_u64).unwrap_or(1);
    merged.set("count", count.min(999_999_999));
    if earlier(new.str("first_seen"), merged.str("first_seen")) {
        merged.set("first_seen", new.str("first_seen").to_owned());
    }
    if earlier(merged.str("last_seen"), new.str("last_seen")) {
        merged.set("last_seen", new.str("last_seen").to_owned());
    }
}

fn earlier(a: &str, b: &str) -> bool {
    match (parse_micros(a), parse_micros(b)) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        _ => false,
    }
}

fn union_strings(into: &mut Map<String, Value>, from: &Map<String, Value>, key: &str) {
    union_values(into, from, key);
    if let Some(Value::Array(items)) = into.get_mut(key) {
        items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

fn union_values(into: &mut Map<String, Value>, from: &Map<String, Value>, key: &str) {
    let Some(Value::Array(new_items)) = from.get(key) else {
        return;
    };
    let entry = into.entry(key.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = entry {
        for item in new_items {
            if !items.contains(item) {
                items.push(item.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> StixObject {
        StixObject::from_value(v).unwrap()
    }

    const ID: &str = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";

    /// `merge` over `old` as the newest stored version.
    fn merge(old: Option<&StixObject>, new: StixObject, now: chrono::DateTime<chrono::Utc>) -> Option<StixObject> {
        let stored = old.map(|object| Stored {
            object,
            version_us: object.version().and_then(parse_micros).unwrap_or(0),
        });
        super::merge(stored, stored.map(|s| s.version_us), new, now).unwrap()
    }

    #[test]
    fn unchanged_objects_get_no_new_version() {
        let a = obj(
            json!({"type": "indicator", "id": ID, "modified": "2026-01-01T00:00:00.000Z", "labels": ["mitre_attack:T1046"], "confidence": 50}),
        );
        let mut b = a.clone();
        b.set("modified", "2026-02-01T00:00:00.000Z");
        let now = chrono::Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        assert!(merge(Some(&a), b, now).is_none());
    }

    #[test]
    fn indicators_accumulate_techniques_and_keep_created() {
        let a = obj(
            json!({"type": "indicator", "id": ID, "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "labels": ["mitre_attack:T1046"], "indicator_types": ["anomalous-activity"], "confidence": 50, "valid_from": "2026-01-01T00:00:00Z"}),
        );
        let b = obj(
            json!({"type": "indicator", "id": ID, "created": "2026-03-01T00:00:00.000Z", "modified": "2026-03-01T00:00:00.000Z",
            "labels": ["mitre_attack:T1110"], "indicator_types": ["malicious-activity"], "confidence": 40, "valid_from": "2025-12-01T00:00:00Z"}),
        );
        let now = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let m = merge(Some(&a), b, now).unwrap();
        assert_eq!(m.0["labels"], json!(["mitre_attack:T1046", "mitre_attack:T1110"]));
        assert_eq!(m.0["indicator_types"], json!(["malicious-activity"]));
        assert_eq!(m.0["confidence"], json!(50));
        assert_eq!(m.str("created"), "2026-01-01T00:00:00.000Z");
        assert_eq!(m.str("valid_from"), "2025-12-01T00:00:00Z");
        assert_eq!(m.str("modified"), "2026-03-01T00:00:00.000Z");
    }

    #[test]
    fn sightings_count_up_and_modified_always_moves_forward() {
        let sid = "sighting--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";
        let a = obj(
            json!({"type": "sighting", "id": sid, "modified": "2026-01-01T00:00:00.500Z", "count": 2,
            "first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z"}),
        );
        let b = obj(
            json!({"type": "sighting", "id": sid, "modified": "2026-01-01T00:00:00.500Z", "count": 1,
            "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-01-02T00:00:00Z"}),
        );
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = merge(Some(&a), b, now).unwrap();
        assert_eq!(m.0["count"], json!(3));
        assert_eq!(m.str("first_seen"), "2026-01-01T00:00:00Z");
        assert_eq!(m.str("last_seen"), "2026-01-02T00:00:00Z");
        assert_eq!(m.str("modified"), "2026-01-01T00:00:00.501Z");
    }

    #[test]
    fn markings_and_provenance_are_never_dropped() {
        let old = obj(
            json!({"type": "indicator", "id": ID, "modified": "2026-01-01T00:00:00.000Z", "name": "ours",
            "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"]}),
        );
        let mut new = old.clone();
        new.0.remove("object_marking_refs");
        new.set("name", "theirs");
        new.set("labels", json!(["mitre_attack:T1046"]));
        let now = chrono::Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let m = merge(Some(&old), new, now).unwrap();
        assert_eq!(m.0["object_marking_refs"], old.0["object_marking_refs"]);
        assert_eq!(m.str("name"), "ours");

        // A base stored without them (an older release) gains the new object's.
        let mut bare = old.clone();
        bare.0.remove("object_marking_refs");
        let mut new = old.clone();
        new.set("created_by_ref", "identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f");
        new.set(
            "object_marking_refs",
            json!(["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"]),
        );
        let m = merge(Some(&old), new.clone(), now).unwrap();
        assert_eq!(
            m.0["object_marking_refs"],
            json!([
                "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
                "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
            ])
        );
        assert_eq!(m.creator(), "identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f");
        let m = merge(Some(&bare), new, now).unwrap();
        assert_eq!(
            m.0["object_marking_refs"],
            json!(["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"])
        );
    }

    #[test]
    fn versions_of_others_are_followed_but_never_built_on() {
        let ours = obj(json!({"type": "indicator", "id": ID, "modified": "2026-01-01T00:00:00.000Z", "name": "ours"}));
        let theirs_us = parse_micros("2026-03-01T00:00:00.000Z").unwrap();
        let now = chrono::Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        // Our stored version is unchanged but overtaken: a new version after theirs.
        let base = Stored {
            object: &ours,
            version_us: parse_micros("2026-01-01T00:00:00.000Z").unwrap(),
        };
        let m = super::merge(Some(base), Some(theirs_us), ours.clone(), now)
            .unwrap()
            .unwrap();
        assert_eq!(m.str("name"), "ours");
        assert_eq!(m.str("modified"), "2026-03-01T00:00:00.001Z");
        // Nothing of ours stored yet: the new object, dated after theirs.
        let m = super::merge(None, Some(theirs_us), ours.clone(), now).unwrap().unwrap();
        assert_eq!(m.str("modified"), "2026-03-01T00:00:00.001Z");
        let later = chrono::Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
        let mut fresh = ours.clone();
        fresh.set("modified", crate::stix::timestamp(later));
        let m = super::merge(None, Some(theirs_us), fresh.clone(), later).unwrap();
        assert_eq!(m, Some(fresh), "already after theirs: as built");
    }

    #[test]
    fn no_version_can_follow_the_last_instant() {
        let old = obj(json!({"type": "indicator", "id": ID, "modified": "9999-12-31T23:59:59.999Z", "labels": ["a"]}));
        let mut new = old.clone();
        new.set("labels", json!(["b"]));
        let now = chrono::Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let base = Stored {
            object: &old,
            version_us: LATEST_VERSION_US,
        };
        let why = super::merge(Some(base), Some(LATEST_VERSION_US), new.clone(), now).unwrap_err();
        assert!(why.contains(ID) && why.contains("9999-12-31T23:59:59.999Z"), "{why}");
        assert!(super::merge(None, Some(LATEST_VERSION_US), new.clone(), now).is_err());
        assert!(super::merge(None, Some(i64::MAX), new, now).is_err(), "no overflow");
        // One millisecond before the end still has a successor.
        let base = Stored {
            object: &old,
            version_us: LATEST_VERSION_US - 1000,
        };
        let mut new = old.clone();
        new.set("labels", json!(["c"]));
        let m = super::merge(Some(base), Some(LATEST_VERSION_US - 1000), new, now).unwrap();
        assert_eq!(m.unwrap().str("modified"), "9999-12-31T23:59:59.999Z");
    }
}
