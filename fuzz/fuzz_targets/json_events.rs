//! Canonical JSON decoding of hostile documents: `from_json` for DetectionEvent (first byte even)
//! or EnrichedEvent (odd). Whatever decodes must validate without panicking, survive protobuf
//! encoding, and encode to canonical JSON that decodes to the same thing.

#![no_main]

use attackmesh::json::{from_json, to_json};
use attackmesh::proto::{DetectionEvent, EnrichedEvent};
use attackmesh_fuzz::{json_round_trip, json_value};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if which % 2 == 0 {
        if let Ok(mut event) = from_json::<DetectionEvent>(text) {
            json_round_trip(&event);
            let wire = DetectionEvent::decode(event.encode_to_vec().as_slice()).expect("own encoding decodes");
            assert_eq!(json_value(&to_json(&wire)), json_value(&to_json(&event)), "protobuf changed the event");
            attackmesh::validate::prepare_detection(&mut event);
            if let Err(violations) = attackmesh::validate::detection_event(&event) {
                let _ = attackmesh::validate::to_status("events[0]", &violations);
            }
        }
    } else if let Ok(event) = from_json::<EnrichedEvent>(text) {
        json_round_trip(&event);
        let wire = EnrichedEvent::decode(event.encode_to_vec().as_slice()).expect("own encoding decodes");
        assert_eq!(json_value(&to_json(&wire)), json_value(&to_json(&event)), "protobuf changed the event");
        if let Err(violations) = attackmesh::validate::enriched_event(&event) {
            let _ = attackmesh::validate::to_status("events[0]", &violations);
        }
    }
});
