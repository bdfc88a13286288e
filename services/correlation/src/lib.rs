//! Correlation: stateful detection over enriched events — what only shows across events.
//!
//! - [`engine`]: the library (sliding windows per entity, Sigma correlation rules v2.1, the
//!   built-in network behaviours, snapshots). No I/O; `attackmesh enrich` runs it offline.
//! - [`service`] / [`server`]: the gRPC `CorrelationService` a replica serves, its durable
//!   state ([`store`]), and the delivery ([`outbox`]) of findings to enrichment's `Ingest` and of
//!   campaign alerts to siem-export's `Export`.
//! - [`campaigns`]: campaigns built from what the replica observes.
//!
//! This crate never calls another service's library: findings reach enrichment over gRPC.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod campaigns;
pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod outbox;
pub mod server;
pub mod service;
pub mod store;

pub use config::CorrelationConfig;
pub use engine::{Engine, Limits, Observed, Shard};
pub use error::Error;
