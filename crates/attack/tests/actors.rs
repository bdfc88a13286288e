//! Actor ranking: thin or generic evidence never names an actor strongly; a distinctive set of
//! a known group's techniques ranks that group first.

use std::collections::HashMap;

use attackmesh::proto::DetectorKind;
use attackmesh_attack::actors::THIN_EVIDENCE_CAP;
use attackmesh_attack::{Engine, Kb};

fn engine() -> Engine {
    Engine::embedded().expect("embedded engine")
}

/// How many active groups use each technique directly (a sub-technique counts for its parent).
fn group_counts(kb: &Kb) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for g in kb.groups().filter(|g| g.is_active()) {
        let mut family: Vec<&str> = g.techniques.iter().map(String::as_str).collect();
        family.extend(
            g.techniques
                .iter()
                .filter_map(|t| t.split_once('.').map(|(parent, _)| parent)),
        );
        family.sort_unstable();
        family.dedup();
        for t in family {
            *counts.entry(t).or_default() += 1;
        }
    }
    counts
}

#[test]
fn generic_techniques_never_give_a_high_score() {
    let engine = engine();
    let counts = group_counts(engine.kb());
    for pair in [
        ["T1059", "T1105"],
        ["T1082", "T1083"],
        ["T1071.001", "T1566.001"],
        ["T1059.001", "T1027"],
    ] {
        assert!(
            pair.iter().all(|t| counts[t] > 20),
            "{pair:?} should be generic: {:?}",
            pair.map(|t| counts[t])
        );
        let actors = engine.rank_actors(&pair);
        assert!(
            !actors.is_empty(),
            "{pair:?}: generic techniques still give (weak) leads"
        );
        for a in &actors {
            assert!(a.score <= THIN_EVIDENCE_CAP, "{pair:?}: {} scored {}", a.name, a.score);
        }
    }
}

#[test]
fn one_technique_is_thin_evidence_whatever_its_rarity() {
    let engine = engine();
    let counts = group_counts(engine.kb());
    let rare = counts
        .iter()
        .filter(|(_, n)| **n == 1)
        .map(|(t, _)| *t)
        .min()
        .expect("a technique used by one group");
    for a in engine.rank_actors(&[rare]) {
        assert!(a.score <= THIN_EVIDENCE_CAP, "{rare}: {} scored {}", a.name, a.score);
    }
}

#[test]
fn a_distinctive_set_ranks_its_group_first() {
    let engine = engine();
    let kb = engine.kb();
    let counts = group_counts(kb);
    for group_id in ["G0016", "G0007", "G0032", "G0096"] {
        let group = kb.group(group_id).expect("group");
        let mut techniques: Vec<&str> = group.techniques.iter().map(String::as_str).collect();
        techniques.sort_by_key(|t| (counts[t], *t));
        let distinctive = &techniques[..6];
        let ranked = engine.rank_actors(distinctive);
        let first = ranked.first().expect("a ranking");
        assert_eq!(
            first.group_id, group_id,
            "{} expected first for {distinctive:?}, got {ranked:?}",
            group.name
        );
        assert!(first.score > 0.6, "{}: {}", group.name, first.score);
        assert_eq!(first.matched_techniques.len(), 6);
        assert!(!first.aliases.is_empty() && first.stix_id.starts_with("intrusion-set--"));
        assert!(ranked.len() <= 5);
        assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
    }
}

#[test]
fn per_event_ranking_is_empty_on_thin_evidence() {
    let engine = engine();
    // One technique: no actors at all.
    let ev = attackmesh_testkit::event("port_scan", DetectorKind::TrafficMonitor, "", &[]);
    assert!(
        engine
            .attribute(&ev)
            .metadata
            .expect("metadata")
            .threat_actors
            .is_empty()
    );
    // Two generic techniques (T1105 + T1071.001 + T1573.002 from hints): still nothing claimed.
    let mut ev = attackmesh_testkit::event("heartbeat", DetectorKind::Other, "", &[]);
    ev.technique_hints = vec!["T1105".into(), "T1059".into()];
    let a = engine.attribute(&ev);
    assert_eq!(a.technique_ids.len(), 2);
    assert!(a.metadata.expect("metadata").threat_actors.is_empty());
}
