//! Imports an official ATT&CK STIX bundle (STIX 2.0 or 2.1) into [`KbData`].
//!
//! Only what attribution needs is kept: ids, names, tactics, platforms, links, the
//! revocation/deprecation state and the `uses` / `mitigates` / `attributed-to` graph.
//! Descriptions and citations are skipped. Relationships that are themselves revoked or
//! deprecated are ignored; relationships to a revoked technique are redirected to its
//! replacement, and those to a deprecated one are dropped, so every technique list holds
//! active techniques only. Output is sorted, so the same bundle always yields the same data.
//!
//! This file reads the bundle (the STIX object shapes attribution needs); `convert` turns
//! those objects into [`KbData`].

mod convert;

use std::collections::BTreeSet;
use std::io::Read;

use serde::Deserialize;

use super::model::KbData;
use crate::error::Error;
use convert::Importer;

/// Options for [`import_bundle_with`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// ATT&CK release to record when the bundle carries no `x-mitre-collection` object
    /// (the official per-domain files don't); e.g. taken from the file name.
    pub attack_version: Option<String>,
}

/// Imports a bundle that names its release in an `x-mitre-collection` object.
pub fn import_bundle<R: Read>(reader: R) -> Result<KbData, Error> {
    import_bundle_with(reader, &ImportOptions::default())
}

/// Imports a bundle; `options.attack_version` is used when the bundle does not name its release.
pub fn import_bundle_with<R: Read>(mut reader: R, options: &ImportOptions) -> Result<KbData, Error> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Kb(format!("cannot read ATT&CK bundle: {e}")))?;
    import_slice(&bytes, options)
}

/// Imports a bundle held in memory.
pub(crate) fn import_slice(bytes: &[u8], options: &ImportOptions) -> Result<KbData, Error> {
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| Error::Kb(format!("not an ATT&CK STIX bundle: {e}")))?;
    Importer::new(&bundle.objects)?.run(options)
}

/// Derives the ATT&CK release from a file name such as `enterprise-attack-18.1.json.gz`.
pub fn version_from_file_name(name: &str) -> Option<String> {
    let stem = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let start = stem.find("attack-")? + "attack-".len();
    let rest = &stem[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let version = rest[..end].trim_end_matches('.');
    (!version.is_empty()).then(|| version.to_owned())
}

#[derive(Deserialize)]
struct Bundle {
    objects: Vec<StixObject>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StixObject {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    name: String,
    revoked: Option<bool>,
    x_mitre_deprecated: Option<bool>,
    external_references: Vec<ExternalReference>,
    kill_chain_phases: Vec<KillChainPhase>,
    x_mitre_platforms: Vec<String>,
    x_mitre_is_subtechnique: Option<bool>,
    x_mitre_shortname: String,
    x_mitre_version: String,
    x_mitre_domains: Vec<String>,
    aliases: Vec<String>,
    x_mitre_aliases: Vec<String>,
    tactic_refs: Vec<String>,
    relationship_type: String,
    source_ref: String,
    target_ref: String,
}

impl StixObject {
    fn revoked(&self) -> bool {
        self.revoked.unwrap_or(false)
    }
    fn deprecated(&self) -> bool {
        self.x_mitre_deprecated.unwrap_or(false)
    }
    fn attack_ref(&self) -> Option<&ExternalReference> {
        self.external_references
            .iter()
            .find(|r| r.source_name == "mitre-attack" && r.external_id.is_some())
    }
    fn attack_id(&self) -> Option<&str> {
        self.attack_ref().and_then(|r| r.external_id.as_deref())
    }
    fn url(&self) -> String {
        self.attack_ref().and_then(|r| r.url.clone()).unwrap_or_default()
    }
    fn aliases_without_name(&self, list: &[String]) -> Vec<String> {
        let mut seen = BTreeSet::new();
        list.iter()
            .filter(|a| **a != self.name && seen.insert(a.as_str()))
            .cloned()
            .collect()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExternalReference {
    source_name: String,
    external_id: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KillChainPhase {
    kill_chain_name: String,
    phase_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_official_file_names() {
        assert_eq!(
            version_from_file_name("enterprise-attack-18.1.json.gz").as_deref(),
            Some("18.1")
        );
        assert_eq!(
            version_from_file_name("/x/y/enterprise-attack-15.0.json").as_deref(),
            Some("15.0")
        );
        assert_eq!(version_from_file_name("enterprise-attack.json"), None);
        assert_eq!(version_from_file_name("bundle.json"), None);
    }

    #[test]
    fn a_tiny_bundle_imports_with_revocation_and_tactics() {
        let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[
          {"type":"x-mitre-collection","id":"x-mitre-collection--1","x_mitre_version":"9.9"},
          {"type":"x-mitre-tactic","id":"x-mitre-tactic--1","name":"Discovery","x_mitre_shortname":"discovery",
           "external_references":[{"source_name":"mitre-attack","external_id":"TA0007","url":"u"}]},
          {"type":"attack-pattern","id":"attack-pattern--1","name":"New",
           "kill_chain_phases":[{"kill_chain_name":"mitre-attack","phase_name":"discovery"}],
           "external_references":[{"source_name":"mitre-attack","external_id":"T1000"}]},
          {"type":"attack-pattern","id":"attack-pattern--2","name":"Old","revoked":true,
           "external_references":[{"source_name":"mitre-attack","external_id":"T1001"}]},
          {"type":"relationship","id":"relationship--1","relationship_type":"revoked-by",
           "source_ref":"attack-pattern--2","target_ref":"attack-pattern--1"},
          {"type":"intrusion-set","id":"intrusion-set--1","name":"G","aliases":["G","H"],
           "external_references":[{"source_name":"mitre-attack","external_id":"G0001"}]},
          {"type":"relationship","id":"relationship--2","relationship_type":"uses",
           "source_ref":"intrusion-set--1","target_ref":"attack-pattern--2"}
        ]}"#;
        let kb = import_bundle(bundle.as_bytes()).expect("imports");
        assert_eq!(kb.attack_version, "9.9");
        assert_eq!(kb.techniques[0].tactics, vec!["TA0007".to_owned()]);
        assert_eq!(kb.techniques[1].revoked_by.as_deref(), Some("T1000"));
        assert_eq!(kb.groups[0].aliases, vec!["H".to_owned()]);
        // A use of a revoked technique is redirected to its replacement.
        assert_eq!(kb.groups[0].techniques, vec!["T1000".to_owned()]);
    }

    #[test]
    fn a_bundle_without_version_needs_one() {
        let bundle = r#"{"objects":[{"type":"attack-pattern","id":"attack-pattern--1","name":"x",
          "external_references":[{"source_name":"mitre-attack","external_id":"T1000"}]}]}"#;
        let err = import_bundle(bundle.as_bytes()).expect_err("no version");
        assert!(err.to_string().contains("names no ATT&CK release"), "{err}");
        let opts = ImportOptions {
            attack_version: Some("1.0".into()),
        };
        assert_eq!(
            import_bundle_with(bundle.as_bytes(), &opts)
                .expect("imports")
                .attack_version,
            "1.0"
        );
    }
}
