//! MITRE ATT&CK for attackmesh: everything that knows ATT&CK, as a library.
//!
//! - [`kb`]: the ATT&CK knowledge base (imported from the official STIX bundle; a compact form
//!   is embedded so the binary works offline).
//! - [`rules`]: declarative, versioned mapping rule packs (YAML under `rules/`), validated
//!   against the knowledge base and compiled into shared matchers.
//! - [`sigma`]: the SigmaHQ Windows rules (embedded) and a user's own Sigma rules, routed by
//!   log source and evaluated against Windows events.
//! - [`actors`]: ranking of ATT&CK groups by how specifically observed techniques match them.
//! - [`engine`]: [`Engine`], knowledge base plus rules → `Attribution`, and the DEGRADED path.
//! - [`compact`]: attributions without what a knowledge base of the same release can tell, and
//!   back.
//! - [`navigator`]: ATT&CK Navigator layers of observed techniques.
//! - [`url`]: addresses of ATT&CK pages.
//!
//! This crate does no I/O beyond reading the files it is pointed at, and depends on no RPC
//! framework, async runtime or service: the attribution service wraps it, and enrichment, intel
//! and the CLI call it in-process. It never invents technique ids: every id it outputs is an
//! active technique of the loaded knowledge base.

#![forbid(unsafe_code)]

pub mod actors;
pub mod campaigns;
pub mod compact;
pub mod engine;
pub mod error;
pub mod kb;
mod lookup;
pub mod navigator;
pub mod rules;
pub mod sigma;
pub mod url;

pub use actors::rank_actors;
pub use engine::Engine;
pub use error::Error;
pub use kb::{Kb, Resolved};
pub use rules::{RulePack, RuleSet};
pub use sigma::{SigmaPack, SigmaSet};
