//! The one way an [`EnrichedEvent`] is made from a detection and its attribution.

use crate::proto::{Attribution, DetectionEvent, EnrichedEvent};

/// Builds the event delivered to sinks from a detection and its attribution: every detection
/// field is copied (`submitted_by` included), `enriched_at` is now and `revision` is as given (1 for a first enrichment).
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
        submitted_by: detection.submitted_by,
        campaign_id: String::new(),
        campaign: None,
    }
}
