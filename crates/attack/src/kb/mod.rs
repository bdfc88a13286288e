//! The ATT&CK knowledge base: techniques, tactics, groups, software, campaigns and
//! mitigations of one ATT&CK release, indexed for lookups on the hot path.
//!
//! A [`Kb`] comes from the compact KB embedded in the binary ([`Kb::embedded`]), from a compact
//! KB or an official STIX bundle on disk ([`Kb::load`]), or from an import ([`Kb::from_data`]).
//! It is immutable once built; share it behind an `Arc`. It knows nothing about rule packs.

pub mod import;
mod messages;
pub mod model;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

pub use import::{ImportOptions, import_bundle, import_bundle_with, version_from_file_name};
pub use model::{Campaign, Group, KbData, Mitigation, Software, SoftwareKind, Tactic, Technique};

pub(crate) use messages::describe_group;

use crate::actors::ActorIndex;
use crate::error::Error;

/// The compact KB committed with the crate (derived from the official ATT&CK 18.1 bundle by
/// `attackmesh kb import`; see `kb/LICENSE-ATTACK.txt`).
const EMBEDDED: &[u8] = include_bytes!("../../kb/enterprise-attack-18.1.kb.gz");

/// Index of a technique in [`KbData::techniques`].
pub(crate) type TechIdx = u32;

/// What a technique id resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Resolved<'a> {
    /// An active technique.
    Active(&'a Technique),
    /// A revoked technique and its active replacement (revocation chains followed).
    Revoked {
        /// The revoked technique that was asked for.
        requested: &'a Technique,
        /// The active technique that replaces it.
        replacement: &'a Technique,
    },
    /// A deprecated technique: no replacement exists, it must not be attributed.
    Deprecated(&'a Technique),
    /// No such technique in this release (or a revocation chain without an active end).
    Unknown,
}

/// Counts of active objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KbCounts {
    /// Active techniques, sub-techniques excluded.
    pub techniques: usize,
    /// Active sub-techniques.
    pub subtechniques: usize,
    /// Tactics.
    pub tactics: usize,
    /// Active groups.
    pub groups: usize,
    /// Active software.
    pub software: usize,
    /// Active campaigns.
    pub campaigns: usize,
    /// Active mitigations.
    pub mitigations: usize,
}

/// An indexed, immutable ATT&CK knowledge base.
#[derive(Debug)]
pub struct Kb {
    data: KbData,
    technique_index: HashMap<String, TechIdx>,
    replacement: Vec<Option<TechIdx>>,
    subtechniques: Vec<Vec<TechIdx>>,
    tactic_index: HashMap<String, usize>,
    group_index: HashMap<String, usize>,
    software_index: HashMap<String, usize>,
    campaign_index: HashMap<String, usize>,
    mitigation_index: HashMap<String, usize>,
    counts: KbCounts,
    pub(crate) actors: ActorIndex,
    /// Campaign-ranking profiles, built on first use.
    campaign_profiles: std::sync::OnceLock<crate::campaigns::Profiles>,
}

impl Kb {
    /// The knowledge base embedded in the binary (decoded once per process).
    pub fn embedded() -> Result<Arc<Kb>, Error> {
        static KB: OnceLock<Result<Arc<Kb>, String>> = OnceLock::new();
        KB.get_or_init(|| Kb::from_bytes(EMBEDDED, None).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Kb)
    }

    /// The one way every service and command picks its knowledge base: the file at `path`
    /// (see [`Kb::load`]) when one is configured, the embedded one otherwise.
    pub fn open(path: Option<&Path>) -> Result<Arc<Kb>, Error> {
        match path {
            Some(p) => Kb::load(p).map(Arc::new),
            None => Kb::embedded(),
        }
    }

