//! Converts the objects of a STIX bundle into [`KbData`]: resolves revocation chains, builds
//! the relationship graph and the sorted technique, tactic, group, software, campaign and
//! mitigation lists. Reading and parsing the bundle is [`super`]'s job.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{ImportOptions, StixObject};
use crate::error::Error;
use crate::kb::model::{Campaign, Group, KbData, Mitigation, Software, SoftwareKind, Tactic, Technique};

/// Converts the objects of one bundle.
pub(super) struct Importer<'a> {
    objects: &'a [StixObject],
    by_stix: HashMap<&'a str, &'a StixObject>,
    revoked_by: HashMap<&'a str, &'a str>,
}

impl<'a> Importer<'a> {
    /// Indexes the objects; fails when they hold no technique at all.
    pub(super) fn new(objects: &'a [StixObject]) -> Result<Self, Error> {
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

    /// Converts every object kind attribution needs.
    pub(super) fn run(&self, options: &ImportOptions) -> Result<KbData, Error> {
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
