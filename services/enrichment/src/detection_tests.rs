//! `IngestBatch` against the `IngestRequest` prost decodes, and received detections sent on for
//! attribution against the prepared events they stand for.

use attackmesh::proto::{AttributeRequest, DetectionEvent, EnrichedEvent, IngestRequest};
use attackmesh_testkit::data;
use prost::{Message, bytes::Buf};

use super::*;
use crate::encode::AttributeBatch;

/// Real detections, or generated ones without the shared data, with a detector's forgeries.
fn detections() -> Vec<DetectionEvent> {
    let mut events = data::real_detections();
    if events.is_empty() {
        events = (0..50)
            .map(|i| attackmesh_testkit::events::port_scan(&format!("scan-{i}"), "203.0.113.9"))
            .collect();
    }
    for (i, event) in events.iter_mut().enumerate() {
        match i % 3 {
            0 => event.event_id.clear(),
            1 => event.submitted_by = "someone-else".into(),
            _ => {}
        }
    }
    events
}

fn request(events: Vec<DetectionEvent>) -> IngestRequest {
    IngestRequest {
        batch_id: 7,
        events,
        trace_context: [("traceparent".to_owned(), "00-0af7-00f0-01".to_owned())].into(),
    }
}

/// A batch reads as the `IngestRequest` prost reads, each event keeping its bytes, and writes
/// back as that request.
#[test]
fn a_batch_reads_as_the_ingest_request_with_every_event_kept_as_it_arrived() {
    for events in [detections(), Vec::new(), vec![DetectionEvent::default()]] {
        let request = request(events);
        let wire = request.encode_to_vec();
        let batch = IngestBatch::decode(Bytes::from(wire.clone())).unwrap();
        assert_eq!(batch.batch_id, request.batch_id);
        assert_eq!(batch.trace_context, request.trace_context);
        let decoded: Vec<&DetectionEvent> = batch.events.iter().map(Detection::event).collect();
        assert_eq!(decoded, request.events.iter().collect::<Vec<_>>());
        for (detection, event) in batch.events.iter().zip(&request.events) {
            assert_eq!(detection.received.as_deref(), Some(event.encode_to_vec().as_slice()));
        }
        assert_eq!(
            IngestRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
            request
        );
        assert_eq!(batch.encoded_len(), batch.encode_to_vec().len());
    }
}

/// Read from a buffer in pieces, events still decode (without their bytes where they straddle).
#[test]
fn a_batch_in_pieces_reads_the_same() {
    let request = request(detections().into_iter().take(20).collect());
    let wire = request.encode_to_vec();
    let (a, b) = wire.split_at(wire.len() / 2);
    let batch = IngestBatch::decode(a.chain(b)).unwrap();
    let decoded: Vec<DetectionEvent> = batch.events.iter().map(|d| d.event().clone()).collect();
    assert_eq!(decoded, request.events);
    assert!(batch.events.iter().any(|d| d.received.is_none()));
    assert_eq!(
        IngestRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
        request
    );
}

/// An event nested `depth` groups deep in an unknown field (20), as field 2 of a request.
fn nested(depth: usize) -> Vec<u8> {
    let mut event = [0xa3, 0x01].repeat(depth);
    event.extend([0xa4, 0x01].repeat(depth));
    let mut wire = Vec::new();
    encoding::bytes::encode(2, &event, &mut wire);
    wire
}

