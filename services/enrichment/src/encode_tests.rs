//! The events encoded once against the `ExportRequest` prost encodes whole, and attribution's
//! batches against the `AttributeRequest` prost encodes, over every real sample and hostile
//! shapes: the same messages decoded (and for export, the same bytes on the wire).

use std::collections::{BTreeMap, HashMap};

use attackmesh::{
    codec::EncodedExport,
    proto::{AttributeRequest, DetectionEvent, EnrichedEvent, ExportRequest},
};
use attackmesh_testkit::data;
use prost::Message;

use super::{AttributeBatch, EventEncoder};
use crate::detection::Detection;

/// Every real sample as enrichment hands it to export (parsed, attributed, enriched).
fn samples() -> Vec<EnrichedEvent> {
    data::real_attributed_samples()
}

/// Shapes no detector sends on purpose: empty, huge, odd text, every field at its limit.
fn hostile() -> Vec<EnrichedEvent> {
    let mut full = attackmesh_testkit::fixtures::event(7);
    full.attributes = (0..2_000)
        .map(|i| (format!("k{i}\u{0}é"), "v".repeat(i % 300)))
        .collect::<BTreeMap<_, _>>();
    full.original = "\u{feff}{\"a\":\"\\u0000\"}".repeat(10_000);
    full.revision = u32::MAX;
    full.confidence_score = f64::MIN_POSITIVE;
    let mut negative = attackmesh_testkit::fixtures::degraded_event(3);
    negative.detector_kind = -1;
    negative.severity = i32::MAX;
    vec![EnrichedEvent::default(), full, negative, EnrichedEvent::default()]
}

/// The message both paths send for `events`.
fn both(events: &[EnrichedEvent]) -> (ExportRequest, EncodedExport) {
    let trace: HashMap<String, String> = [("traceparent".to_owned(), "00-0af7-00f0-01".to_owned())].into();
    let mut encoder = EventEncoder::with_capacity(events.len());
    events.iter().for_each(|e| encoder.push(e));
    let old = ExportRequest {
        batch_id: 42,
        events: events.to_vec(),
        trace_context: trace.clone(),
        ..Default::default()
    };
    let new = EncodedExport {
        batch_id: 42,
        events: encoder.finish(),
        trace_context: trace,
        ..Default::default()
    };
    (old, new)
}

fn assert_same(events: &[EnrichedEvent]) {
    let (old, new) = both(events);
    let sent = new.encode_to_vec();
    assert_eq!(sent, old.encode_to_vec(), "bytes on the wire differ");
    assert_eq!(new.encoded_len(), old.encoded_len());
    assert_eq!(ExportRequest::decode(sent.as_slice()).unwrap(), old);
    for (bytes, event) in new.events.iter().zip(events) {
        assert_eq!(&EnrichedEvent::decode(bytes.as_ref()).unwrap(), event);
    }
}

#[test]
fn real_samples_go_out_as_the_export_request_of_the_same_events() {
    let events = samples();
    if events.is_empty() {
        return;
    }
    assert!(events.len() > 1_000, "{} events", events.len());
    assert!(events.iter().any(|e| e.metadata.is_some() && !e.attributes.is_empty()));
    // One batch of everything, and batches of the sizes enrichment sends.
    assert_same(&events);
    for batch in events.chunks(500) {
        assert_same(batch);
    }
}

#[test]
fn hostile_events_go_out_as_the_export_request_of_the_same_events() {
    assert_same(&hostile());
    assert_same(&[]);
    assert_same(&hostile()[..1]);
}

#[test]
fn an_encoder_told_too_few_events_still_encodes_them_all() {
    let events: Vec<EnrichedEvent> = (0..50).map(attackmesh_testkit::fixtures::event).collect();
    let mut encoder = EventEncoder::with_capacity(1);
    events.iter().for_each(|e| encoder.push(e));
    let sent = encoder.finish();
    assert_eq!(sent.len(), events.len());
    for (bytes, event) in sent.iter().zip(&events) {
        assert_eq!(&EnrichedEvent::decode(bytes.as_ref()).unwrap(), event);
    }
}

/// What enrichment sends attribution for `events`, checked against prost's `AttributeRequest`.
fn assert_attribute_request(events: &[DetectionEvent]) {
    for request in [
        AttributeRequest {
            batch_id: 42,
            events: events.to_vec(),
            trace_context: [("traceparent".to_owned(), "00-0af7-00f0-01".to_owned())].into(),
            compact_for_attack_version: "18.1".into(),
        },
        AttributeRequest {
            events: events.to_vec(),
            ..Default::default()
        },
    ] {
        // The events in the request, or handed over as detections.
        let header = AttributeRequest {
            events: Vec::new(),
            ..request.clone()
        };
        let detections = request.events.iter().cloned().map(Detection::from).collect();
        for batch in [
            AttributeBatch::new(request.clone(), Vec::new()),
            AttributeBatch::new(header, detections),
        ] {
            let sent = batch.encode_to_vec();
            assert_eq!(batch.encoded_len(), sent.len());
            assert_eq!(batch.encoded_len(), request.encoded_len());
            assert_eq!(AttributeRequest::decode(sent.as_slice()).unwrap(), request);
        }
    }
}

#[test]
fn real_detections_go_to_attribution_as_the_attribute_request_of_the_same_events() {
    let events = data::real_detections();
    if events.is_empty() {
        return;
    }
    assert!(events.len() > 1_000, "{} events", events.len());
    assert!(events.iter().all(|e| !e.attributes.is_empty()));
    assert_attribute_request(&events);
    for batch in events.chunks(500) {
        assert_attribute_request(batch);
    }
}

#[test]
fn hostile_detections_go_to_attribution_as_the_attribute_request_of_the_same_events() {
    let mut full = DetectionEvent {
        event_id: "e".repeat(128),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: i64::MIN,
            nanos: -1,
        }),
        source: Some(attackmesh::proto::Endpoint {
            ip: "::ffff:10.0.0.1".into(),
            port: u32::MAX,
            ..Default::default()
        }),
        technique_hints: vec![String::new(); 300],
        submitted_by: "détecteur".into(),
        ..Default::default()
    };
    full.attributes = (0..2_000)
        .map(|i| (format!("k{i}\u{0}é"), "v".repeat(i % 300)))
        .collect::<BTreeMap<_, _>>();
    full.original = "\u{feff}{\"a\":\"\\u0000\"}".repeat(10_000);
    full.detector_confidence = Some(f64::MIN_POSITIVE);
    full.detector_kind = -1;
    full.severity = i32::MAX;
    let events = [DetectionEvent::default(), full, DetectionEvent::default()];
    assert_attribute_request(&events);
    assert_attribute_request(&events[..1]);
    assert_attribute_request(&[]);
}