    /// Loads a compact KB or an official ATT&CK bundle (`.json` or `.json.gz`), detected by
    /// content. A bundle without an `x-mitre-collection` object takes its release from the file
    /// name (`enterprise-attack-18.1.json`).
    pub fn load(path: impl AsRef<Path>) -> Result<Kb, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Kb::from_bytes(&bytes, name.as_deref())
    }

    /// Decodes a compact KB or a bundle from memory; `file_name` helps find a bundle's release.
    pub fn from_bytes(bytes: &[u8], file_name: Option<&str>) -> Result<Kb, Error> {
        let inflated;
        let plain: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(bytes.len() * 4);
            GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| Error::Kb(format!("corrupt gzip data: {e}")))?;
            inflated = out;
            &inflated
        } else {
            bytes
        };
        if let Some(body) = plain.strip_prefix(model::COMPACT_MAGIC.as_slice()) {
            let data: KbData =
                postcard::from_bytes(body).map_err(|e| Error::Kb(format!("corrupt compact knowledge base: {e}")))?;
            return Kb::from_data(data);
        }
        if plain.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            let options = ImportOptions {
                attack_version: file_name.and_then(version_from_file_name),
            };
            return Kb::from_data(import::import_slice(plain, &options)?);
        }
        if plain.starts_with(b"AMKB") {
            return Err(Error::Kb(
                "compact knowledge base of an unsupported format revision".into(),
            ));
        }
        Err(Error::Kb(
            "neither a compact knowledge base nor an ATT&CK STIX bundle".into(),
        ))
    }

    /// Indexes imported or decoded data.
    pub fn from_data(data: KbData) -> Result<Kb, Error> {
        if data.techniques.is_empty() {
            return Err(Error::Kb("knowledge base holds no techniques".into()));
        }
        let technique_index: HashMap<String, TechIdx> = data
            .techniques
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i as TechIdx))
            .collect();
        let replacement = data
            .techniques
            .iter()
            .map(|t| {
                let mut current = t;
                for _ in 0..32 {
                    if !current.revoked {
                        break;
                    }
                    current = current
                        .revoked_by
                        .as_ref()
                        .and_then(|r| technique_index.get(r))
                        .map(|i| &data.techniques[*i as usize])?;
                }
                current
                    .is_active()
                    .then(|| technique_index.get(&current.id).copied())
                    .flatten()
            })
            .collect();
        let mut subtechniques = vec![Vec::new(); data.techniques.len()];
        for (i, t) in data.techniques.iter().enumerate() {
            if let Some(parent) = t
                .parent_id
                .as_ref()
                .and_then(|p| technique_index.get(p))
                .filter(|_| t.is_active())
            {
                subtechniques[*parent as usize].push(i as TechIdx);
            }
        }
        let mut tactic_index = HashMap::new();
        for (i, t) in data.tactics.iter().enumerate() {
            tactic_index.insert(t.id.clone(), i);
            tactic_index.insert(t.shortname.clone(), i);
        }
        let group_index = name_index(data.groups.iter().map(|g| (&g.id, &g.name, &g.aliases, g.is_active())));
        let software_index = name_index(
            data.software
                .iter()
                .map(|s| (&s.id, &s.name, &s.aliases, !s.revoked && !s.deprecated)),
        );
        let campaign_index = name_index(
            data.campaigns
                .iter()
                .map(|c| (&c.id, &c.name, &c.aliases, !c.revoked && !c.deprecated)),
        );
        let mitigation_index = data
            .mitigations
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let active_tech = data.techniques.iter().filter(|t| t.is_active());
        let counts = KbCounts {
            techniques: active_tech.clone().filter(|t| !t.is_subtechnique).count(),
            subtechniques: active_tech.filter(|t| t.is_subtechnique).count(),
            tactics: data.tactics.len(),
            groups: data.groups.iter().filter(|g| g.is_active()).count(),
            software: data.software.iter().filter(|s| !s.revoked && !s.deprecated).count(),
            campaigns: data.campaigns.iter().filter(|c| !c.revoked && !c.deprecated).count(),
            mitigations: data.mitigations.iter().filter(|m| !m.deprecated).count(),
        };
        let mut kb = Kb {
            data,
            technique_index,
            replacement,
            subtechniques,
            tactic_index,
            group_index,
            software_index,
            campaign_index,
            mitigation_index,
            counts,
            actors: ActorIndex::default(),
            campaign_profiles: std::sync::OnceLock::new(),
        };
        kb.actors = ActorIndex::build(&kb);
        Ok(kb)
    }

    /// The compact serialised form (gzip'd), as committed under `kb/`.
    pub fn to_compact(&self) -> Result<Vec<u8>, Error> {
        let mut plain = model::COMPACT_MAGIC.to_vec();
        let body = postcard::to_stdvec(&self.data).map_err(|e| Error::Kb(format!("cannot encode: {e}")))?;
        plain.extend_from_slice(&body);
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&plain)
            .and_then(|_| gz.finish())
            .map_err(|e| Error::Kb(format!("cannot compress: {e}")))
    }

    /// The underlying records.
    pub fn data(&self) -> &KbData {
        &self.data
    }

    /// ATT&CK release, e.g. "18.1".
    pub fn attack_version(&self) -> &str {
        &self.data.attack_version
    }

    /// ATT&CK domain, e.g. "enterprise-attack".
    pub fn domain(&self) -> &str {
        &self.data.domain
    }

    /// Counts of active objects.
    pub fn counts(&self) -> KbCounts {
        self.counts
    }

    /// A technique by exact id (any state; case-insensitive).
    pub fn technique(&self, id: &str) -> Option<&Technique> {
        self.technique_idx(id).map(|i| self.at(i))
    }

    /// What `id` stands for now: active, revoked (with its replacement), deprecated or unknown.
    pub fn resolve(&self, id: &str) -> Resolved<'_> {
        let Some(i) = self.technique_idx(id) else {
            return Resolved::Unknown;
        };
        let t = self.at(i);
        if t.is_active() {
            Resolved::Active(t)
        } else if t.revoked {
            match self.replacement[i as usize] {
                Some(r) => Resolved::Revoked {
                    requested: t,
                    replacement: self.at(r),
                },
                None => Resolved::Unknown,
            }
        } else {
            Resolved::Deprecated(t)
        }
    }

    /// All techniques, including revoked and deprecated ones, sorted by id.
    pub fn techniques(&self) -> impl Iterator<Item = &Technique> {
        self.data.techniques.iter()
    }

    /// Active techniques and sub-techniques, sorted by id.
    pub fn active_techniques(&self) -> impl Iterator<Item = &Technique> {
        self.data.techniques.iter().filter(|t| t.is_active())
    }

    /// Active sub-techniques of a technique.
    pub fn subtechniques_of(&self, technique: &Technique) -> impl Iterator<Item = &Technique> {
        self.technique_idx(&technique.id)
            .map(|i| self.subtechniques[i as usize].as_slice())
            .unwrap_or_default()
            .iter()
            .map(|i| self.at(*i))
    }

    /// Tactics in matrix order.
    pub fn tactics(&self) -> impl Iterator<Item = &Tactic> {
        self.data.tactics.iter()
    }

    /// A tactic by id ("TA0006") or shortname ("credential-access").
    pub fn tactic(&self, id_or_shortname: &str) -> Option<&Tactic> {
        self.tactic_index.get(id_or_shortname).map(|i| &self.data.tactics[*i])
    }

    /// The tactics of a technique, in matrix order.
    pub fn tactics_of<'a>(&'a self, technique: &'a Technique) -> impl Iterator<Item = &'a Tactic> + 'a {
        technique.tactics.iter().filter_map(|id| self.tactic(id))
    }

    /// A group by ATT&CK id, name or alias (case-insensitive); a revoked group resolves to its
    /// replacement, and active groups win over others for a shared alias.
    pub fn group(&self, id_or_name_or_alias: &str) -> Option<&Group> {
        let mut g = &self.data.groups[*self.group_index.get(&id_or_name_or_alias.trim().to_lowercase())?];
        for _ in 0..8 {
            match g
                .revoked_by
                .as_ref()
                .filter(|_| g.revoked)
                .and_then(|r| self.group_index.get(&r.to_lowercase()))
            {
                Some(next) => g = &self.data.groups[*next],
                None => break,
            }
        }
        Some(g)
    }

    /// All groups, including revoked and deprecated ones, sorted by id.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.data.groups.iter()
    }

    /// Software by id, name or alias (case-insensitive).
    pub fn software(&self, id_or_name: &str) -> Option<&Software> {
        self.software_index
            .get(&id_or_name.trim().to_lowercase())
            .map(|i| &self.data.software[*i])
    }

    /// All software, sorted by id.
    pub fn all_software(&self) -> impl Iterator<Item = &Software> {
        self.data.software.iter()
    }

    /// A campaign by id, name or alias (case-insensitive).
    pub fn campaign(&self, id_or_name: &str) -> Option<&Campaign> {
        self.campaign_index
            .get(&id_or_name.trim().to_lowercase())
            .map(|i| &self.data.campaigns[*i])
    }

    /// All campaigns, sorted by id.
    pub fn campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.data.campaigns.iter()
    }

    /// A mitigation by id.
    pub fn mitigation(&self, id: &str) -> Option<&Mitigation> {
        self.mitigation_index.get(id.trim()).map(|i| &self.data.mitigations[*i])
    }

    /// All mitigations, sorted by id.
    pub fn mitigations(&self) -> impl Iterator<Item = &Mitigation> {
        self.data.mitigations.iter()
    }

    /// Active mitigations that address a technique.
    pub fn mitigations_for<'a>(&'a self, technique_id: &'a str) -> impl Iterator<Item = &'a Mitigation> + 'a {
        self.data
            .mitigations
            .iter()
            .filter(move |m| !m.deprecated && m.techniques.iter().any(|t| t == technique_id))
    }

    pub(crate) fn technique_idx(&self, id: &str) -> Option<TechIdx> {
        let id = id.trim();
        match self.technique_index.get(id) {
            Some(i) => Some(*i),
            None if id.bytes().any(|b| b.is_ascii_lowercase()) => {
                self.technique_index.get(&id.to_ascii_uppercase()).copied()
            }
            None => None,
        }
    }

    /// Index of the active technique `id` stands for, and the revoked id when it was replaced.
    pub(crate) fn resolve_idx(&self, id: &str) -> Option<(TechIdx, bool)> {
        let i = self.technique_idx(id)?;
        let t = self.at(i);
        if t.is_active() {
            Some((i, false))
        } else if t.revoked {
            self.replacement[i as usize].map(|r| (r, true))
        } else {
            None
        }
    }

    pub(crate) fn at(&self, i: TechIdx) -> &Technique {
        &self.data.techniques[i as usize]
    }

    /// Active sub-techniques of the technique at `i`.
    pub(crate) fn subtechnique_indices(&self, i: TechIdx) -> &[TechIdx] {
        &self.subtechniques[i as usize]
    }

    /// Group profiles for campaign ranking (built once, on first use).
    pub(crate) fn campaign_profiles(&self) -> &crate::campaigns::Profiles {
        self.campaign_profiles
            .get_or_init(|| crate::campaigns::Profiles::build(self, None))
    }

    pub(crate) fn technique_count(&self) -> usize {
        self.data.techniques.len()
    }
}

/// Lower-cased id, name and aliases → index; active entries win over inactive ones.
fn name_index<'a>(
    items: impl Iterator<Item = (&'a String, &'a String, &'a Vec<String>, bool)>,
) -> HashMap<String, usize> {
    let items: Vec<_> = items.collect();
    let mut index = HashMap::new();
    // Inactive first so that active entries overwrite them; ids always point at their own entry.
    for pass_active in [false, true] {
        for (i, (_, name, aliases, active)) in items.iter().enumerate() {
            if *active == pass_active {
                for key in std::iter::once(*name).chain(aliases.iter()) {
                    index.insert(key.to_lowercase(), i);
                }
            }
        }
    }
    for (i, (id, ..)) in items.iter().enumerate() {
        index.insert(id.to_lowercase(), i);
    }
    index
}