/// What does not decode as an `IngestRequest` does not decode as a batch either, with the same
/// error; what does, does. Recursion depth is counted as prost counts it, so an event that
/// enrichment accepts is one attribution can decode inside its own request.
#[test]
fn a_batch_fails_as_the_ingest_request_fails() {
    let mut cases = vec![
        vec![0x12, 50, 1, 2, 3],
        vec![0x10, 1],
        vec![0x12, 2, 0x08],
        vec![0x1a, 4, 0x0a, 9, 0x61, 0x62],
        vec![0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ];
    cases.extend((95..105).map(nested));
    let mut accepted = 0;
    for wire in cases {
        let ours = IngestBatch::decode(wire.as_slice())
            .map(|_| ())
            .map_err(|e| e.to_string());
        let prost = IngestRequest::decode(wire.as_slice())
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(ours, prost, "{wire:02x?}");
        let ours = IngestBatch::decode(Bytes::from(wire.clone()))
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(ours, prost, "{wire:02x?}");
        match &ours {
            Err(error) => assert!(error.contains("IngestRequest."), "{error}"),
            Ok(()) => {
                accepted += 1;
                // Sent on as received, it decodes in attribution's request too.
                let events = IngestBatch::decode(Bytes::from(wire.clone())).unwrap().events;
                let sent = AttributeBatch::new(AttributeRequest::default(), events).encode_to_vec();
                assert!(AttributeRequest::decode(sent.as_slice()).is_ok(), "{wire:02x?}");
            }
        }
    }
    assert!(
        (1..15).contains(&accepted),
        "the depths tried straddle the limit: {accepted} accepted"
    );
}

/// A received detection, prepared, goes to attribution as the prepared event: its bytes as they
/// arrived, then the fields enrichment set.
#[test]
fn received_detections_go_to_attribution_as_the_prepared_events() {
    let request = request(detections());
    let batch = IngestBatch::decode(Bytes::from(request.encode_to_vec())).unwrap();
    let mut events = batch.events;
    for event in &mut events {
        event.prepare("det");
    }
    let prepared: Vec<DetectionEvent> = events.iter().map(|d| d.event().clone()).collect();
    assert!(
        prepared
            .iter()
            .all(|e| !e.event_id.is_empty() && e.submitted_by == "det")
    );
    let header = AttributeRequest {
        batch_id: 3,
        compact_for_attack_version: "18.1".into(),
        ..Default::default()
    };
    let sent = AttributeBatch::new(header.clone(), events);
    let wire = sent.encode_to_vec();
    assert_eq!(sent.encoded_len(), wire.len());
    let received = AttributeRequest::decode(wire.as_slice()).unwrap();
    assert_eq!(
        received,
        AttributeRequest {
            events: prepared,
            ..header
        }
    );
}

/// A received detection, prepared, goes to export as the enriched event of the prepared event,
/// written from its bytes; with the detector's bytes as prost writes them, as long as prost's
/// encoding of that event (so export can queue the bytes as they come instead of encoding the
/// event again).
#[test]
fn received_detections_go_to_export_as_the_enriched_events_of_the_prepared_events() {
    let engine = attackmesh_attack::Engine::embedded().unwrap();
    let mut events = detections();
    // With fields a detector cannot set on an enriched event (revision 20, campaign_id 22).
    let forged = DetectionEvent {
        description: "forged".into(),
        ..events[0].clone()
    };
    let mut wire = IngestRequest::default().encode_to_vec();
    for event in events.iter().chain([&forged]) {
        let mut bytes = event.encode_to_vec();
        if event.description == "forged" {
            encoding::uint32::encode(20, &7, &mut bytes);
            encoding::string::encode(22, &"campaign".to_owned(), &mut bytes);
        }
        encoding::bytes::encode(2, &bytes, &mut wire);
    }
    events.push(forged);
    let batch = IngestBatch::decode(Bytes::from(wire)).unwrap();
    assert_eq!(batch.events.len(), events.len());
    let mut encoder = crate::encode::EventEncoder::with_capacity(1);
    let mut expected = Vec::new();
    for mut detection in batch.events {
        detection.prepare("det");
        let attribution = engine.attribute(detection.event());
        expected.push(attackmesh::enriched_event(
            detection.event().clone(),
            attribution.clone(),
            2,
        ));
        encoder.push_enriched(detection, attribution, 2);
    }
    let sent = encoder.finish();
    assert_eq!(sent.len(), expected.len());
    assert!(
        expected
            .iter()
            .any(|e| e.metadata.is_some() && !e.attributes.is_empty())
    );
    for (i, (bytes, expected)) in sent.iter().zip(&expected).enumerate() {
        let mut got = EnrichedEvent::decode(bytes.as_ref()).unwrap();
        assert!(got.enriched_at.is_some());
        got.enriched_at = expected.enriched_at;
        assert_eq!(&got, expected, "event {i}");
        assert_eq!(got.submitted_by, "det");
        assert!(!got.event_id.is_empty());
        let forged = i == sent.len() - 1;
        if !forged {
            assert_eq!(bytes.len(), expected.encoded_len(), "event {i}");
        }
    }
}

/// A detection that did not arrive as bytes (HTTP, OTLP, `Enrich`, the re-attribution log) goes
/// to export as its enriched event, encoded by prost.
#[test]
fn other_detections_go_to_export_as_prost_encodes_their_enriched_events() {
    let engine = attackmesh_attack::Engine::embedded().unwrap();
    let events: Vec<DetectionEvent> = detections().into_iter().take(3).collect();
    let mut encoder = crate::encode::EventEncoder::with_capacity(events.len());
    for event in &events {
        encoder.push_enriched(Detection::from(event.clone()), engine.attribute(event), 1);
    }
    let sent = encoder.finish();
    assert_eq!(sent.len(), events.len());
    for (bytes, event) in sent.iter().zip(events) {
        let attribution = engine.attribute(&event);
        let mut expected = attackmesh::enriched_event(event, attribution, 1);
        expected.enriched_at = EnrichedEvent::decode(bytes.as_ref()).unwrap().enriched_at;
        assert_eq!(bytes.as_ref(), expected.encode_to_vec().as_slice());
    }
}
