//! Traffic Light Protocol markings: the published `marking-definition` objects of TLP 2.0
//! (OASIS common objects, extension `extension-definition--60a3c5c5-…`) and TLP 1.0 (predefined by
//! STIX 2.1). Only the published ids are ever used: a home-made TLP id would be ignored by
//! consumers such as OpenCTI and MISP, and the data would travel unmarked.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{SPEC_VERSION, StixObject};

/// The extension definition that TLP 2.0 marking definitions use.
pub const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// A TLP level. `clear` and `white` are the same level (TLP 2.0 / 1.0 names); `amber+strict`
/// exists only in TLP 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tlp {
    /// Disclosure is not limited (TLP 2.0 CLEAR, TLP 1.0 WHITE).
    #[serde(alias = "white")]
    Clear,
    /// Limited to the recipient's community.
    Green,
    /// Limited to the recipient's organisation and its clients, need-to-know.
    Amber,
    /// Limited to the recipient's organisation only (TLP 2.0).
    #[serde(rename = "amber+strict")]
    AmberStrict,
    /// For the named recipients only.
    Red,
}

/// Which TLP edition's marking definitions to reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TlpVersion {
    /// TLP 2.0 (FIRST, 2022): the current standard.
    #[default]
    #[serde(rename = "2.0")]
    V2,
    /// TLP 1.0: for consumers that only know the STIX 2.1 predefined markings.
    #[serde(rename = "1.0")]
    V1,
}

impl Tlp {
    /// The published marking-definition object for this level and edition; `None` for
    /// `amber+strict` under TLP 1.0 (it has no such level; config validation refuses it).
    pub fn marking(self, version: TlpVersion) -> Option<StixObject> {
        match version {
            TlpVersion::V2 => {
                let (id, level, name) = match self {
                    Tlp::Clear => ("94868c89-83c2-464b-929b-a1a8aa3c8487", "clear", "TLP:CLEAR"),
                    Tlp::Green => ("bab4a63c-aed9-4cf5-a766-dfca5abac2bb", "green", "TLP:GREEN"),
                    Tlp::Amber => ("55d920b0-5e8b-4f79-9ee9-91f868d9b421", "amber", "TLP:AMBER"),
                    Tlp::AmberStrict => (
                        "939a9414-2ddd-4d32-a0cd-375ea402b003",
                        "amber+strict",
                        "TLP:AMBER+STRICT",
                    ),
                    Tlp::Red => ("e828b379-4e03-4974-9ac4-e53a884c97c1", "red", "TLP:RED"),
                };
                Some(object(json!({
                    "type": "marking-definition",
                    "spec_version": SPEC_VERSION,
                    "id": format!("marking-definition--{id}"),
                    "created": "2022-10-01T00:00:00.000Z",
                    "name": name,
                    "extensions": {
                        TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}
                    }
                })))
            }
            TlpVersion::V1 => {
                let (id, level) = match self {
                    Tlp::Clear => ("613f2e26-407d-48c7-9eca-b8e91df99dc9", "white"),
                    Tlp::Green => ("34098fce-860f-48ae-8e50-ebd3cc5e41da", "green"),
                    Tlp::Amber => ("f88d31f6-486f-44da-b317-01333bde0b82", "amber"),
                    Tlp::Red => ("5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "red"),
                    Tlp::AmberStrict => return None,
                };
                Some(object(json!({
                    "type": "marking-definition",
                    "spec_version": SPEC_VERSION,
                    "id": format!("marking-definition--{id}"),
                    "created": "2017-01-20T00:00:00.000Z",
                    "definition_type": "tlp",
                    "name": format!("TLP:{}", level.to_uppercase()),
                    "definition": {"tlp": level}
                })))
            }
        }
    }
}

/// Checks a marking definition under the id of a published TLP marking: it must state that
/// marking's level (`extensions` for TLP 2.0, `definition` for TLP 1.0), since every object
/// referencing the id is read as marked with the published level.
pub fn check_published(object: &Map<String, Value>) -> Result<(), String> {
    let Some(id) = object.get("id").and_then(Value::as_str) else {
        return Ok(());
    };
    let levels = [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::AmberStrict, Tlp::Red];
    for (version, key) in [(TlpVersion::V2, "extensions"), (TlpVersion::V1, "definition")] {
        let published = levels.iter().filter_map(|l| l.marking(version)).find(|m| m.id() == id);
        if let Some(published) = published {
            return if object.get(key) == published.0.get(key) {
                Ok(())
            } else {
                Err(format!(
                    "`{id}` is the published {} marking; its `{key}` must be the published one",
                    published.str("name")
                ))
            };
        }
    }
    Ok(())
}

fn object(value: Value) -> StixObject {
    match value {
        Value::Object(map) => StixObject(map),
        _ => StixObject(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ids_are_used() {
        let amber = Tlp::Amber.marking(TlpVersion::V2).unwrap();
        assert_eq!(amber.id(), "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421");
        let white = Tlp::Clear.marking(TlpVersion::V1).unwrap();
        assert_eq!(white.id(), "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9");
        assert!(Tlp::AmberStrict.marking(TlpVersion::V1).is_none());
        let parsed: Tlp = serde_json::from_str("\"amber+strict\"").unwrap();
        assert_eq!(parsed, Tlp::AmberStrict);
        let parsed: Tlp = serde_json::from_str("\"white\"").unwrap();
        assert_eq!(parsed, Tlp::Clear);
    }

    #[test]
    fn published_markings_keep_their_level() {
        for version in [TlpVersion::V1, TlpVersion::V2] {
            let red = Tlp::Red.marking(version).unwrap();
            assert_eq!(check_published(&red.0), Ok(()));
            let mut relabelled = red.clone();
            let clear = Tlp::Clear.marking(version).unwrap();
            for key in ["extensions", "definition"] {
                if let Some(v) = clear.0.get(key) {
                    relabelled.set(key, v.clone());
                }
            }
            assert!(check_published(&relabelled.0).is_err(), "{version:?}");
        }
        let own =
            json!({"id": "marking-definition--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "definition": {"statement": "x"}});
        assert_eq!(check_published(own.as_object().unwrap()), Ok(()));
    }
}
