//! Attribution service: the gRPC face of the `attackmesh-attack` library, which maps security
//! detections to MITRE ATT&CK techniques and candidate threat groups.
//!
//! - [`config`]: the `attribution` section of the configuration (knowledge base, rules directory).
//! - [`metrics`]: Prometheus series of the service (batches, hits, latency, reloads).
//! - [`batch`]: `AttributeRequest` read with each detection's attributes left in its bytes.
//! - [`service`]: the tonic `AttributionService` with hot reload of rule packs.
//! - [`server`]: wiring onto the shared runtime's gRPC server.
//!
//! This crate does no authentication (a tower layer of the runtime does) and holds no ATT&CK
//! logic of its own: every answer comes from the library's engine.

#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod error;
pub mod metrics;
pub mod server;
pub mod service;

pub use config::AttributionConfig;
pub use error::Error;
pub use service::{AttributionState, EngineHandle, grpc_service, watch_rules};
