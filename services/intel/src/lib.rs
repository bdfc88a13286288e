//! Intel: STIX 2.1 indicators with MITRE ATT&CK mappings, served over TAXII 2.1 and pushed to
//! partners' TAXII servers.
//!
//! - [`stix`]: builds `indicator`, `relationship` (`indicates` → ATT&CK attack-patterns and
//!   intrusion-sets) and `sighting` objects from enriched events ([`stix_objects_for`]) and from
//!   manually shared indicators; deterministic ids, TLP markings, version merging.
//! - [`store`]: collections in SQLite (default) or PostgreSQL (several replicas), paged by a
//!   stable cursor.
//! - [`ingest`]: [`Intel`], the library entry point that builds, merges and stores objects
//!   (behind the gRPC `ShareEvents` that the export service's `intel` sink calls, and TAXII).
//! - [`taxii`]: the TAXII 2.1 server (axum), authenticated with the runtime's tokens.
//! - [`ui`]: the live ATT&CK matrix page (`/ui/`) on the TAXII listener, over the store's
//!   aggregation of observed techniques ([`store::matrix`]).
//! - [`push`]: delivery of new objects to remote TAXII collections.
//! - [`export`]: a collection as one STIX bundle (`attackmesh intel export`).
//! - [`service`] / [`server`]: the gRPC `IntelService` and the wiring of everything above.
//!
//! This crate never trusts technique or group ids it is handed: everything linked is checked
//! against the ATT&CK knowledge base.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod attribution;
pub mod config;
pub mod error;
pub mod export;
pub mod ingest;
pub mod metrics;
pub mod push;
pub mod server;
pub mod service;
pub mod stix;
pub mod store;
pub mod taxii;
pub mod ui;

pub use config::IntelConfig;
pub use error::Error;
pub use export::export_bundle;
pub use ingest::{IngestReport, Intel};
pub use stix::{StixObject, StixOptions, stix_objects_for};
pub use store::Store;
