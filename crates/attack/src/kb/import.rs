//! Imports an official ATT&CK STIX bundle (STIX 2.0 or 2.1) into [`KbData`].
//!
//! Only what attribution needs is kept: ids, names, tactics, platforms, links, the
//! revocation/deprecation state and the `uses` / `mitigates` / `attributed-to` graph.
//! Descriptions and citations are skipped. Relationships that are themselves revoked or
//! deprecated are ignored; relationships to a revoked technique are redirected to its
//! replacement, and those to a deprecated one are dropped, so every technique list holds
//! active techniques only. Output is sorted, so the same bundle always yields the same data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use serde::Deserialize;

use super::model::{Campaign, Group, KbData, Mitigation, Software, SoftwareKind, Tactic, Technique};
use crate::error::Error;

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

struct Importer<'a> {
    objects: &'a [StixObject],
    by_stix: HashMap<&'a str, &'a StixObject>,
    revoked_by: HashMap<&'a str, &'a str>,
}

impl<'a> Importer<'a> {
    fn new(objects: &'a [StixObject]) -> Result<Self, Error> {
        if !objects.iter().any(|o| o.kind == "attack-pattern") {
            return Err(Error::Kb(
                "bundle holds no attack-pattern objects: not an ATT&CK bundle".into(),
            ));
        }
        let by_stix = objects.iter().map(|o| (o.id.as_str(), o)).collect();
        let revoked_by = objects
            .iter()
            .filter(|o| o.kind == "relationship" && o.relationship_type == "revoked-by")
            .map(|o| (o.source_ref.as_str(), o.target_ref.as_str()))
            .collect();
        Ok(Self {
            objects,
            by_stix,
            revoked_by,
        })
    }

    fn run(&self, options: &ImportOptions) -> Result<KbData, Error> {
        let attack_version = self
            .objects
            .iter()
            .find(|o| o.kind == "x-mitre-collection" && !o.x_mitre_version.is_empty())
            .map(|o| o.x_mitre_version.clone())
            .or_else(|| options.attack_version.clone())
            .ok_or_else(|| {
                Error::Kb(
                    "the bundle names no ATT&CK release (no x-mitre-collection object); give the version \
                     explicitly or name the file like enterprise-attack-18.1.json"
                        .into(),
                )
            })?;
        let domain = self
            .objects
            .iter()
            .find(|o| o.kind == "x-mitre-matrix")
            .and_then(|m| {
                m.attack_id()
                    .map(str::to_owned)
                    .or_else(|| m.x_mitre_domains.first().cloned())
            })
            .unwrap_or_else(|| "enterprise-attack".to_owned());
        let tactics = self.tactics();
        let rel = self.relationships();
        Ok(KbData {
            attack_version,
            domain,
            techniques: self.techniques(&tactics, &rel),
            tactics,
            groups: self.groups(&rel),
            software: self.software(&rel),
            campaigns: self.campaigns(&rel),
            mitigations: self.mitigations(&rel),
        })
    }

