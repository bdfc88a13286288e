//! The one way an [`EnrichedEvent`] is made from a detection and its attribution, and where
//! that puts each field of the detection ([`enriched_field`]).

use prost::{
    DecodeError,
    bytes::BufMut,
    encoding::{self, DecodeContext, WireType},
};

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

/// The `EnrichedEvent` field [`enriched_event`] copies `DetectionEvent` field number `field`
/// into, or `None` for a field it does not copy (`technique_hints` and `detector_confidence`,
/// which only attribution reads) or that `DetectionEvent` does not have. Each pair has the same
/// type, and fields 1–9 keep their numbers, so a detection's encoding becomes the detection part
/// of its enriched event's encoding by renumbering fields.
pub fn enriched_field(field: u32) -> Option<u32> {
    match field {
        // event_id … description
        1..=9 => Some(field),
        // indicators → related_indicators
        10 => Some(12),
        // attributes, original, original_format, submitted_by
        13 => Some(16),
        14 => Some(17),
        15 => Some(18),
        16 => Some(21),
        _ => None,
    }
}

/// Writes the fields of `detection`, an encoded `DetectionEvent`, that [`enriched_event`] copies,
/// each renumbered by [`enriched_field`], except those numbered in `except`: the detection part
/// of its enriched event's encoding, in the order the fields came. Values are copied as they
/// are, never decoded. An error (bytes that do not walk as fields) may leave some written.
pub fn write_detection_fields(mut detection: &[u8], except: &[u32], out: &mut impl BufMut) -> Result<(), DecodeError> {
    // Every number `enriched_field` copies is below 32.
    let excepted = except
        .iter()
        .filter(|&&tag| tag < 32)
        .fold(0u32, |mask, &tag| mask | 1 << tag);
    while !detection.is_empty() {
        let (tag, wire_type, key, len) = match short_field(detection) {
            Some(field) => field,
            None => {
                let mut rest = detection;
                let (tag, wire_type) = encoding::decode_key(&mut rest)?;
                let key = detection.len() - rest.len();
                encoding::skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
                (tag, wire_type, key, detection.len() - rest.len())
            }
        };
        let (field, rest) = detection.split_at(len);
        detection = rest;
        if let Some(to) = enriched_field(tag).filter(|_| excepted & 1 << tag == 0) {
            // Every number it copies to is below 2,048: a key of one or two bytes.
            let to = to << 3 | wire_type as u32;
            if to < 0x80 {
                out.put_slice(&[to as u8]);
            } else {
                out.put_slice(&[to as u8 | 0x80, (to >> 7) as u8]);
            }
            out.put_slice(&field[key..]);
        }
    }
    Ok(())
}

