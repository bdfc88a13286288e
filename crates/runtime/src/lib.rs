//! The runtime every attackmesh service shares: layered typed configuration, telemetry
//! (tracing + OpenTelemetry with W3C context over gRPC metadata), bearer-token authentication
//! with per-RPC roles, TLS, links to other attackmesh services ([`peer`]: endpoints, client TLS
//! with the process's identity, bearer tokens), the one [`secret::Secret`] type, the one retry
//! [`backoff`], the one token generator ([`token`]), gRPC health and reflection, graceful
//! serving with a bounded drain, and the process's return of free heap memory ([`memory`]).
//!
//! Service crates hand this crate their tonic routes; they never bind sockets, parse tokens or
//! install signal handlers themselves.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod config;
pub mod data_dir;
pub mod error;
pub mod format;
pub mod http;
mod incoming;
pub mod memory;
pub mod metrics;
pub mod partition;
pub mod peer;
pub mod receive;
pub mod secret;
pub mod secret_file;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod token;

pub use error::Error;
