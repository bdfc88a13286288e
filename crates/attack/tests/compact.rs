//! Compact attributions lose nothing: stripping an attribution and expanding it with a
//! knowledge base of the same release and the rule-pack version gives back exactly what the
//! engine made, for the real Suricata, Zeek, Cowrie and Windows samples and for a detector hint
//! naming a revoked technique; the engine's directly made compact form is exactly the stripped
//! one; and expansion refuses what it cannot fill truthfully.

use attackmesh::formats::Format;
use attackmesh::proto::{Attribution, DetectionEvent, DetectorKind};
use attackmesh_attack::{Engine, Kb, compact};

fn engine() -> Engine {
    Engine::embedded().expect("embedded engine")
}

/// Strips and expands `full` and says whether anything differs; counts what was stripped.
fn round_trip(engine: &Engine, full: &Attribution, context: &str) -> usize {
    let mut compact = full.clone();
    compact::strip(&mut compact);
    assert!(compact.technique_ids.is_empty(), "{context}");
    let metadata = compact.metadata.as_ref().expect("metadata");
    for t in &metadata.techniques {
        assert!(t.name.is_empty() && t.tactics.is_empty() && t.url.is_empty() && t.stix_id.is_empty());
        assert!(!t.id.is_empty() && !t.evidence.is_empty(), "{context}: {t:?}");
    }
    for a in &metadata.threat_actors {
        assert!(a.name.is_empty() && a.aliases.is_empty() && a.stix_id.is_empty());
        assert!(!a.group_id.is_empty(), "{context}: {a:?}");
    }
    assert!(metadata.rule_pack_version.is_empty(), "{context}: sent once per answer");
    let saved = prost::Message::encoded_len(full) - prost::Message::encoded_len(&compact);
    let version = &full.metadata.as_ref().expect("metadata").rule_pack_version;
    compact::expand(engine.kb(), &mut compact, version).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(&compact, full, "{context}: expanded differs from the full attribution");
    saved
}

fn samples() -> Option<Vec<(String, DetectionEvent)>> {
    let dir = attackmesh_testkit::shared_data()?.join("samples");
    let mut files = vec![(Format::Cowrie, dir.join("cowrie/cowrie_local_session.json"))];
    for f in ["first-org-conf-2015", "honeypot-2018", "wrccdc-2017"] {
        files.push((Format::SuricataEve, dir.join(format!("suricata/{f}.eve.ndjson"))));
    }
    for f in [
        "notice.log",
        "dns.log",
        "http.log",
        "conn.log",
        "weird.log",
        "files.log",
        "ssl.log",
    ] {
        files.push((Format::Zeek, dir.join("zeek/zat-0.4.9").join(f)));
    }
    // Windows events, for Sigma evidence.
    let evtx = attackmesh_testkit::evtx_files(&dir.join("evtx-attack-samples/Execution"));
    files.extend(evtx.into_iter().map(|p| (Format::Evtx, p)));
    let mut out = Vec::new();
    for (format, path) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (line, ev) in attackmesh_testkit::sample_events(format, &path) {
            out.push((format!("{name}:{line}"), ev));
        }
    }
    Some(out)
}

#[test]
fn strip_then_expand_gives_back_the_attributions_of_the_real_samples() {
    let Some(events) = samples() else { return };
    let engine = engine();
    let (mut attributed, mut with_actors, mut saved) = (0, 0, 0);
    for (context, ev) in &events {
        let full = engine.attribute(ev);
        let metadata = full.metadata.as_ref().expect("metadata");
        attributed += usize::from(!metadata.techniques.is_empty());
        with_actors += usize::from(!metadata.threat_actors.is_empty());
        saved += round_trip(&engine, &full, context);
        let mut stripped = full.clone();
        compact::strip(&mut stripped);
        assert_eq!(
            engine.attribute_compact(ev),
            stripped,
            "{context}: made compact differs from stripped"
        );
    }
    println!(
        "{} events, {attributed} attributed, {with_actors} with candidate groups; {saved} bytes not sent",
        events.len()
    );
    assert!(attributed > 100, "expected the samples to attribute, got {attributed}");
    assert!(saved > 0);
}

#[test]
fn strip_then_expand_keeps_revoked_hints_and_candidate_groups() {
    let engine = engine();
    let mut ev = attackmesh_testkit::event(
        "falco.alert",
        DetectorKind::BehaviouralAnalysis,
        "custom rule fired",
        &[("rule", "My custom rule")],
    );
    // T1073 is revoked (replaced by T1574.001); APT29's own techniques make groups worth ranking.
    let apt29 = engine.kb().group("G0016").expect("APT29");
    ev.technique_hints = std::iter::once("T1073".to_owned())
        .chain(apt29.techniques.iter().take(8).cloned())
        .collect();
    let full = engine.attribute(&ev);
    let metadata = full.metadata.as_ref().expect("metadata");
    assert!(metadata.techniques.iter().any(|t| t.replaces_revoked_id == "T1073"));
    assert!(!metadata.threat_actors.is_empty(), "{metadata:?}");
    round_trip(&engine, &full, "revoked hint");
    let mut stripped = full.clone();
    compact::strip(&mut stripped);
    assert_eq!(
        engine.attribute_compact(&ev),
        stripped,
        "made compact differs from stripped"
    );
    let degraded = Engine::degraded(engine.kb(), &ev);
    round_trip(&engine, &degraded, "degraded");
}

