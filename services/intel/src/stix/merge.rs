//! New versions of objects attackmesh produces: when an indicator, relationship or sighting with
//! the same deterministic id is already stored, the new observation is folded into it and a new
//! version (later `modified`, same `created`) is written only when something changed.
//!
//! Pure functions: stores call [`merge`] inside the transaction that reads the latest version,
//! so concurrent writers never lose an observation.

use serde_json::{Map, Value};

use super::{StixObject, parse_micros, timestamp};

/// The version to store for `new` given the latest stored version of the same id; `None` when
/// nothing changed. `modified` of a new version is `now`, or one millisecond after the stored
/// version when the clock has not moved past it.
pub fn merge(existing: Option<&StixObject>, new: StixObject, now: chrono::DateTime<chrono::Utc>) -> Option<StixObject> {
    let Some(old) = existing else { return Some(new) };
    let mut merged = old.clone();
    match new.object_type() {
        "indicator" => merge_indicator(&mut merged, &new),
        "sighting" => merge_sighting(&mut merged, &new),
        // Relationships, identities and markings carry nothing that accumulates.
        _ => {}
    }
    if merged == *old {
        return None;
    }
    let old_us = parse_micros(old.str("modified")).unwrap_or(0);
    let now_us = now.timestamp_micros();
    // STIX timestamps have millisecond precision here: step to the next millisecond.
    let next_us = if now_us / 1000 > old_us / 1000 {
        now_us
    } else {
        (old_us / 1000 + 1) * 1000
    };
    merged.set("modified", timestamp(super::micros_to_datetime(next_us)));
    Some(merged)
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
}
