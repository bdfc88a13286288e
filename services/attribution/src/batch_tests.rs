//! `AttributeBatch` against the `AttributeRequest` prost decodes.

use attackmesh::held::EventView;
use attackmesh::proto::AttributeRequest;
use attackmesh_testkit::data;
use prost::{
    Message,
    bytes::{Buf, Bytes},
    encoding,
};

use super::*;

/// Real detections, or generated ones without the shared data.
fn detections() -> Vec<DetectionEvent> {
    let events = data::real_detections();
    if !events.is_empty() {
        return events;
    }
    (0..50)
        .map(|i| attackmesh_testkit::events::port_scan(&format!("scan-{i}"), "203.0.113.9"))
        .collect()
}

fn request(events: Vec<DetectionEvent>) -> AttributeRequest {
    AttributeRequest {
        batch_id: 7,
        events,
        trace_context: [("traceparent".to_owned(), "00-0af7-00f0-01".to_owned())].into(),
        compact_for_attack_version: "18.1".into(),
    }
}

fn events(batch: &AttributeBatch) -> Vec<DetectionEvent> {
    batch.events.iter().map(Held::to_event).collect()
}

/// A batch reads as the `AttributeRequest` prost reads, each event's attributes left in its
/// bytes, and writes back as that request.
#[test]
fn a_batch_reads_as_the_attribute_request() {
    for request in [
        request(detections()),
        AttributeRequest::default(),
        request(vec![DetectionEvent::default()]),
    ] {
        let wire = request.encode_to_vec();
        let batch = AttributeBatch::decode(Bytes::from(wire.clone())).unwrap();
        assert_eq!(batch.batch_id, request.batch_id);
        assert_eq!(batch.trace_context, request.trace_context);
        assert_eq!(batch.compact_for_attack_version, request.compact_for_attack_version);
        assert_eq!(events(&batch), request.events);
        for (held, event) in batch.events.iter().zip(&request.events) {
            assert_eq!(held.attribute_count(), event.attributes.len());
            assert!(held.is_as_encoded());
        }
        assert!(
            batch
                .events
                .iter()
                .zip(&request.events)
                .all(|(h, e)| e.attributes.is_empty() || h.is_held()),
            "every event with attributes holds them"
        );
        assert_eq!(
            AttributeRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
            request
        );
        assert_eq!(batch.encoded_len(), batch.encode_to_vec().len());
        assert_eq!(batch.encoded_len(), wire.len());
        assert_eq!(AttributeBatch::from(request.clone()), {
            let mut b = batch.clone();
            b.events = request.events.iter().cloned().map(Held::from).collect();
            b
        });
    }
}

/// Read from a buffer in pieces, events still decode (decoded whole where they straddle).
#[test]
fn a_batch_in_pieces_reads_the_same() {
    let request = request(detections().into_iter().take(20).collect());
    let wire = request.encode_to_vec();
    let (a, b) = wire.split_at(wire.len() / 2);
    let batch = AttributeBatch::decode(a.chain(b)).unwrap();
    assert_eq!(events(&batch), request.events);
    assert!(batch.events.iter().any(|e| e.bytes().is_none()));
    assert_eq!(
        AttributeRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
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

/// What does not decode as an `AttributeRequest` does not decode as a batch either, with the
/// same error naming the same field; what does, does, to the same request. Recursion depth
/// is counted as prost counts it.
#[test]
fn a_batch_fails_as_the_attribute_request_fails() {
    let one = request(detections().into_iter().take(3).collect()).encode_to_vec();
    let mut cases = vec![
        vec![0x12, 50, 1, 2, 3],
        vec![0x10, 1],
        vec![0x12, 2, 0x08],
        vec![0x1a, 4, 0x0a, 9, 0x61, 0x62],
        vec![0x22, 2, 0xff, 0xfe],
        vec![0x20, 1],
        vec![0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        // An attribute entry whose value is not UTF-8.
        vec![0x12, 8, 0x6a, 6, 0x0a, 1, b'k', 0x12, 1, 0xff],
    ];
    cases.extend((95..105).map(nested));
    // Every truncation of a real request.
    cases.extend((0..one.len()).step_by(7).map(|n| one[..n].to_vec()));
    let (mut accepted, mut refused) = (0, 0);
    for wire in cases {
        let prost = AttributeRequest::decode(wire.as_slice()).map_err(|e| e.to_string());
        for ours in [
            AttributeBatch::decode(wire.as_slice()),
            AttributeBatch::decode(Bytes::from(wire.clone())),
        ] {
            match (&ours, &prost) {
                (Ok(ours), Ok(prost)) => {
                    assert_eq!(
                        AttributeRequest::decode(ours.encode_to_vec().as_slice()).as_ref(),
                        Ok(prost),
                        "{wire:02x?}"
                    );
                    assert_eq!(events(ours), prost.events, "{wire:02x?}");
                }
                (Err(ours), Err(prost)) => {
                    assert_eq!(&ours.to_string(), prost, "{wire:02x?}");
                    assert!(prost.contains("AttributeRequest."), "{prost}");
                }
                _ => panic!("{wire:02x?}: ours {ours:?}, prost {prost:?}"),
            }
        }
        match prost {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(accepted > 5 && refused > 5, "{accepted} accepted, {refused} refused");
}
