//! The attackmesh contract: the protobuf event schema (generated types, gRPC clients and servers),
//! the canonical JSON form of events, validation, the error policy every service answers
//! clients by, and helpers for detector clients.
//!
//! Everything that crosses a service boundary is defined here, so every service and every client
//! agrees on one schema. This crate holds no service logic.

pub mod codec;
pub mod enriched;
pub mod error;
pub mod formats;
pub mod held;
pub mod json;
pub mod limits;
pub mod proto;
pub mod text;
pub mod validate;

pub use enriched::enriched_event;

/// `source_service` of the correlation service's findings. The export service's correlation
/// sink never sends them back to correlation, and correlation never counts them: a finding can
/// not feed the windows that raised it.
pub const CORRELATION_DETECTOR: &str = "attackmesh-correlation";
