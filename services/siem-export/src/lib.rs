//! SIEM export: delivers enriched events, without loss, to Elasticsearch (ECS documents over
//! `_bulk`), Splunk HEC, NDJSON files (one or several, in any shape) and the intel service
//! (`ShareEvents` over gRPC) — each sink fed from its own crash-safe on-disk queue.
//!
//! - [`config`]: the `siem_export` configuration section, credentials as the runtime's
//!   [`Secret`](attackmesh_runtime::secret::Secret)s.
//! - [`queue`]: append-only checksummed segment files with a persisted cursor, per sink.
//! - [`sinks`]: the [`sinks::Sink`] trait, one module per sink kind, and [`sinks::util`] for
//!   what several sinks share (the ATT&CK view of an event, the ECS and HEC shapes).
//! - [`driver`]: drains a queue into its sink (batching, retries, dead letters).
//! - [`dlq`]: dead letters on disk; list, show and replay for `attackmesh dlq`.
//! - [`disk`]: a full queue disk (Export answers RETRY, health NOT_SERVING until space returns).
//! - [`service`]: the gRPC `ExportService`; [`server`]: wiring onto the shared runtime.
//! - [`metrics`], [`status`]: Prometheus metrics and `GetSinkStatus` counters.
//! - [`content`]: Kibana detection rules and the Splunk app that make the delivered alerts'
//!   ATT&CK visible inside Elastic Security and Splunk.
//!
//! An Export batch is acknowledged only once every sink's queue holds it on disk; sinks drain
//! independently, so a dead sink never delays the others. This crate does no authentication
//! (the runtime's tower layer does) and never logs credentials or event payloads.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod content;
pub mod disk;
pub mod dlq;
pub mod driver;
pub mod error;
pub mod metrics;
pub mod queue;
pub mod server;
pub mod service;
pub mod sinks;
pub mod status;

pub use config::{ENV_ALIASES, SiemExportConfig};
pub use error::Error;
