//! Enrichment: the entry point for detectors. It takes detections over the gRPC `Ingest` stream,
//! the unary `Enrich` call, Falco's HTTP output and OpenTelemetry logs (OTLP gRPC and HTTP), attributes every one of them over long-lived
//! streams to the attribution service, and hands the enriched events to the export service,
//! acknowledging a detector's batch only once export holds it durably.
//!
//! - [`config`]: the `enrichment` section of the product config.
//! - [`service`]: the tonic `IngestService` (stream handling, ordering, per-stream limits).
//! - [`otlp`]: OpenTelemetry's `LogsService/Export` and OTLP/HTTP `POST /v1/logs`.
//! - [`server`]: wiring onto the shared runtime; [`http`]: `POST /falco` (and `/v1/logs`).
//! - [`shipper`]: the client side of `attackmesh ship` (files → `Ingest`, with checkpoints).
//! - [`detection`]: detections with the bytes they arrived as, and `Ingest` batches read so.
//! - [`encode`]: what enrichment sends export and attribution, encoded without walking an event
//!   twice.
//!
//! Internals: `pipeline` (validate → attribute → export → answer), `admission` (in-flight
//! limits, per-detector rate limits), `attribute`/`export` (the upstream calls, with the
//! DEGRADED fallback), `reattribute` (on-disk log of degraded events and the worker that
//! re-attributes them), `upstream` (DNS-based client-side balancing and pipelined streams).
//!
//! This crate does no authentication of gRPC calls (the runtime's tower layer does) and never
//! lets an event reach export without attribution or an explicit DEGRADED mark.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admission;
mod attribute;
pub mod config;
pub mod detection;
pub mod encode;
pub mod error;
mod export;
pub mod http;
pub mod metrics;
pub mod otlp;
mod pipeline;
mod reattribute;
pub mod server;
pub mod service;
pub mod shipper;
mod upstream;

pub use config::EnrichmentConfig;
pub use error::Error;
pub use reattribute::REATTRIBUTED_REVISION;
