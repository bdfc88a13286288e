//! Mapping rule packs as data: the YAML (or JSON) format, the packs embedded in the binary, and
//! loading packs from a directory at run time.
//!
//! A pack is only parsed here; [`super::compile`] validates it against the knowledge base.
//! See `rules/README.md` for the format.

use std::path::Path;

use serde::Deserialize;

use crate::error::Error;

/// The packs compiled into the binary, as (file name, YAML text).
pub const EMBEDDED_PACKS: &[(&str, &str)] = &[
    ("traffic.yaml", include_str!("../../rules/traffic.yaml")),
    ("behaviour.yaml", include_str!("../../rules/behaviour.yaml")),
    ("decoy.yaml", include_str!("../../rules/decoy.yaml")),
    ("cowrie.yaml", include_str!("../../rules/cowrie.yaml")),
    ("commands.yaml", include_str!("../../rules/commands.yaml")),
    ("suricata.yaml", include_str!("../../rules/suricata.yaml")),
    ("zeek.yaml", include_str!("../../rules/zeek.yaml")),
    ("falco.yaml", include_str!("../../rules/falco.yaml")),
    ("wazuh.yaml", include_str!("../../rules/wazuh.yaml")),
];

/// One parsed pack and where it came from.
#[derive(Debug, Clone)]
pub struct RulePack {
    /// File path, or `embedded:<file>` for built-in packs; named in every error.
    pub source: String,
    /// The pack's content.
    pub def: PackDef,
}

/// The top level of a pack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackDef {
    /// Pack name; a directory pack with the name of an embedded pack replaces it.
    pub pack: String,
    /// Semantic version `x.y.z`.
    pub version: String,
    /// What the pack covers.
    #[serde(default)]
    pub description: String,
    /// `false` removes the pack (and, from a directory, the embedded pack of the same name).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleDef>,
}

fn yes() -> bool {
    true
}

/// One mapping rule: when every condition holds, the techniques are attributed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Id, unique in the pack; evidence names it as `pack/id`.
    pub id: String,
    /// Why the rule maps what it maps; shown in evidence.
    #[serde(default)]
    pub description: String,
    /// Event types (exact, `prefix*`, `*suffix` or `*`); empty means any.
    #[serde(default)]
    pub event_type: OneOrMany,
    /// Detector kinds (`traffic_monitor`, `behavioural_analysis`, `decoy`, `other`); empty means any.
    #[serde(default)]
    pub detector_kind: OneOrMany,
    /// Conditions, all of which must hold.
    #[serde(default)]
    pub when: Vec<ConditionDef>,
    /// Default confidence of the rule's techniques.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Techniques attributed when the rule matches.
    pub techniques: Vec<TechniqueDef>,
    /// A fallback rule only applies when no other rule matched the event.
    #[serde(default)]
    pub fallback: bool,
}

/// A technique of a rule, either a bare id or an id with its confidence.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TechniqueDef {
    /// `T1046`: confidence from the rule.
    Id(String),
    /// `{ id: T1046, confidence: 0.8 }`.
    Full {
        /// Technique id; must be an active technique of the knowledge base.
        id: String,
        /// Confidence in [0, 1].
        #[serde(default)]
        confidence: Option<f64>,
    },
}

/// One condition on one field. Exactly one of `field`/`attr`, and exactly one operator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionDef {
    /// An event field: `description`, `command_line`, `event_type`, `source_service`, `severity`,
    /// `source.ip|port|hostname|user`, `source.process.name|executable|command_line|parent_name`,
    /// and the same under `destination.`.
    pub field: Option<String>,
    /// An attribute key, e.g. `alert.signature`.
    pub attr: Option<String>,
    /// Equal to this value (ASCII case-insensitive).
    pub equals: Option<Scalar>,
    /// Equal to one of these values (ASCII case-insensitive).
    #[serde(rename = "in")]
    pub one_of: Option<Vec<Scalar>>,
    /// Contains one of these substrings (ASCII case-insensitive).
    pub contains: Option<OneOrMany>,
    /// Matches one of these regular expressions (Rust `regex` syntax; `(?i)` for case-insensitive).
    pub regex: Option<OneOrMany>,
    /// A command of the command line (first word of a pipeline or list element, path stripped,
    /// after `sudo`, `nohup`, `busybox`, `env` and `VAR=value` prefixes) is one of these.
    pub command: Option<OneOrMany>,
    /// Numerically greater than.
    pub gt: Option<f64>,
    /// Numerically greater than or equal.
    pub gte: Option<f64>,
    /// Numerically less than.
    pub lt: Option<f64>,
    /// Numerically less than or equal.
    pub lte: Option<f64>,
    /// The field is present and non-empty (`true`) or absent or empty (`false`).
    pub exists: Option<bool>,
    /// Negates the condition.
    #[serde(default)]
    pub not: bool,
}

/// A YAML scalar used as a value to compare with.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// An integer, compared by its decimal text.
    Int(i64),
    /// A float, compared by its text.
    Float(f64),
    /// A boolean, compared as `true`/`false`.
    Bool(bool),
}

impl Scalar {
    /// The text the value is compared as.
    pub fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// One string or a list of strings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "OneOrManyRepr")]
pub struct OneOrMany(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrManyRepr {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrManyRepr> for OneOrMany {
    fn from(r: OneOrManyRepr) -> Self {
        match r {
            OneOrManyRepr::One(s) => OneOrMany(vec![s]),
            OneOrManyRepr::Many(v) => OneOrMany(v),
        }
    }
}

impl RulePack {
    /// Parses one pack; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<RulePack, Error> {
        let def: PackDef = serde_yaml::from_str(text).map_err(|e| Error::pack(source, e.to_string()))?;
        Ok(RulePack {
            source: source.to_owned(),
            def,
        })
    }

    /// The packs embedded in the binary.
    pub fn embedded() -> Result<Vec<RulePack>, Error> {
        EMBEDDED_PACKS
            .iter()
            .map(|(name, text)| RulePack::parse(&format!("embedded:{name}"), text))
            .collect()
    }

    /// Every `*.yaml`, `*.yml` and `*.json` file of a directory (not recursive), by file name.
    pub fn load_dir(dir: &Path) -> Result<Vec<RulePack>, Error> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_pack_file(p))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                RulePack::parse(&p.display().to_string(), &text)
            })
            .collect()
    }

    /// The embedded packs with a directory's packs applied: a directory pack replaces the
    /// embedded pack of the same name or adds a new one; `enabled: false` removes it.
    pub fn embedded_with_dir(dir: &Path) -> Result<Vec<RulePack>, Error> {
        Ok(overlay(RulePack::embedded()?, RulePack::load_dir(dir)?))
    }
}

/// `base` with every pack of `overrides` replacing the base pack of the same name.
pub fn overlay(base: Vec<RulePack>, overrides: Vec<RulePack>) -> Vec<RulePack> {
    let mut out: Vec<RulePack> = base
        .into_iter()
        .filter(|b| !overrides.iter().any(|o| o.def.pack == b.def.pack))
        .collect();
    out.extend(overrides);
    out.retain(|p| p.def.enabled);
    out
}

/// True for files a rules directory may hold packs in.
pub fn is_pack_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
}
