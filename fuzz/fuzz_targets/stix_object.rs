//! One STIX object as a TAXII writer posts it: the checks refuse it with a reason, or let it
//! through holding what a stored object must (see `attackmesh_fuzz::check_stix_object`: checks
//! idempotent, id matching type, sortable in-range version, JSON round trip, merge over itself
//! never overflowing).

#![no_main]

use attackmesh_fuzz::{check_stix_object, stix_now};
use attackmesh_intel::stix::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = stix_now();
    match validate::check(&value, now) {
        Ok(object) => check_stix_object(&object, now),
        Err(why) => assert!(!why.is_empty(), "a refusal without a reason"),
    }
});
