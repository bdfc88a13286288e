//! A TAXII envelope as a writer posts it: parsed, and every object checked on its own
//! ([`crate::stix::validate::check`]), so that one invalid object is a failure for that object
//! while the valid ones beside it go on to be stored. Nothing here touches storage.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::stix::{StixObject, validate};

/// The objects of a posted envelope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Posted {
    /// Valid objects, in the order posted.
    pub objects: Vec<StixObject>,
    /// Invalid objects, as entries of the status resource's `failures`.
    pub failures: Vec<Failure>,
}

/// One entry of a TAXII status resource's `failures` (or `successes`, without a message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The object's `id` (empty when it had none).
    pub id: String,
    /// The object's version: `modified`, else `created` (empty when it had neither).
    pub version: String,
    /// Why it was not stored.
    pub message: String,
}

impl Failure {
    /// A failure of the posted `object` (any JSON) because of `message`.
    pub fn of(object: &Value, message: impl Into<String>) -> Self {
        let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        let version = match text("modified") {
            v if v.is_empty() => text("created"),
            v => v,
        };
        Self {
            id: text("id"),
            version,
            message: message.into(),
        }
    }
}

/// Reads a posted body: `Err` (a 400 for the whole request) when it is not a JSON envelope
/// with an `objects` list; otherwise each object is valid or a failure of its own, checked
/// against `now` for timestamps ahead of the clock.
pub fn read(body: &[u8], now: DateTime<Utc>) -> Result<Posted, String> {
    let envelope: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(Value::Array(items)) = envelope.get("objects") else {
        return Err("the body must be a TAXII envelope with `objects`".into());
    };
    let mut posted = Posted::default();
    for item in items {
        match validate::check(item, now) {
            Ok(object) => posted.objects.push(object),
            Err(why) => posted.failures.push(Failure::of(item, why)),
        }
    }
    Ok(posted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_object_stands_alone() {
        let good =
            json!({"type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "10.0.0.1"});
        let bad = json!({"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "spec_version": "2.1", "created": "2026-01-01T00:00:00.000Z"});
        let body = json!({"objects": [good, bad, 7]}).to_string();
        let posted = read(body.as_bytes(), Utc::now()).unwrap();
        assert_eq!(posted.objects.len(), 1);
        assert_eq!(posted.failures.len(), 2);
        assert_eq!(posted.failures[0].id, "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f");
        assert_eq!(posted.failures[0].version, "2026-01-01T00:00:00.000Z");
        assert!(posted.failures[0].message.contains("`modified` is missing"));
        assert_eq!(posted.failures[1].id, "");
        for bad in ["", "[]", "{\"objects\": {}}", "{\"more\": true}"] {
            assert!(read(bad.as_bytes(), Utc::now()).is_err(), "{bad}");
        }
        assert_eq!(read(b"{\"objects\": []}", Utc::now()), Ok(Posted::default()));
    }
}
