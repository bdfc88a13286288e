//! The ECS writer against the value tree it replaced, over every event of the real samples.

use attackmesh_testkit::data;

use super::{Original, ecs, ecs_tree};

#[test]
fn the_writer_writes_what_the_value_tree_wrote_for_every_real_event() {
    let events = data::real_attributed_samples();
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for ev in &events {
        for original in [Original::Keep, Original::Drop] {
            out.clear();
            ecs::write_document(ev, now, original, None, &mut out);
            let tree = ecs_tree::document(ev, now, original);
            let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(written, tree, "{} ({original:?})", ev.event_id);
            // Same keys in the same order, same escapes, same numbers.
            assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(&tree).unwrap(),
                "{}",
                ev.event_id
            );
        }
    }
    eprintln!("{} events compared", events.len());
}