/// The field at the start of `bytes` when it is of the kind nearly every detection field is,
/// read in place: a one-byte key (fields 1–15) and either a varint of at most nine bytes or a
/// length of one or two bytes and that many bytes after it. Its number, wire type, key length
/// and whole length; `None` for any other field, which prost walks (and whose errors are
/// prost's), so both read the same fields.
fn short_field(bytes: &[u8]) -> Option<(u32, WireType, usize, usize)> {
    let key = *bytes.first()?;
    let tag = u32::from(key >> 3);
    if key >= 0x80 || tag == 0 {
        return None;
    }
    match key & 7 {
        0 => {
            let value = bytes.get(1..)?.iter().take(9).position(|&b| b < 0x80)? + 1;
            Some((tag, WireType::Varint, 1, 1 + value))
        }
        2 => {
            let (len, width) = match *bytes.get(1..3.min(bytes.len()))? {
                [b, ..] if b < 0x80 => (usize::from(b), 1),
                [b, c] if c < 0x80 => (usize::from(b & 0x7f) | usize::from(c) << 7, 2),
                _ => return None,
            };
            let end = 1 + width + len;
            (end <= bytes.len()).then_some((tag, WireType::LengthDelimited, 1, end))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{Endpoint, Indicator};

    /// A detection's encoding with every field renumbered by [`enriched_field`] (the others left
    /// out).
    fn renumbered(detection: &DetectionEvent) -> Vec<u8> {
        let mut out = Vec::new();
        write_detection_fields(&detection.encode_to_vec(), &[], &mut out).unwrap();
        out
    }

    #[test]
    fn every_copied_field_is_renumbered_to_where_enriched_event_puts_it() {
        let endpoint = |ip: &str| Endpoint {
            ip: ip.into(),
            port: 443,
            hostname: "h".into(),
            ..Default::default()
        };
        let detection = DetectionEvent {
            event_id: "id-1".into(),
            timestamp: Some(pbjson_types::Timestamp { seconds: 7, nanos: 9 }),
            source_service: "svc".into(),
            detector_kind: 3,
            event_type: "t".into(),
            source: Some(endpoint("10.0.0.1")),
            destination: Some(endpoint("10.0.0.2")),
            severity: 4,
            description: "d".into(),
            indicators: vec![Indicator {
                value: "1.2.3.4".into(),
                r#type: 1,
            }],
            technique_hints: vec!["T1046".into()],
            detector_confidence: Some(0.5),
            attributes: [("k".to_owned(), "v".to_owned())].into(),
            original: "{}".into(),
            original_format: "ndjson".into(),
            submitted_by: "caller".into(),
        };
        let mut expected = enriched_event(detection.clone(), Attribution::default(), 0);
        expected.enriched_at = None;
        let got = EnrichedEvent::decode(renumbered(&detection).as_slice()).unwrap();
        assert_eq!(got, expected);
        // Every field but the two attribution alone reads was set, and carried.
        assert_eq!(
            (1..=16).filter(|&f| enriched_field(f).is_none()).collect::<Vec<_>>(),
            [11, 12]
        );
        assert_eq!(enriched_field(17), None);
        assert_eq!(enriched_field(0), None);
    }

    #[test]
    fn fields_a_detection_does_not_have_and_the_fields_excepted_are_left_out() {
        let detection = DetectionEvent {
            event_id: "a".into(),
            description: "d".into(),
            submitted_by: "forged".into(),
            ..Default::default()
        };
        let mut bytes = detection.encode_to_vec();
        // What a detector might send to set enriched fields it has no number for: revision (20),
        // campaign_id (22), and an unknown group. A detection's decoding skips them.
        encoding::uint32::encode(20, &99, &mut bytes);
        encoding::string::encode(22, &"c".to_owned(), &mut bytes);
        encoding::encode_key(30, encoding::WireType::StartGroup, &mut bytes);
        encoding::uint32::encode(1, &5, &mut bytes);
        encoding::encode_key(30, encoding::WireType::EndGroup, &mut bytes);
        assert_eq!(DetectionEvent::decode(bytes.as_slice()).unwrap(), detection);
        let mut out = Vec::new();
        write_detection_fields(&bytes, &[1, 16], &mut out).unwrap();
        let expected = EnrichedEvent {
            description: "d".into(),
            ..Default::default()
        };
        assert_eq!(EnrichedEvent::decode(out.as_slice()).unwrap(), expected);
        // A length past the end does not walk.
        assert!(write_detection_fields(&[0x0a, 0x05, b'a'], &[], &mut Vec::new()).is_err());
    }

    /// The fields as prost walks them, one at a time: what [`write_detection_fields`] must
    /// write for any bytes, read in place or not.
    fn walked_by_prost(mut detection: &[u8], except: &[u32]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        while !detection.is_empty() {
            let field = detection;
            let (tag, wire_type) = encoding::decode_key(&mut detection)?;
            let key = field.len() - detection.len();
            encoding::skip_field(wire_type, tag, &mut detection, DecodeContext::default())?;
            if let Some(to) = enriched_field(tag).filter(|_| !except.contains(&tag)) {
                encoding::encode_key(to, wire_type, &mut out);
                out.extend_from_slice(&field[key..field.len() - detection.len()]);
            }
        }
        Ok(out)
    }

    fn written(detection: &[u8], except: &[u32]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        write_detection_fields(detection, except, &mut out).map(|()| out)
    }

    #[test]
    fn fields_read_in_place_are_the_fields_prost_walks() {
        // Lengths of one, two and three bytes, varints of one to ten bytes, a group, field
        // numbers past 15, and every way of ending short.
        let mut bytes = Vec::new();
        encoding::string::encode(1, &"a".repeat(127), &mut bytes);
        encoding::string::encode(5, &"b".repeat(128), &mut bytes);
        encoding::string::encode(9, &"c".repeat(16_384), &mut bytes);
        for v in [0, 1, 127, 128, 1 << 20, 1 << 62, u64::MAX] {
            encoding::uint64::encode(4, &v, &mut bytes);
        }
        encoding::string::encode(16, &"s".to_owned(), &mut bytes);
        encoding::encode_key(14, WireType::StartGroup, &mut bytes);
        encoding::uint32::encode(1, &5, &mut bytes);
        encoding::encode_key(14, WireType::EndGroup, &mut bytes);
        encoding::fixed32::encode(15, &7, &mut bytes);
        encoding::fixed64::encode(3, &7, &mut bytes);
        for end in 0..=bytes.len() {
            let cut = &bytes[..end];
            match (written(cut, &[1]), walked_by_prost(cut, &[1])) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "first {end} bytes"),
                (Err(_), Err(_)) => {}
                (got, want) => panic!("first {end} bytes: {got:?} against {want:?}"),
            }
        }
        // A key of field 0, an eleven-byte varint, a non-minimal length.
        for odd in [
            &[0x02, 0x00][..],
            &[0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x0a, 0x81, 0x00, b'x'],
        ] {
            assert_eq!(written(odd, &[]).ok(), walked_by_prost(odd, &[]).ok(), "{odd:?}");
        }
    }

    /// Fields of every wire type, numbered 1–20, with lengths and values of every width.
    fn fields() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec((1u32..=20, 0u8..4, any::<u64>(), 0usize..300), 0..12).prop_map(|fields| {
            let mut bytes = Vec::new();
            for (tag, kind, value, len) in fields {
                match kind {
                    0 => encoding::uint64::encode(tag, &(value >> (value % 64)), &mut bytes),
                    1 => encoding::bytes::encode(tag, &vec![b'x'; len], &mut bytes),
                    2 => encoding::fixed32::encode(tag, &(value as u32), &mut bytes),
                    _ => encoding::fixed64::encode(tag, &value, &mut bytes),
                }
            }
            bytes
        })
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_written_as_prost_walks_them(
            bytes in fields(),
            change in proptest::option::of((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>())),
        ) {
            let mut bytes = bytes;
            if let Some((at, to)) = change.filter(|_| !bytes.is_empty()) {
                let at = at.index(bytes.len());
                bytes[at] = to;
            }
            let got = written(&bytes, &PREPARED);
            let want = walked_by_prost(&bytes, &PREPARED);
            proptest::prop_assert_eq!(got.is_ok(), want.is_ok());
            proptest::prop_assert_eq!(got.ok(), want.ok());
        }
    }

    const PREPARED: [u32; 2] = [1, 16];
}
