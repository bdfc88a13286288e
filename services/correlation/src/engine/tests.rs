use attackmesh::proto::{Endpoint, EnrichedEvent};

use super::*;

fn engine() -> Engine {
    let pack = Pack::parse(&[("network.yml", rules::BUILTIN)]).unwrap();
    Engine::new(pack, Vec::new(), Limits::default()).unwrap()
}

fn conn(id: &str, secs: i64, src: &str, dst: &str, port: u32) -> EnrichedEvent {
    let mut e = EnrichedEvent {
        event_id: id.into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: secs,
            nanos: 0,
        }),
        event_type: "zeek.conn".into(),
        source: Some(Endpoint {
            ip: src.into(),
            port: 50000,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: dst.into(),
            port,
            ..Default::default()
        }),
        revision: 1,
        ..Default::default()
    };
    e.attributes.insert("conn_state".into(), "REJ".into());
    e
}

fn run(engine: &mut Engine, events: &[EnrichedEvent]) -> Vec<DetectionEvent> {
    let mut out = Vec::new();
    for e in events {
        engine.observe(e, Shard::default(), &mut out);
    }
    out
}

#[test]
fn port_scan_fires_once_with_evidence_and_a_stable_id() {
    let events: Vec<_> = (0..40)
        .map(|i| {
            conn(
                &format!("c{i}"),
                1_700_000_000 + i,
                "10.0.0.9",
                "10.0.0.20",
                1000 + i as u32,
            )
        })
        .collect();
    let found = run(&mut engine(), &events);
    let scans: Vec<_> = found
        .iter()
        .filter(|f| f.event_type == "correlation.port_scan")
        .collect();
    assert_eq!(scans.len(), 1, "{found:#?}");
    assert_eq!(scans[0].technique_hints, ["T1046"]);
    assert!(scans[0].original.contains("\"c0\"") && scans[0].original.contains("\"c19\""));
    assert_eq!(scans[0].source.as_ref().unwrap().ip, "10.0.0.9");
    let again = run(&mut engine(), &events);
    assert_eq!(found, again, "same input, same findings and ids");
}

#[test]
fn resends_and_own_findings_are_ignored_and_late_events_do_not_count() {
    let mut e = engine();
    let one = conn("a", 1_700_000_000, "10.0.0.9", "10.0.0.20", 22);
    let mut out = Vec::new();
    assert_eq!(e.observe(&one, Shard::default(), &mut out), Observed::Applied);
    assert_eq!(e.observe(&one, Shard::default(), &mut out), Observed::Ignored);
    let mut own = one.clone();
    own.event_id = "b".into();
    own.source_service = DETECTOR.into();
    assert_eq!(e.observe(&own, Shard::default(), &mut out), Observed::Ignored);
    e.observe(
        &conn("c", 1_700_010_000, "10.0.0.9", "10.0.0.20", 23),
        Shard::default(),
        &mut out,
    );
    assert_eq!(
        e.observe(
            &conn("d", 1_700_000_001, "10.0.0.9", "10.0.0.20", 23),
            Shard::default(),
            &mut out
        ),
        Observed::Late
    );
}

#[test]
fn memory_is_bounded_and_evictions_are_counted() {
    let pack = Pack::parse(&[("network.yml", rules::BUILTIN)]).unwrap();
    let limits = Limits {
        max_groups: 1000,
        ..Limits::default()
    };
    let mut e = Engine::new(pack, Vec::new(), limits).unwrap();
    let mut out = Vec::new();
    for i in 0..20_000u32 {
        let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        e.observe(
            &conn(&format!("e{i}"), 1_700_000_000, &src, "10.9.9.9", 80),
            Shard::default(),
            &mut out,
        );
        assert!(e.groups() <= 1000);
    }
    assert!(e.stats().evicted > 0);
}

#[test]
fn snapshot_restores_windows() {
    let events: Vec<_> = (0..25)
        .map(|i| {
            conn(
                &format!("c{i}"),
                1_700_000_000 + i,
                "10.0.0.9",
                "10.0.0.20",
                1000 + i as u32,
            )
        })
        .collect();
    let mut whole = engine();
    let expected = run(&mut whole, &events);
    let mut first = engine();
    let mut found = run(&mut first, &events[..10]);
    let mut second = engine();
    second.restore(&first.snapshot()).unwrap();
    found.extend(run(&mut second, &events[5..]));
    assert_eq!(
        found, expected,
        "a restart with a replay of the overlap finds the same, once"
    );
}

#[test]
fn shards_keep_only_their_windows() {
    let events: Vec<_> = (0..25)
        .map(|i| {
            conn(
                &format!("c{i}"),
                1_700_000_000 + i,
                "10.0.0.9",
                "10.0.0.20",
                1000 + i as u32,
            )
        })
        .collect();
    let mut total = 0;
    for index in 0..3 {
        let mut e = engine();
        let mut out = Vec::new();
        for ev in &events {
            e.observe(ev, Shard { index, count: 3 }, &mut out);
        }
        total += out.len();
    }
    assert_eq!(total, 1, "exactly one replica owns the scanner's window");
}

#[test]
fn success_after_a_run_of_failures() {
    let mut e = engine();
    let mut events = Vec::new();
    for i in 0..5 {
        let mut f = conn(&format!("f{i}"), 1_700_000_060 + i, "198.51.100.7", "10.0.0.5", 22);
        f.event_type = "decoy_login_failed".into();
        events.push(f);
    }
    let mut ok = conn("ok", 1_700_000_070, "198.51.100.7", "10.0.0.5", 22);
    ok.event_type = "decoy_login".into();
    events.push(ok);
    let found = run(&mut e, &events);
    let kinds: Vec<&str> = found.iter().map(|f| f.event_type.as_str()).collect();
    assert_eq!(kinds, ["correlation.success_after_failures"], "{found:#?}");
    assert_eq!(found[0].technique_hints, ["T1110", "T1078"]);
}

#[test]
fn findings_are_valid_detections() {
    let events: Vec<_> = (0..25)
        .map(|i| {
            conn(
                &format!("c{i}"),
                1_700_000_000 + i,
                "10.0.0.9",
                "10.0.0.20",
                1000 + i as u32,
            )
        })
        .collect();
    for mut f in run(&mut engine(), &events) {
        attackmesh::validate::prepare_detection(&mut f);
        if let Err(v) = attackmesh::validate::detection_event(&f) {
            panic!("{v:?}");
        }
    }
}
