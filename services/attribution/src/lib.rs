//! Attribution: maps security detections to MITRE ATT&CK techniques and candidate threat groups.
//!
//! - [`kb`]: the ATT&CK knowledge base (imported from the official STIX bundle; a compact form
//!   is embedded so the binary works offline).
//! - [`rules`]: declarative, versioned mapping rule packs (YAML under `rules/`), validated
//!   against the knowledge base and compiled into shared matchers.
//! - [`actors`]: ranking of ATT&CK groups by how specifically observed techniques match them.
//! - [`engine`]: [`Engine`], the library entry point used by the service, enrichment and CLI.
//! - [`metrics`]: Prometheus series of the service (batches, hits, latency, reloads).
//! - [`service`]: the tonic `AttributionService` with hot reload of rule packs.
//! - [`server`]: wiring onto the shared runtime's gRPC server.
//!
//! This crate does no authentication (a tower layer of the runtime does) and never invents
//! technique ids: every id it outputs is an active technique of the loaded knowledge base.

#![forbid(unsafe_code)]

pub mod actors;
pub mod config;
pub mod engine;
pub mod error;
pub mod kb;
pub mod metrics;
pub mod rules;
pub mod server;
pub mod service;

pub use actors::rank_actors;
pub use config::AttributionConfig;
pub use engine::Engine;
pub use error::Error;
pub use kb::{Kb, Resolved};
pub use rules::{RulePack, RuleSet};
pub use service::{AttributionState, EngineHandle, grpc_service, watch_rules};

use attackmesh::proto::{Attribution, DetectionEvent, EnrichedEvent};

/// Builds the event delivered to sinks from a detection and its attribution: every detection
/// field is copied, `enriched_at` is now and `revision` is as given (1 for a first enrichment).
pub fn enriched_event(detection: DetectionEvent, attribution: Attribution, revision: u32) -> EnrichedEvent {
    let now = chrono::Utc::now();
    EnrichedEvent {
        event_id: detection.event_id,
        timestamp: detection.timestamp,
        source_service: detection.source_service,
        detector_kind: detection.detector_kind,
        event_type: detection.event_type,
        source: detection.source,
        destination: detection.destination,
        severity: detection.severity,
        description: detection.description,
        technique_ids: attribution.technique_ids,
        confidence_score: attribution.confidence_score,
        related_indicators: detection.indicators,
        metadata: attribution.metadata,
        attack_version: attribution.attack_version,
        attribution_status: attribution.status,
        attributes: detection.attributes,
        original: detection.original,
        original_format: detection.original_format,
        enriched_at: Some(pbjson_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        revision,
    }
}
