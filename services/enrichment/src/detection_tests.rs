//! `IngestBatch` against the `IngestRequest` prost decodes, and received detections sent on for
//! attribution against the prepared events they stand for.

use attackmesh::proto::{AttributeRequest, DetectionEvent, EnrichedEvent, IngestRequest};
use attackmesh_testkit::data;
use prost::{
    Message,
    bytes::Buf,
    encoding::{self as encoding, WireType},
};

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
        let decoded: Vec<DetectionEvent> = batch.events.iter().map(Detection::to_event).collect();
        assert_eq!(decoded, request.events);
        for (detection, event) in batch.events.iter().zip(&request.events) {
            assert_eq!(
                detection.received().map(|b| &b[..]),
                Some(event.encode_to_vec().as_slice())
            );
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
    let decoded: Vec<DetectionEvent> = batch.events.iter().map(Detection::to_event).collect();
    assert_eq!(decoded, request.events);
    assert!(batch.events.iter().any(|d| d.received().is_none()));
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
        // Field 4 is `AttributeRequest`'s, not `IngestRequest`'s: skipped whatever it holds.
        vec![0x20, 1],
        vec![0x22, 2, 0xff, 0xfe],
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
        (3..17).contains(&accepted),
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
    let prepared: Vec<DetectionEvent> = events.iter().map(Detection::to_event).collect();
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
        let attribution = engine.attribute(&detection.to_event());
        expected.push(attackmesh::enriched_event(detection.to_event(), attribution.clone(), 2));
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
        let forged = i == sent.len() - 1;
        if !forged {
            // As long as prost's encoding of the expected event stamped at the same time (the
            // length of a timestamp's nanoseconds depends on their value).
            let stamped = EnrichedEvent {
                enriched_at: got.enriched_at,
                ..expected.clone()
            };
            assert_eq!(bytes.len(), stamped.encoded_len(), "event {i}");
        }
        got.enriched_at = expected.enriched_at;
        assert_eq!(&got, expected, "event {i}");
        assert_eq!(got.submitted_by, "det");
        assert!(!got.event_id.is_empty());
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

/// An attribute entry of `fields`, each (field number, wire type, bytes).
fn entry(fields: &[(u32, WireType, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, wire_type, bytes) in fields {
        encoding::encode_key(*tag, *wire_type, &mut body);
        match wire_type {
            WireType::LengthDelimited => {
                encoding::encode_varint(bytes.len() as u64, &mut body);
                body.extend_from_slice(bytes);
            }
            _ => body.extend_from_slice(bytes),
        }
    }
    body
}

/// A `key`, `value` entry as every map encoder writes it.
fn pair(key: &str, value: &str) -> Vec<u8> {
    entry(&[
        (1, WireType::LengthDelimited, key.as_bytes()),
        (2, WireType::LengthDelimited, value.as_bytes()),
    ])
}

/// An event of `description` and these attribute entries, as field 2 of a request, with an
/// event before it whose attributes are as prost writes them.
fn with_entries(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut event = Vec::new();
    encoding::string::encode(9, &"before".to_owned(), &mut event);
    for (i, e) in entries.iter().enumerate() {
        encoding::bytes::encode(13, e, &mut event);
        if i == 0 {
            // Another field between entries.
            encoding::string::encode(5, &"between".to_owned(), &mut event);
        }
    }
    let mut wire = request(detections().into_iter().take(1).collect()).encode_to_vec();
    encoding::bytes::encode(2, &event, &mut wire);
    wire
}

/// Attributes as detectors may write them, well or badly: a batch reads as prost reads the
/// request (the same events, or the same error), whether the attributes are left in the bytes
/// or decoded.
#[test]
fn attributes_read_as_prost_reads_them() {
    let bad = [0xff_u8, 0xfe];
    let cases: Vec<Vec<u8>> = vec![
        with_entries(&[pair("a", "1"), pair("b", "2")]),
        with_entries(&[pair("b", "2"), pair("a", "1")]),
        with_entries(&[pair("a", "1"), pair("a", "2")]),
        with_entries(&[pair("a", "1"), pair("c", "3"), pair("b", "2"), pair("d", "4")]),
        with_entries(&[pair("", "empty key"), pair("k", "")]),
        with_entries(&[entry(&[(2, WireType::LengthDelimited, b"no key")])]),
        with_entries(&[entry(&[(1, WireType::LengthDelimited, b"no value")])]),
        with_entries(&[Vec::new(), pair("a", "1")]),
        with_entries(&[entry(&[
            (1, WireType::LengthDelimited, b"k"),
            (1, WireType::LengthDelimited, b"k2"),
            (2, WireType::LengthDelimited, b"v"),
        ])]),
        with_entries(&[
            pair("a", "1"),
            entry(&[
                (1, WireType::LengthDelimited, b"b"),
                (2, WireType::LengthDelimited, b"2"),
                (3, WireType::Varint, &[5]),
            ]),
        ]),
        with_entries(&[entry(&[
            (1, WireType::LengthDelimited, b"g"),
            (3, WireType::StartGroup, &[]),
            (3, WireType::EndGroup, &[]),
        ])]),
        with_entries(&[pair("a", "1"), entry(&[(1, WireType::LengthDelimited, &bad)])]),
        with_entries(&[pair("a", "1"), entry(&[(2, WireType::LengthDelimited, &bad)])]),
        with_entries(&[entry(&[(1, WireType::Varint, &[1])])]),
        with_entries(&[vec![0x0a, 9, b'a']]),
        with_entries(&[pair("a", &"v".repeat(300)), pair("é", "\u{0}")]),
        // Attributes as a varint, and as a length past the event's end.
        {
            let mut wire = Vec::new();
            encoding::bytes::encode(2, &vec![0x68_u8, 0x01], &mut wire);
            wire
        },
        {
            let mut wire = Vec::new();
            encoding::bytes::encode(2, &vec![0x6a_u8, 0x05, 0x0a, 0x01], &mut wire);
            wire
        },
    ];
    let (mut accepted, mut refused) = (0, 0);
    for wire in cases {
        let prost = IngestRequest::decode(wire.as_slice()).map(|r| r.events);
        let ours = IngestBatch::decode(Bytes::from(wire.clone()));
        match (&ours, &prost) {
            (Ok(batch), Ok(events)) => {
                accepted += 1;
                let decoded: Vec<DetectionEvent> = batch.events.iter().map(Detection::to_event).collect();
                assert_eq!(&decoded, events, "{wire:02x?}");
                for (detection, event) in batch.events.iter().zip(events) {
                    let attributes: Vec<(&str, &str)> = detection.attributes().collect();
                    let expected: Vec<(&str, &str)> =
                        event.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    assert_eq!(attributes, expected, "{wire:02x?}");
                    assert_eq!(detection.validate(), attackmesh::validate::detection_event(event));
                    assert_eq!(detection, &Detection::from(event.clone()));
                }
            }
            (Err(ours), Err(prost)) => {
                refused += 1;
                assert_eq!(ours.to_string(), prost.to_string(), "{wire:02x?}");
            }
            _ => panic!("{wire:02x?}: ours {:?}, prost {prost:?}", ours.map(|b| b.events.len())),
        }
    }
    assert!(accepted >= 10 && refused >= 4, "{accepted} accepted, {refused} refused");
}

/// Detections whose attributes were left in their bytes: checked as their events are, and
/// equal only when their events are.
#[test]
fn attributes_left_in_the_bytes_check_and_compare_as_the_event() {
    let events = detections();
    let batch = IngestBatch::decode(Bytes::from(request(events.clone()).encode_to_vec())).unwrap();
    assert!(
        batch.events.iter().all(|d| d.held.is_held()),
        "attributes as prost writes them are left in the bytes"
    );
    for (detection, event) in batch.events.iter().zip(&events) {
        assert_eq!(detection.validate(), attackmesh::validate::detection_event(event));
    }
    // Attributes a check refuses: too many, too long, an empty key.
    let mut refused = events[0].clone();
    refused.attributes = (0..attackmesh::limits::MAX_ATTRIBUTES + 1)
        .map(|i| (format!("k{i:04}"), "v".into()))
        .collect();
    refused.attributes.insert(String::new(), "x".into());
    refused.attributes.insert(
        "long".into(),
        "v".repeat(attackmesh::limits::MAX_ATTRIBUTE_VALUE_BYTES + 1),
    );
    let mut other = refused.clone();
    other.attributes.insert("long".into(), "w".into());
    let batch = IngestBatch::decode(Bytes::from(
        request(vec![refused.clone(), other.clone(), refused.clone()]).encode_to_vec(),
    ))
    .unwrap();
    let [a, b, c] = &batch.events[..] else { panic!() };
    assert!(a.held.is_held() && b.held.is_held());
    let violations = a.validate().unwrap_err();
    assert_eq!(Err(violations.clone()), attackmesh::validate::detection_event(&refused));
    assert!(violations.len() >= 3, "{violations:?}");
    assert_eq!(a, c);
    assert_ne!(a, b);
    assert_eq!(a, &Detection::from(refused.clone()));
    assert_ne!(b, &Detection::from(refused));
    let mut whole = b.clone();
    assert_eq!(whole.whole(), &other);
    assert_eq!(&whole, b);
}
