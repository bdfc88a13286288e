use std::{collections::HashMap, sync::Arc};

use prost::Message;

use super::*;
use crate::queue::tests::event;

fn framed(ev: &EncodedEvent) -> Vec<u8> {
    let mut out = Vec::new();
    ev.frame_into(9, &mut out);
    out
}

#[test]
fn a_received_event_is_framed_as_the_bytes_it_arrived_as_unless_they_carry_unknown_fields() {
    let trace = Arc::new(HashMap::from([("traceparent".to_owned(), "00-ab-cd-01".to_owned())]));
    let event = event(1);
    let fresh = framed(&EncodedEvent::new(event.clone(), trace.clone(), 7));
    let bytes = bytes::Bytes::from(event.encode_to_vec());
    let received = ReceivedEvent::decode(bytes.clone()).unwrap();
    assert_eq!(received.event().to_event(), event);
    let kept = EncodedEvent::received(received, trace.clone(), 7);
    assert_eq!(
        framed(&kept),
        fresh,
        "prost's own encoding is the same record either way"
    );
    assert!(kept.framed_len() >= fresh.len());

    // A field of a newer contract (number 900): the event is framed as this release encodes it.
    let mut newer = event.encode_to_vec();
    prost::encoding::uint64::encode(900, &5, &mut newer);
    let received = ReceivedEvent::decode(bytes::Bytes::from(newer)).unwrap();
    assert_eq!(framed(&EncodedEvent::received(received, trace, 7)), fresh);

    // The record reads back as the event.
    match parse(&fresh) {
        Frame::Record { end } => {
            let entry = decode(&fresh[HEADER..end]).unwrap();
            assert_eq!((entry.seq, entry.enqueued_at_micros), (9, 7));
            assert_eq!(entry.event, Some(event));
        }
        other => panic!("{other:?}"),
    }
}

/// One attribute field as an encoder may write it: key (1) and value (2) in the given order,
/// then `extra` bytes inside the entry.
fn attribute_field(parts: &[(u32, &str)], extra: &[u8]) -> Vec<u8> {
    let mut entry = Vec::new();
    for (tag, text) in parts {
        prost::encoding::string::encode(*tag, &(*text).to_owned(), &mut entry);
    }
    entry.extend_from_slice(extra);
    let mut field = Vec::new();
    prost::encoding::encode_key(16, prost::encoding::WireType::LengthDelimited, &mut field);
    prost::encoding::encode_varint(entry.len() as u64, &mut field);
    field.extend_from_slice(&entry);
    field
}

#[test]
fn attributes_decode_as_the_map_field_does_and_only_prosts_own_encoding_is_kept() {
    let trace = Arc::new(HashMap::from([("traceparent".to_owned(), "00-ab-cd-01".to_owned())]));
    let mut event = event(1);
    event.attributes = [("alert.signature", "ET SCAN"), ("dest_port", "22"), ("proto", "TCP")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    event.original = "{}".into();
    let own = event.encode_to_vec();
    let fresh = framed(&EncodedEvent::new(event.clone(), trace.clone(), 7));
    let rest = EnrichedEvent {
        attributes: Default::default(),
        ..event.clone()
    }
    .encode_to_vec();
    let field = |k: &str, v: &str| attribute_field(&[(1, k), (2, v)], &[]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("prost's own encoding", own.clone(), true),
        (
            "attributes out of key order, after the other fields",
            [
                rest.clone(),
                field("proto", "TCP"),
                field("dest_port", "22"),
                field("alert.signature", "ET SCAN"),
            ]
            .concat(),
            true,
        ),
        (
            "a key repeated: the last value counts",
            [own.clone(), field("dest_port", "22")].concat(),
            false,
        ),
        (
            "value before key in an entry",
            [
                rest.clone(),
                attribute_field(&[(2, "TCP"), (1, "proto")], &[]),
                field("dest_port", "22"),
                field("alert.signature", "ET SCAN"),
            ]
            .concat(),
            true,
        ),
        (
            "an empty value written out",
            [own.clone(), attribute_field(&[(1, "empty"), (2, "")], &[])].concat(),
            false,
        ),
        (
            "an unknown field inside an entry",
            [
                rest.clone(),
                field("proto", "TCP"),
                field("dest_port", "22"),
                attribute_field(&[(1, "alert.signature"), (2, "ET SCAN")], &[0x18, 0x01]),
            ]
            .concat(),
            false,
        ),
        (
            "a field of a newer contract",
            [own.clone(), vec![0xa0, 0x38, 0x05]].concat(),
            false,
        ),
    ];
    for (what, bytes, exact) in cases {
        let expected = EnrichedEvent::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let received =
            ReceivedEvent::decode(bytes::Bytes::from(bytes.clone())).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(received.event().to_event(), expected, "{what}");
        assert_eq!(received.event().is_as_encoded(), exact, "{what}");
        let kept = EncodedEvent::received(received, trace.clone(), 7);
        if exact {
            // Kept as it arrived: the same event, in the order it came.
            let record = framed(&kept);
            assert!(record.ends_with(&bytes), "{what}: the received bytes are queued");
            match parse(&record) {
                Frame::Record { end } => {
                    let entry = decode(&record[HEADER..end]).unwrap();
                    assert_eq!(entry.event.as_ref(), Some(&expected), "{what}");
                }
                other => panic!("{what}: {other:?}"),
            }
        } else if expected == event {
            assert_eq!(framed(&kept), fresh, "{what}: encoded afresh");
        } else {
            let own = framed(&EncodedEvent::new(expected, trace.clone(), 7));
            assert_eq!(framed(&kept), own, "{what}: encoded afresh");
        }
    }

    // Broken attribute fields are refused as the generated decoder refuses them, field named.
    for (what, bytes) in [
        (
            "entry past the end",
            [own.clone(), vec![0x82, 0x01, 0x09, 0x0a]].concat(),
        ),
        ("wrong wire type", [own.clone(), vec![0x80, 0x01, 0x05]].concat()),
        (
            "key not UTF-8",
            [rest.clone(), vec![0x82, 0x01, 0x04, 0x0a, 0x02, 0xff, 0xfe]].concat(),
        ),
    ] {
        let expected = EnrichedEvent::decode(bytes.as_slice()).expect_err(what).to_string();
        let error = ReceivedEvent::decode(bytes::Bytes::from(bytes))
            .expect_err(what)
            .to_string();
        assert_eq!(error, expected, "{what}");
        assert!(error.contains("EnrichedEvent.attributes"), "{what}: {error}");
    }
}

#[test]
fn bytes_that_are_not_an_event_are_refused() {
    for bad in [&[0x0a, 50, 1][..], &[0x08, 1], &[0xff]] {
        assert!(
            ReceivedEvent::decode(bytes::Bytes::copy_from_slice(bad)).is_err(),
            "{bad:?}"
        );
    }
}
