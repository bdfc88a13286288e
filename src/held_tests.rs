//! `Held` against the events prost decodes: the same attributes read in place, looked up, counted
//! and compared, and the bytes kept exactly when they are prost's encoding.

use prost::{Message, bytes::Bytes};

use super::*;

fn event(attributes: &[(&str, &str)]) -> EnrichedEvent {
    EnrichedEvent {
        event_id: "e-1".into(),
        description: "ET SCAN".into(),
        revision: 1,
        attributes: attributes.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect(),
        ..Default::default()
    }
}

/// The attribute field of one entry, key and value as given (an empty one written out).
fn entry(key: &str, value: &str) -> Vec<u8> {
    let mut body = Vec::new();
    encoding::string::encode(1, &key.to_owned(), &mut body);
    encoding::string::encode(2, &value.to_owned(), &mut body);
    let mut field = Vec::new();
    encoding::encode_key(16, WireType::LengthDelimited, &mut field);
    encoding::encode_varint(body.len() as u64, &mut field);
    field.extend_from_slice(&body);
    field
}

#[test]
fn held_attributes_read_look_up_and_count_as_the_decoded_map() {
    let plain = event(&[("a", "1"), ("alert.signature_id", "2001219"), ("b", ""), ("é", "ü\"\n")]);
    let held = Held::<EnrichedEvent>::decode(Bytes::from(plain.encode_to_vec())).unwrap();
    assert!(held.is_held());
    assert!(held.event().attributes.is_empty(), "left in the bytes");
    assert!(held.attributes().eq(plain.attributes()));
    assert!(held.attribute_bytes().eq(plain.attribute_bytes()));
    assert!(
        held.attribute_bytes()
            .eq(held.attributes().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    );
    assert_eq!(held.attribute_count(), 4);
    for (key, value) in &plain.attributes {
        assert_eq!(held.attribute(key), Some(value.as_str()), "{key}");
    }
    for absent in ["", "0", "alert", "alert.signature_id2", "z", "éé"] {
        assert_eq!(held.attribute(absent), None, "{absent}");
    }
    assert_eq!(held, Held::from(plain.clone()));
    assert_eq!(held.to_event(), plain);
    assert!(held.is_as_encoded());
    let mut whole = held.clone();
    assert_eq!(whole.whole(), &plain);
    assert!(!whole.is_held());
    assert_eq!(whole, held);
}

#[test]
fn attributes_out_of_order_or_repeated_are_decoded_as_prost_decodes_them() {
    let rest = event(&[]).encode_to_vec();
    // (what, attributes, left in the bytes, the bytes as long as prost's encoding)
    for (what, attributes, held, as_encoded) in [
        ("in order", vec![entry("a", "1"), entry("b", "2")], true, true),
        ("out of order", vec![entry("b", "2"), entry("a", "1")], false, true),
        ("repeated", vec![entry("a", "1"), entry("a", "2")], false, false),
        ("an empty value written out", vec![entry("a", "")], true, false),
        (
            "an empty key written out",
            vec![entry("", "1"), entry("a", "2")],
            true,
            false,
        ),
    ] {
        let bytes = [rest.clone(), attributes.concat()].concat();
        let want = EnrichedEvent::decode(bytes.as_slice()).unwrap();
        let got = Held::<EnrichedEvent>::decode(Bytes::from(bytes)).unwrap();
        assert_eq!(got.to_event(), want, "{what}");
        assert!(got.attributes().eq(want.attributes()), "{what}");
        assert!(got.attribute_bytes().eq(want.attribute_bytes()), "{what}");
        assert_eq!(
            got.attribute("a"),
            want.attributes.get("a").map(String::as_str),
            "{what}"
        );
        assert_eq!(got.attribute_count(), want.attributes.len(), "{what}");
        assert_eq!(got.is_held(), held, "{what}");
        assert_eq!(got.is_as_encoded(), as_encoded, "{what}");
    }
}

#[test]
fn an_event_not_received_is_its_own_view_and_not_as_encoded() {
    let plain = event(&[("k", "v")]);
    let held = Held::from(plain.clone());
    assert!(!held.is_held());
    assert_eq!(held.bytes(), None);
    assert!(!held.is_as_encoded());
    assert_eq!(held.attribute("k"), Some("v"));
    assert_eq!(held.into_event(), plain);
}