    fn of_kind(&self, kinds: &'a [&'a str]) -> impl Iterator<Item = &'a StixObject> + 'a {
        self.objects
            .iter()
            .filter(move |o| kinds.contains(&o.kind.as_str()) && o.attack_id().is_some())
    }

    fn tactics(&self) -> Vec<Tactic> {
        let mut order: Vec<&str> = self
            .objects
            .iter()
            .filter(|o| o.kind == "x-mitre-matrix")
            .flat_map(|m| m.tactic_refs.iter().map(String::as_str))
            .collect();
        let mut tactics: Vec<&StixObject> = self
            .of_kind(&["x-mitre-tactic"])
            .filter(|t| !t.revoked() && !t.deprecated())
            .collect();
        for t in &tactics {
            if !order.contains(&t.id.as_str()) {
                order.push(t.id.as_str());
            }
        }
        tactics.sort_by_key(|t| (order.iter().position(|s| *s == t.id), t.attack_id().map(str::to_owned)));
        tactics.dedup_by(|a, b| a.attack_id() == b.attack_id());
        tactics
            .into_iter()
            .map(|t| Tactic {
                id: t.attack_id().unwrap_or_default().to_owned(),
                name: t.name.clone(),
                shortname: t.x_mitre_shortname.clone(),
                stix_id: t.id.clone(),
                url: t.url(),
            })
            .collect()
    }

    /// The ATT&CK id an active technique relationship should point at: the target itself when
    /// active, its final replacement when revoked, nothing when deprecated or unknown.
    fn active_technique_id(&self, stix_id: &str) -> Option<&'a str> {
        let mut current = *self.by_stix.get(stix_id)?;
        let mut hops = 0;
        while current.revoked() {
            let next = self.revoked_by.get(current.id.as_str())?;
            current = self.by_stix.get(next)?;
            hops += 1;
            if hops > 32 {
                return None;
            }
        }
        (current.kind == "attack-pattern" && !current.deprecated())
            .then(|| current.attack_id())
            .flatten()
    }

    fn relationships(&self) -> Relations<'a> {
        let mut rel = Relations::default();
        for r in self
            .objects
            .iter()
            .filter(|o| o.kind == "relationship" && !o.revoked() && !o.deprecated())
        {
            let (Some(source), Some(target)) = (
                self.by_stix.get(r.source_ref.as_str()),
                self.by_stix.get(r.target_ref.as_str()),
            ) else {
                continue;
            };
            let Some(source_id) = source.attack_id() else { continue };
            match (r.relationship_type.as_str(), target.kind.as_str()) {
                ("uses" | "mitigates", "attack-pattern") => {
                    if let Some(t) = self.active_technique_id(&r.target_ref) {
                        rel.techniques.entry(source_id).or_default().insert(t);
                    }
                }
                ("uses", "malware" | "tool") => {
                    if let Some(s) = target.attack_id() {
                        rel.software.entry(source_id).or_default().insert(s);
                    }
                }
                ("attributed-to", "intrusion-set") => {
                    if let Some(g) = target.attack_id() {
                        rel.groups.entry(source_id).or_default().insert(g);
                    }
                }
                ("subtechnique-of", "attack-pattern") => {
                    if let Some(p) = target.attack_id() {
                        rel.parent.insert(source_id, p);
                    }
                }
                _ => {}
            }
        }
        rel
    }

    fn one_hop_replacement(&self, o: &StixObject) -> Option<String> {
        let target = self.revoked_by.get(o.id.as_str())?;
        self.by_stix.get(target)?.attack_id().map(str::to_owned)
    }

    fn techniques(&self, tactics: &[Tactic], rel: &Relations<'a>) -> Vec<Technique> {
        let mut out: BTreeMap<String, Technique> = BTreeMap::new();
        for o in self.of_kind(&["attack-pattern"]) {
            let id = o.attack_id().unwrap_or_default().to_owned();
            let mut tactic_ids: Vec<&Tactic> = o
                .kill_chain_phases
                .iter()
                .filter(|p| p.kill_chain_name.starts_with("mitre-"))
                .filter_map(|p| tactics.iter().find(|t| t.shortname == p.phase_name))
                .collect();
            tactic_ids.sort_by_key(|t| tactics.iter().position(|x| x.id == t.id));
            tactic_ids.dedup_by(|a, b| a.id == b.id);
            let is_subtechnique = o.x_mitre_is_subtechnique.unwrap_or(false) || id.contains('.');
            let parent_id = rel
                .parent
                .get(id.as_str())
                .map(|p| (*p).to_owned())
                .or_else(|| is_subtechnique.then(|| id.split('.').next().unwrap_or_default().to_owned()));
            let mut platforms = o.x_mitre_platforms.clone();
            platforms.sort();
            platforms.dedup();
            let technique = Technique {
                name: o.name.clone(),
                stix_id: o.id.clone(),
                url: o.url(),
                platforms,
                tactics: tactic_ids.into_iter().map(|t| t.id.clone()).collect(),
                parent_id,
                is_subtechnique,
                deprecated: o.deprecated(),
                revoked: o.revoked(),
                revoked_by: if o.revoked() { self.one_hop_replacement(o) } else { None },
                id: id.clone(),
            };
            // Two objects with one id: keep the active one.
            match out.get(&id) {
                Some(existing) if existing.is_active() => {}
                _ => {
                    out.insert(id, technique);
                }
            }
        }
        out.into_values().collect()
    }

    fn groups(&self, rel: &Relations<'a>) -> Vec<Group> {
        let mut out: Vec<Group> = self
            .of_kind(&["intrusion-set"])
            .map(|o| {
                let id = o.attack_id().unwrap_or_default();
                Group {
                    id: id.to_owned(),
                    name: o.name.clone(),
                    aliases: o.aliases_without_name(&o.aliases),
                    stix_id: o.id.clone(),
                    url: o.url(),
                    techniques: rel.techniques_of(id),
                    software: rel.software_of(id),
                    deprecated: o.deprecated(),
                    revoked: o.revoked(),
                    revoked_by: if o.revoked() { self.one_hop_replacement(o) } else { None },
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id).then(a.revoked.cmp(&b.revoked)));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }

    fn software(&self, rel: &Relations<'a>) -> Vec<Software> {
        let mut out: Vec<Software> = self
            .of_kind(&["malware", "tool"])
            .map(|o| {
                let id = o.attack_id().unwrap_or_default();
                let mut platforms = o.x_mitre_platforms.clone();
                platforms.sort();
                platforms.dedup();
                Software {
                    id: id.to_owned(),
                    name: o.name.clone(),
                    kind: if o.kind == "tool" {
                        SoftwareKind::Tool
                    } else {
                        SoftwareKind::Malware
                    },
                    aliases: o.aliases_without_name(&o.x_mitre_aliases),
                    stix_id: o.id.clone(),
                    url: o.url(),
                    platforms,
                    techniques: rel.techniques_of(id),
                    deprecated: o.deprecated(),
                    revoked: o.revoked(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id).then(a.revoked.cmp(&b.revoked)));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }

    fn campaigns(&self, rel: &Relations<'a>) -> Vec<Campaign> {
        let mut out: Vec<Campaign> = self
            .of_kind(&["campaign"])
            .map(|o| {
                let id = o.attack_id().unwrap_or_default();
                Campaign {
                    id: id.to_owned(),
                    name: o.name.clone(),
                    aliases: o.aliases_without_name(&o.aliases),
                    stix_id: o.id.clone(),
                    url: o.url(),
                    techniques: rel.techniques_of(id),
                    software: rel.software_of(id),
                    groups: rel
                        .groups
                        .get(id)
                        .map(|s| s.iter().map(|g| (*g).to_owned()).collect())
                        .unwrap_or_default(),
                    deprecated: o.deprecated(),
                    revoked: o.revoked(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }

    fn mitigations(&self, rel: &Relations<'a>) -> Vec<Mitigation> {
        let mut out: Vec<Mitigation> = self
            .of_kind(&["course-of-action"])
            .filter(|o| !o.revoked())
            .map(|o| {
                let id = o.attack_id().unwrap_or_default();
                Mitigation {
                    id: id.to_owned(),
                    name: o.name.clone(),
                    stix_id: o.id.clone(),
                    url: o.url(),
                    techniques: rel.techniques_of(id),
                    deprecated: o.deprecated(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id).then(a.deprecated.cmp(&b.deprecated)));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }
}

/// The relationship graph keyed by ATT&CK ids of the source object.
#[derive(Default)]
struct Relations<'a> {
    techniques: HashMap<&'a str, BTreeSet<&'a str>>,
    software: HashMap<&'a str, BTreeSet<&'a str>>,
    groups: HashMap<&'a str, BTreeSet<&'a str>>,
    parent: HashMap<&'a str, &'a str>,
}

impl Relations<'_> {
    fn techniques_of(&self, id: &str) -> Vec<String> {
        self.techniques
            .get(id)
            .map(|s| s.iter().map(|t| (*t).to_owned()).collect())
            .unwrap_or_default()
    }
    fn software_of(&self, id: &str) -> Vec<String> {
        self.software
            .get(id)
            .map(|s| s.iter().map(|t| (*t).to_owned()).collect())
            .unwrap_or_default()
    }
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
