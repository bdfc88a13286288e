//! The knowledge-base records and their compact serialised form.
//!
//! These are plain data: what the importer extracts from an ATT&CK STIX bundle and what the
//! committed compact KB stores. Lookups and indexes live in [`super::Kb`]; nothing here may
//! depend on rule packs or the engine.

use serde::{Deserialize, Serialize};

/// First bytes of a (decompressed) compact KB; the last byte is the format revision.
pub const COMPACT_MAGIC: &[u8; 8] = b"AMKB\0\0\0\x01";

/// Everything the importer extracts from one ATT&CK bundle, sorted by ATT&CK id so that the
/// same bundle always yields the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbData {
    /// ATT&CK release, e.g. "18.1".
    pub attack_version: String,
    /// ATT&CK domain, e.g. "enterprise-attack".
    pub domain: String,
    /// Tactics in matrix (kill-chain) order.
    pub tactics: Vec<Tactic>,
    /// Techniques and sub-techniques, including revoked and deprecated ones.
    pub techniques: Vec<Technique>,
    /// Groups (STIX intrusion-sets), including revoked and deprecated ones.
    pub groups: Vec<Group>,
    /// Software (STIX malware and tools).
    pub software: Vec<Software>,
    /// Campaigns.
    pub campaigns: Vec<Campaign>,
    /// Mitigations (STIX courses of action).
    pub mitigations: Vec<Mitigation>,
}

/// An ATT&CK tactic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tactic {
    /// ATT&CK id, e.g. "TA0006".
    pub id: String,
    /// Display name, e.g. "Credential Access".
    pub name: String,
    /// Kill-chain phase name, e.g. "credential-access".
    pub shortname: String,
    /// STIX id of the x-mitre-tactic object.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
}

/// An ATT&CK technique or sub-technique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technique {
    /// ATT&CK id, e.g. "T1110.001".
    pub id: String,
    /// Name, e.g. "Password Guessing".
    pub name: String,
    /// STIX id of the attack-pattern.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
    /// Platforms, e.g. "Linux".
    pub platforms: Vec<String>,
    /// Tactic ids in matrix order.
    pub tactics: Vec<String>,
    /// Parent technique id for a sub-technique.
    pub parent_id: Option<String>,
    /// True for sub-techniques.
    pub is_subtechnique: bool,
    /// MITRE marked the technique deprecated (no replacement).
    pub deprecated: bool,
    /// MITRE revoked the technique; see `revoked_by`.
    pub revoked: bool,
    /// The technique that replaced this one (one hop of the `revoked-by` chain).
    pub revoked_by: Option<String>,
}

impl Technique {
    /// Neither revoked nor deprecated.
    pub fn is_active(&self) -> bool {
        !self.revoked && !self.deprecated
    }
}

/// An ATT&CK group (STIX intrusion-set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// ATT&CK id, e.g. "G0016".
    pub id: String,
    /// Name, e.g. "APT29".
    pub name: String,
    /// Other names, without the name itself.
    pub aliases: Vec<String>,
    /// STIX id of the intrusion-set.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
    /// Active techniques the group is recorded as using directly (`uses` relationships).
    pub techniques: Vec<String>,
    /// Software ids the group is recorded as using.
    pub software: Vec<String>,
    /// MITRE marked the group deprecated.
    pub deprecated: bool,
    /// MITRE revoked the group; see `revoked_by`.
    pub revoked: bool,
    /// The group that replaced this one (one hop).
    pub revoked_by: Option<String>,
}

impl Group {
    /// Neither revoked nor deprecated.
    pub fn is_active(&self) -> bool {
        !self.revoked && !self.deprecated
    }
}

/// Whether a software entry is malware or a (dual-use) tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SoftwareKind {
    /// STIX `malware`.
    Malware,
    /// STIX `tool`.
    Tool,
}

/// ATT&CK software.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Software {
    /// ATT&CK id, e.g. "S0002".
    pub id: String,
    /// Name, e.g. "Mimikatz".
    pub name: String,
    /// Malware or tool.
    pub kind: SoftwareKind,
    /// Other names, without the name itself.
    pub aliases: Vec<String>,
    /// STIX id.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
    /// Platforms.
    pub platforms: Vec<String>,
    /// Active techniques the software implements.
    pub techniques: Vec<String>,
    /// MITRE marked the software deprecated.
    pub deprecated: bool,
    /// MITRE revoked the software.
    pub revoked: bool,
}

/// An ATT&CK campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// ATT&CK id, e.g. "C0024".
    pub id: String,
    /// Name.
    pub name: String,
    /// Other names, without the name itself.
    pub aliases: Vec<String>,
    /// STIX id.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
    /// Active techniques used in the campaign.
    pub techniques: Vec<String>,
    /// Software used in the campaign.
    pub software: Vec<String>,
    /// Groups the campaign is attributed to.
    pub groups: Vec<String>,
    /// MITRE marked the campaign deprecated.
    pub deprecated: bool,
    /// MITRE revoked the campaign.
    pub revoked: bool,
}

/// An ATT&CK mitigation (STIX course-of-action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mitigation {
    /// ATT&CK id, e.g. "M1032".
    pub id: String,
    /// Name.
    pub name: String,
    /// STIX id.
    pub stix_id: String,
    /// ATT&CK page.
    pub url: String,
    /// Active techniques it mitigates.
    pub techniques: Vec<String>,
    /// MITRE marked the mitigation deprecated.
    pub deprecated: bool,
}