#[test]
fn expansion_refuses_another_release_and_unknown_ids() {
    let engine = engine();
    let mut ev = attackmesh_testkit::port_scan("e1", "203.0.113.9");
    ev.technique_hints = vec!["T1046".into()];
    let mut other = engine.attribute(&ev);
    compact::strip(&mut other);
    let mut unknown = other.clone();
    other.attack_version = "17.0".into();
    let error = compact::expand(engine.kb(), &mut other, "").expect_err("other release");
    assert!(error.to_string().contains("17.0"), "{error}");
    unknown.metadata.as_mut().expect("metadata").techniques[0].id = "T9999".into();
    let error = compact::expand(engine.kb(), &mut unknown.clone(), "").expect_err("unknown technique");
    assert!(error.to_string().contains("T9999"), "{error}");
    let error = compact::for_export(engine.kb(), &mut other, "").expect_err("other release");
    assert!(error.to_string().contains("17.0"), "{error}");
    let error = compact::for_export(engine.kb(), &mut unknown, "").expect_err("unknown technique");
    assert!(error.to_string().contains("T9999"), "{error}");
}

#[test]
fn only_the_service_own_release_is_answered_compact() {
    let engine = engine();
    let kb = engine.kb();
    assert!(compact::answers_compact(kb, kb.attack_version()));
    assert!(!compact::answers_compact(kb, ""));
    assert!(!compact::answers_compact(kb, "17.0"));
}

/// The compact form of an `Export` batch: `attribution` made compact as enrichment sends it.
fn export_form(engine: &Engine, ev: &DetectionEvent) -> Attribution {
    let mut compact = engine.attribute_compact(ev);
    compact::for_export(engine.kb(), &mut compact, engine.rule_pack_version()).expect("compact for export");
    compact
}

/// The event enrichment makes of `ev` and `attribution`, at a fixed time.
fn enriched(ev: &DetectionEvent, attribution: Attribution) -> attackmesh::proto::EnrichedEvent {
    let mut event = attackmesh::enriched_event(ev.clone(), attribution, 1);
    event.enriched_at = Some(pbjson_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 5,
    });
    event
}

/// Writing a compact event by reference gives the bytes of writing the full one, and filling it
/// in gives the full event, for every real sample, a revoked hint with candidate groups, and a
/// degraded event (whose details travel in full even in a compact batch).
#[test]
fn compact_events_are_written_and_filled_in_as_the_full_ones() {
    let engine = engine();
    let kb: &Kb = engine.kb();
    let mut events = samples().unwrap_or_default();
    let mut hinted = attackmesh_testkit::event(
        "falco.alert",
        DetectorKind::BehaviouralAnalysis,
        "custom rule fired",
        &[("rule", "My custom rule")],
    );
    let apt29 = kb.group("G0016").expect("APT29");
    hinted.technique_hints = std::iter::once("T1073".to_owned())
        .chain(apt29.techniques.iter().take(8).cloned())
        .collect();
    events.push(("revoked hint".into(), hinted.clone()));
    let (mut written, mut with_actors) = (0, 0);
    for (context, ev) in &events {
        let full = enriched(ev, engine.attribute(ev));
        let mut compact = enriched(ev, export_form(&engine, ev));
        assert_eq!(compact.technique_ids, full.technique_ids, "{context}");
        let (mut want, mut got) = (Vec::new(), Vec::new());
        attackmesh::json::write_enriched_event(&full, true, &mut want);
        attackmesh::json::write_compact_event(&compact, true, kb, &mut got);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{context}"
        );
        let metadata = compact.metadata.as_mut().expect("metadata");
        with_actors += usize::from(!metadata.threat_actors.is_empty());
        assert_eq!(compact::fill_in(kb, metadata), 0, "{context}");
        assert_eq!(compact, full, "{context}: filled in differs from the full event");
        written += 1;
    }
    assert!(with_actors > 0, "expected candidate groups among {written} events");
    let degraded = enriched(&hinted, Engine::degraded(kb, &hinted));
    let (mut want, mut got) = (Vec::new(), Vec::new());
    attackmesh::json::write_enriched_event(&degraded, false, &mut want);
    attackmesh::json::write_compact_event(&degraded, false, kb, &mut got);
    assert_eq!(got, want, "a full event in a compact batch is written as it is");
}

/// An id the knowledge base does not hold exactly (unknown, or in another case) is left as it
/// is, written and filled in alike, and counted.
#[test]
fn filling_in_leaves_what_the_knowledge_base_does_not_hold() {
    let engine = engine();
    let kb: &Kb = engine.kb();
    let mut ev = attackmesh_testkit::port_scan("e1", "203.0.113.9");
    ev.technique_hints = vec!["T1046".into(), "T1110".into()];
    let mut event = enriched(&ev, export_form(&engine, &ev));
    let metadata = event.metadata.as_mut().expect("metadata");
    assert!(metadata.techniques.len() >= 2, "{metadata:?}");
    metadata.techniques[0].id = "T9999".into();
    metadata.techniques[1].id = metadata.techniques[1].id.to_lowercase();
    metadata.threat_actors.push(attackmesh::proto::ThreatActor {
        group_id: "G9999".into(),
        score: 0.5,
        ..Default::default()
    });
    let mut written = Vec::new();
    attackmesh::json::write_compact_event(&event, false, kb, &mut written);
    let metadata = event.metadata.as_mut().expect("metadata");
    assert_eq!(compact::fill_in(kb, metadata), 3);
    assert!(metadata.techniques[..2].iter().all(|t| t.name.is_empty()));
    assert!(
        metadata
            .threat_actors
            .iter()
            .all(|a| a.group_id != "G9999" || a.name.is_empty())
    );
    let mut filled = Vec::new();
    attackmesh::json::write_enriched_event(&event, false, &mut filled);
    assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&filled));
}
