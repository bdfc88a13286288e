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

#[test]
fn the_writer_writes_what_the_value_tree_wrote_for_indicators_of_every_kind() {
    use attackmesh::proto::{Indicator, IndicatorType as T};
    let i = |kind: T, value: &str| Indicator {
        value: value.into(),
        r#type: kind as i32,
    };
    let every_kind = vec![
        i(T::Ipv4, "10.0.0.1"),
        i(T::Ipv4, "10.0.0.0/8"),
        i(T::Ipv6, "2001:db8::1"),
        i(T::Ipv4, "10.0.0.1"),
        i(T::Domain, "evil.example"),
        i(T::Url, "http://evil.example/x?a=\"b\""),
        i(T::FileMd5, "D41D8CD98F00B204E9800998ECF8427E"),
        i(T::FileMd5, "d41d8cd98f00b204e9800998ecf8427e"),
        i(T::FileSha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        i(
            T::FileSha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        i(T::FileName, "dropper.exe"),
        i(T::Email, "a@evil.example"),
        i(T::Unspecified, "what"),
        i(T::FileName, ""),
    ];
    // Every kind alone, every kind with the next, and all of them together.
    let mut lists: Vec<Vec<Indicator>> = every_kind.iter().map(|x| vec![x.clone()]).collect();
    lists.extend(every_kind.windows(2).map(<[Indicator]>::to_vec));
    lists.push(every_kind.clone());
    let mut ev = data::real_attributed_samples().swap_remove(0);
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for list in lists {
        ev.related_indicators = list;
        out.clear();
        ecs::write_document(&ev, now, Original::Drop, None, &mut out);
        let tree = ecs_tree::document(&ev, now, Original::Drop);
        assert_eq!(
            String::from_utf8_lossy(&out),
            serde_json::to_string(&tree).unwrap(),
            "{:?}",
            ev.related_indicators
        );
    }
}
