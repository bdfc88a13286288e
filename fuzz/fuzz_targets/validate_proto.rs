//! Hostile protobuf as a service receives it: decode a DetectionEvent (first byte even) or an
//! EnrichedEvent (odd), validate it as the services do, and require that an event that passes
//! validation can be written as canonical JSON and read back (what every sink and file does).

#![no_main]

use attackmesh::proto::{DetectionEvent, EnrichedEvent};
use attackmesh::validate;
use attackmesh_fuzz::json_round_trip;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        let Ok(mut event) = DetectionEvent::decode(rest) else { return };
        validate::prepare_detection(&mut event);
        match validate::detection_event(&event) {
            Ok(()) => json_round_trip(&event),
            Err(violations) => {
                assert!(!violations.is_empty());
                let _ = validate::to_status("events[0]", &violations);
            }
        }
    } else {
        let Ok(event) = EnrichedEvent::decode(rest) else { return };
        match validate::enriched_event(&event) {
            Ok(()) => json_round_trip(&event),
            Err(violations) => {
                assert!(!violations.is_empty());
                let _ = validate::to_status("events[0]", &violations);
            }
        }
    }
});
