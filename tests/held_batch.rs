//! `DetectionBatch` against the request prost decodes, for both requests it reads
//! (`IngestRequest` and `AttributeRequest`): the same fields and events, each detection's
//! attributes held, written back as the same request, and every message that prost refuses
//! refused with prost's error.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fmt::Debug;

use attackmesh::held::{Attribute, DetectionBatch, DetectionRequest, EventView, Held, Ingest};
use attackmesh::proto::{AttributeRequest, DetectionEvent, IngestRequest};
use attackmesh_testkit::data;
use prost::{
    Message,
    bytes::{Buf, Bytes},
    encoding,
};

/// A request prost decodes, and the batch that reads it.
trait Request: Message + Default + PartialEq + Debug + Clone {
    type Kind: DetectionRequest;
    fn make(events: Vec<DetectionEvent>) -> Self;
    fn events(&self) -> &[DetectionEvent];
    fn batch_id(&self) -> u64;
    fn trace_context(&self) -> &HashMap<String, String>;
    /// `compact_for_attack_version`; empty for a request without it.
    fn compact(&self) -> &str;
}

fn trace_context() -> HashMap<String, String> {
    [("traceparent".to_owned(), "00-0af7-00f0-01".to_owned())].into()
}

impl Request for IngestRequest {
    type Kind = Ingest;
    fn make(events: Vec<DetectionEvent>) -> Self {
        Self {
            batch_id: 7,
            events,
            trace_context: trace_context(),
        }
    }
    fn events(&self) -> &[DetectionEvent] {
        &self.events
    }
    fn batch_id(&self) -> u64 {
        self.batch_id
    }
    fn trace_context(&self) -> &HashMap<String, String> {
        &self.trace_context
    }
    fn compact(&self) -> &str {
        ""
    }
}

impl Request for AttributeRequest {
    type Kind = Attribute;
    fn make(events: Vec<DetectionEvent>) -> Self {
        Self {
            batch_id: 7,
            events,
            trace_context: trace_context(),
            compact_for_attack_version: "18.1".into(),
        }
    }
    fn events(&self) -> &[DetectionEvent] {
        &self.events
    }
    fn batch_id(&self) -> u64 {
        self.batch_id
    }
    fn trace_context(&self) -> &HashMap<String, String> {
        &self.trace_context
    }
    fn compact(&self) -> &str {
        &self.compact_for_attack_version
    }
}

type Batch<P> = DetectionBatch<Held<DetectionEvent>, <P as Request>::Kind>;

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

fn events<R>(batch: &DetectionBatch<Held<DetectionEvent>, R>) -> Vec<DetectionEvent> {
    batch.events.iter().map(Held::to_event).collect()
}

/// A batch reads as the request prost reads, each event's attributes left in its bytes, and
/// writes back as that request.
fn reads_as<P: Request>() {
    for request in [
        P::make(detections()),
        P::default(),
        P::make(vec![DetectionEvent::default()]),
    ] {
        let wire = request.encode_to_vec();
        let batch = Batch::<P>::decode(Bytes::from(wire.clone())).unwrap();
        assert_eq!(batch.batch_id, request.batch_id());
        assert_eq!(&batch.trace_context, request.trace_context());
        assert_eq!(batch.compact_for_attack_version, request.compact());
        assert_eq!(events(&batch), request.events());
        for (held, event) in batch.events.iter().zip(request.events()) {
            assert_eq!(held.attribute_count(), event.attributes.len());
            assert!(held.is_as_encoded());
            assert!(event.attributes.is_empty() || held.is_held(), "attributes held");
        }
        assert_eq!(P::decode(batch.encode_to_vec().as_slice()).unwrap(), request);
        assert_eq!(batch.encoded_len(), batch.encode_to_vec().len());
        assert_eq!(batch.encoded_len(), wire.len());
    }
}

#[test]
fn a_batch_reads_as_the_request() {
    reads_as::<IngestRequest>();
    reads_as::<AttributeRequest>();
}

