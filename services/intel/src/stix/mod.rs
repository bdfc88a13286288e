//! STIX 2.1 objects as attackmesh produces and stores them.
//!
//! Objects are kept as JSON maps ([`StixObject`]) so that objects received from TAXII clients are
//! stored and served byte-for-byte in content, including properties attackmesh does not know.
//! Objects attackmesh creates itself get deterministic ids (UUIDv5), so one observable is one
//! object with new versions, never a pile of duplicates. This module never touches storage.

pub mod builder;
pub mod campaign;
#[cfg(test)]
mod campaign_tests;
pub mod merge;
pub mod pattern;
pub mod tlp;
pub mod validate;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use builder::{StixOptions, share_objects, stix_objects_for};
pub use tlp::{Tlp, TlpVersion};

/// The STIX spec version attackmesh speaks.
pub const SPEC_VERSION: &str = "2.1";

/// The last instant a STIX timestamp can express, 9999-12-31T23:59:59.999Z, in microseconds
/// since the Unix epoch: no version can follow one dated then.
pub const LATEST_VERSION_US: i64 = 253_402_300_799_999_000;

/// Media type of STIX 2.1 content in TAXII manifests.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";

/// Namespace of attackmesh's deterministic ids: UUIDv5(URL namespace, `urn:attackmesh:stix`).
pub fn id_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:attackmesh:stix")
}

/// A deterministic STIX id `type--UUIDv5(namespace, key)`.
pub fn deterministic_id(object_type: &str, key: &str) -> String {
    let name = format!("{object_type}|{key}");
    format!("{object_type}--{}", Uuid::new_v5(&id_namespace(), name.as_bytes()))
}

/// One STIX object (SDO, SRO, SCO or SMO) as a JSON map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StixObject(pub Map<String, Value>);

impl StixObject {
    /// Wraps a JSON value; fails unless it is an object with `type` and `id`.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("a STIX object must be a JSON object".into());
        };
        let object = StixObject(map);
        let ty = object.object_type();
        if ty.is_empty() {
            return Err("missing `type`".into());
        }
        let id = object.id();
        match id.split_once("--") {
            Some((prefix, uuid)) if prefix == ty && Uuid::parse_str(uuid).is_ok() => {}
            _ => return Err(format!("`id` must be `{ty}--<UUID>`")),
        }
        Ok(object)
    }

    /// The `id` property (empty when absent).
    pub fn id(&self) -> &str {
        self.str("id")
    }

    /// The `type` property (empty when absent).
    pub fn object_type(&self) -> &str {
        self.str("type")
    }

    /// `spec_version`, defaulting to 2.1 for SCOs and objects that omit it.
    pub fn spec_version(&self) -> &str {
        match self.str("spec_version") {
            "" => SPEC_VERSION,
            v => v,
        }
    }

    /// The TAXII version of the object: `modified`, else `created`, else `None` (the server
    /// then uses the date it was added, as TAXII 2.1 specifies).
    pub fn version(&self) -> Option<&str> {
        [self.str("modified"), self.str("created")]
            .into_iter()
            .find(|v| !v.is_empty())
    }

    /// `created_by_ref`: the identity that created the object (empty when unnamed).
    pub fn creator(&self) -> &str {
        self.str("created_by_ref")
    }

    /// A string property, or empty.
    pub fn str(&self, key: &str) -> &str {
        self.0.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// Sets a property.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// The object as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }
}

/// A STIX timestamp: RFC 3339 UTC with millisecond precision and `Z`, as STIX requires for
/// `created`/`modified`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A TAXII timestamp (`date_added`, headers): RFC 3339 UTC with microseconds and `Z`.
pub fn taxii_timestamp(micros: i64) -> String {
    micros_to_datetime(micros).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp (sub-microsecond digits truncated).
pub fn parse_micros(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

/// The instant `micros` microseconds after the Unix epoch.
pub fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Who produces attackmesh's objects: the `identity` every object names as `created_by_ref`.
#[derive(Debug, Clone, PartialEq)]
pub struct Producer {
    /// Display name of the identity, e.g. `attackmesh` or `ACME SOC attackmesh`.
    pub name: String,
}

impl Default for Producer {
    fn default() -> Self {
        Self {
            name: "attackmesh".into(),
        }
    }
}

/// Fixed `created`/`modified` of the identity, so that it never changes version.
const IDENTITY_CREATED: &str = "2026-01-01T00:00:00.000Z";

impl Producer {
    /// The identity's STIX id (derived from the name).
    pub fn id(&self) -> String {
        deterministic_id("identity", &self.name)
    }

    /// The `identity` object.
    pub fn object(&self) -> StixObject {
        let mut map = Map::new();
        map.insert("type".into(), "identity".into());
        map.insert("spec_version".into(), SPEC_VERSION.into());
        map.insert("id".into(), self.id().into());
        map.insert("created".into(), IDENTITY_CREATED.into());
        map.insert("modified".into(), IDENTITY_CREATED.into());
        map.insert("name".into(), self.name.clone().into());
        map.insert("identity_class".into(), "system".into());
        map.insert(
            "description".into(),
            "attackmesh: security detections attributed to MITRE ATT&CK and shared as STIX 2.1".into(),
        );
        StixObject(map)
    }
}

/// A STIX bundle of `objects` with a fresh id.
pub fn bundle(objects: Vec<StixObject>) -> Value {
    serde_json::json!({
        "type": "bundle",
        "id": format!("bundle--{}", Uuid::new_v4()),
        "objects": objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_typed() {
        let a = deterministic_id("indicator", "[ipv4-addr:value = '1.2.3.4']");
        assert_eq!(a, deterministic_id("indicator", "[ipv4-addr:value = '1.2.3.4']"));
        assert!(a.starts_with("indicator--"));
        assert_ne!(a, deterministic_id("indicator", "[ipv4-addr:value = '1.2.3.5']"));
        let uuid = Uuid::parse_str(a.trim_start_matches("indicator--")).unwrap();
        assert_eq!(uuid.get_version_num(), 5);
    }

    #[test]
    fn timestamps_round_trip() {
        let us = parse_micros("2026-03-01T10:00:00.123456789Z").unwrap();
        assert_eq!(taxii_timestamp(us), "2026-03-01T10:00:00.123456Z");
        assert_eq!(timestamp(micros_to_datetime(us)), "2026-03-01T10:00:00.123Z");
        assert_eq!(
            parse_micros("2026-03-01T12:00:00+02:00"),
            parse_micros("2026-03-01T10:00:00Z")
        );
        assert!(parse_micros("yesterday").is_none());
        assert_eq!(parse_micros("9999-12-31T23:59:59.999Z"), Some(LATEST_VERSION_US));
    }

    #[test]
    fn objects_need_a_type_matching_the_id() {
        let ok = serde_json::json!({"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"});
        assert!(StixObject::from_value(ok).is_ok());
        let bad = serde_json::json!({"type": "malware", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"});
        assert!(StixObject::from_value(bad).is_err());
        assert!(StixObject::from_value(serde_json::json!([1])).is_err());
    }
}
