//! Which correlation replica owns an entity: rendezvous (highest random weight) hashing over
//! the replicas' positions, shared by the sender (siem-export's correlation sink) and the
//! receiver (a correlation replica), so both agree without talking to each other.
//!
//! The hash is fixed (FNV-1a with a 64-bit finaliser), never the process's randomised hasher:
//! owners must agree across processes, restarts and releases. Growing from `n` to `n + 1`
//! replicas moves only the entities the new replica wins (about `1 / (n + 1)` of them).

use attackmesh::proto::EnrichedEvent;

/// Event fields the sink routes by and a correlation rule's windows are owned by: the first of
/// a rule's `group-by` fields that is one of these.
pub const ENTITY_FIELDS: [&str; 6] = [
    "source.ip",
    "source.hostname",
    "source.user",
    "destination.ip",
    "destination.hostname",
    "destination.user",
];

/// FNV-1a over `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads the bits of `x`.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The replica (0-based) that owns `entity` among `count` replicas; 0 when `count` is 0 or 1.
pub fn owner(entity: &str, count: u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    let key = fnv1a(entity.as_bytes());
    (0..count)
        .max_by_key(|&i| mix(key ^ mix(u64::from(i) + 1)))
        .unwrap_or(0)
}

/// The value of one of [`ENTITY_FIELDS`] in `event`; empty when unset or not an entity field.
pub fn entity_value<'a>(event: &'a EnrichedEvent, field: &str) -> &'a str {
    let (side, key) = match field.split_once('.') {
        Some(("source", key)) => (event.source.as_ref(), key),
        Some(("destination", key)) => (event.destination.as_ref(), key),
        _ => return "",
    };
    match (side, key) {
        (Some(e), "ip") => &e.ip,
        (Some(e), "hostname") => &e.hostname,
        (Some(e), "user") => &e.user,
        _ => "",
    }
}

/// The replicas (sorted, without repeats) that own at least one entity of `event`: every one
/// that may keep a window the event belongs to.
pub fn owners(event: &EnrichedEvent, count: u32) -> Vec<u32> {
    let mut out: Vec<u32> = ENTITY_FIELDS
        .iter()
        .map(|f| entity_value(event, f))
        .filter(|v| !v.is_empty())
        .map(|v| owner(v, count))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_spread_and_move_little_on_growth() {
        assert_eq!(owner("10.0.0.1", 1), 0);
        assert_eq!(owner("10.0.0.1", 3), owner("10.0.0.1", 3));
        let keys: Vec<String> = (0..3000)
            .map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256))
            .collect();
        let mut per = [0usize; 3];
        for k in &keys {
            per[owner(k, 3) as usize] += 1;
        }
        assert!(per.iter().all(|&n| n > 800), "{per:?}");
        let moved = keys.iter().filter(|k| owner(k, 3) != owner(k, 4)).count();
        assert!(
            keys.iter().all(|k| owner(k, 3) == owner(k, 4) || owner(k, 4) == 3),
            "only to the new replica"
        );
        assert!(moved < 1000, "{moved}");
    }
}