#[test]
fn a_batch_is_made_from_the_request() {
    let request = AttributeRequest::make(detections().into_iter().take(5).collect());
    let batch = Batch::<AttributeRequest>::from(request.clone());
    assert_eq!(batch.compact_for_attack_version, "18.1");
    assert_eq!(events(&batch), request.events);
    assert_eq!(
        AttributeRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
        request
    );
    let request = IngestRequest::make(request.events);
    let batch = Batch::<IngestRequest>::from(request.clone());
    assert_eq!(
        IngestRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
        request
    );
}

/// Read from a buffer in pieces, events still decode (decoded whole where they straddle).
fn reads_in_pieces<P: Request>() {
    let request = P::make(detections().into_iter().take(20).collect());
    let wire = request.encode_to_vec();
    let (a, b) = wire.split_at(wire.len() / 2);
    let batch = Batch::<P>::decode(a.chain(b)).unwrap();
    assert_eq!(events(&batch), request.events());
    assert!(batch.events.iter().any(|e| e.bytes().is_none()));
    assert_eq!(P::decode(batch.encode_to_vec().as_slice()).unwrap(), request);
}

#[test]
fn a_batch_in_pieces_reads_the_same() {
    reads_in_pieces::<IngestRequest>();
    reads_in_pieces::<AttributeRequest>();
}

/// An event nested `depth` groups deep in an unknown field (20), as field 2 of a request.
fn nested(depth: usize) -> Vec<u8> {
    let mut event = [0xa3, 0x01].repeat(depth);
    event.extend([0xa4, 0x01].repeat(depth));
    let mut wire = Vec::new();
    encoding::bytes::encode(2, &event, &mut wire);
    wire
}

/// What does not decode as the request does not decode as a batch either, with the same error
/// naming the same request and field; what does, does, to the same request. Recursion depth is
/// counted as prost counts it. Field 4 is `AttributeRequest`'s only: an `IngestRequest` skips
/// it whatever it holds.
fn fails_as<P: Request>() -> (usize, usize) {
    let one = P::make(detections().into_iter().take(3).collect()).encode_to_vec();
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
    // Every seventh truncation of a real request.
    cases.extend((0..one.len()).step_by(7).map(|n| one[..n].to_vec()));
    let (mut accepted, mut refused) = (0, 0);
    for wire in cases {
        let prost = P::decode(wire.as_slice()).map_err(|e| e.to_string());
        for ours in [
            Batch::<P>::decode(wire.as_slice()),
            Batch::<P>::decode(Bytes::from(wire.clone())),
        ] {
            match (&ours, &prost) {
                (Ok(ours), Ok(prost)) => {
                    assert_eq!(
                        P::decode(ours.encode_to_vec().as_slice()).as_ref(),
                        Ok(prost),
                        "{wire:02x?}"
                    );
                    assert_eq!(events(ours), prost.events(), "{wire:02x?}");
                }
                (Err(ours), Err(prost)) => {
                    assert_eq!(&ours.to_string(), prost, "{wire:02x?}");
                    let name = format!("{}.", <P::Kind as DetectionRequest>::NAME);
                    assert!(prost.contains(&name), "{prost}");
                }
                _ => panic!("{wire:02x?}: ours {ours:?}, prost {prost:?}"),
            }
        }
        match prost {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    (accepted, refused)
}

#[test]
fn a_batch_fails_as_the_request_fails() {
    for (accepted, refused) in [fails_as::<IngestRequest>(), fails_as::<AttributeRequest>()] {
        assert!(accepted > 5 && refused > 5, "{accepted} accepted, {refused} refused");
    }
}

/// Field 4 that is not a string: an error naming it in an `AttributeRequest`, skipped in an
/// `IngestRequest`.
#[test]
fn field_4_is_read_only_in_an_attribute_request() {
    for wire in [vec![0x20, 1], vec![0x22, 2, 0xff, 0xfe]] {
        let error = Batch::<AttributeRequest>::decode(wire.as_slice()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("AttributeRequest.compact_for_attack_version"),
            "{error}"
        );
        let batch = Batch::<IngestRequest>::decode(wire.as_slice()).unwrap();
        assert_eq!(batch, Batch::<IngestRequest>::default());
    }
}
