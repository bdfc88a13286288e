//! A TAXII envelope as a writer posts it (the body of `POST …/objects/`): refused whole (a 400)
//! unless it is a JSON envelope with `objects`; otherwise every item becomes exactly one stored
//! candidate or one failure with a reason, and every candidate holds what a stored object must
//! (see `attackmesh_fuzz::check_stix_object`).

#![no_main]

use attackmesh_fuzz::{check_stix_object, stix_now};
use attackmesh_intel::taxii::envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = stix_now();
    let Ok(posted) = envelope::read(data, now) else {
        return;
    };
    let items = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("objects").and_then(|o| o.as_array()).map(Vec::len))
        .expect("an accepted body is an envelope with an `objects` list");
    assert_eq!(posted.objects.len() + posted.failures.len(), items, "an item was lost or doubled");
    for failure in &posted.failures {
        assert!(!failure.message.is_empty(), "a failure without a reason: {failure:?}");
    }
    for object in &posted.objects {
        check_stix_object(object, now);
    }
});
