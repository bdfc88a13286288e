//! The one way an [`EnrichedEvent`] is made from a detection and its attribution, and where
//! that puts each field of the detection ([`enriched_field`]).

use prost::{
    DecodeError,
    bytes::BufMut,
    encoding::{self, DecodeContext},
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
    while !detection.is_empty() {
        let field = detection;
        let (tag, wire_type) = encoding::decode_key(&mut detection)?;
        let key = field.len() - detection.len();
        encoding::skip_field(wire_type, tag, &mut detection, DecodeContext::default())?;
        if let Some(to) = enriched_field(tag).filter(|_| !except.contains(&tag)) {
            encoding::encode_key(to, wire_type, out);
            out.put_slice(&field[key..field.len() - detection.len()]);
        }
    }
    Ok(())
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
}
