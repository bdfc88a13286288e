//! The ATT&CK view every shape reads, and the ECS, HEC and OCSF shapes agreeing on it.

use attackmesh::{
    formats::Format,
    proto::{EnrichedEvent, Indicator, IndicatorType, Severity},
};
use attackmesh_testkit::fixtures;
use serde_json::{Value, json};

use super::{Original, attack::AttackView, ecs, hec, ocsf};

fn envelope(ev: &attackmesh::proto::EnrichedEvent) -> Value {
    serde_json::from_slice(&hec::envelope_bytes(ev, &hec::Metadata::default())).unwrap()
}

#[test]
fn the_view_holds_each_technique_with_its_parent_and_each_tactic_once() {
    let mut ev = fixtures::event(1);
    // A sub-technique the attribution did not detail, whose parent the event does not carry.
    ev.technique_ids.push("T1059.004".into());
    let kb_url = "https://attack.mitre.org/techniques/T1110/001";
    ev.metadata.as_mut().unwrap().techniques[0].url = kb_url.into();
    let view = AttackView::of(&ev, None);
    let techniques: Vec<_> = view
        .techniques
        .iter()
        .map(|t| (t.id, t.parent, t.parent_name))
        .collect();
    assert_eq!(
        techniques,
        [
            ("T1110.001", "T1110", "Brute Force"),
            ("T1110", "T1110", "Brute Force"),
            ("T1046", "T1046", "Network Service Discovery"),
            ("T1059.004", "T1059", "Command and Scripting Interpreter"),
        ]
    );
    assert!(view.techniques[3].detail.is_none() && view.techniques[3].tactics().is_empty());
    assert_eq!(view.details().count(), 3);
    assert_eq!(
        view.techniques[0].parent_reference,
        "https://attack.mitre.org/techniques/T1110/"
    );
    // The page the attribution names wins; ATT&CK's page stands in when it names none.
    assert_eq!(view.techniques[0].page(), kb_url);
    assert_eq!(
        view.techniques[3].page(),
        "https://attack.mitre.org/techniques/T1059/004/"
    );
    let tactics: Vec<_> = view.tactics.iter().map(|t| (t.id, t.name)).collect();
    assert_eq!(tactics, [("TA0006", "Credential Access"), ("TA0007", "Discovery")]);
    assert_eq!(
        view.tactic_reference("TA0007"),
        "https://attack.mitre.org/tactics/TA0007/"
    );
    // Only the actor scoring at least 0.5 is claimed; both stay ranked candidates.
    assert_eq!(view.actors.len(), 2);
    let groups: Vec<_> = view
        .groups
        .iter()
        .map(|g| (g.actor.group_id, g.reference.as_str()))
        .collect();
    assert_eq!(groups, [("G0016", "https://attack.mitre.org/groups/G0016/")]);
    assert_eq!((view.severity_name(), view.severity_number()), ("high", 73));
}

#[test]
fn an_event_without_severity_is_reported_low_in_every_shape() {
    let mut ev = fixtures::event(1);
    ev.severity = Severity::Unspecified as i32;
    let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
    assert_eq!(doc["event"]["severity"], 21);
    assert_eq!(doc["attackmesh"]["severity"], "low");
    let env = envelope(&ev);
    assert_eq!(env["event"]["severity"], "low");
    assert_eq!(env["event"]["severity_id"], 21);
    assert_eq!(env["fields"]["severity"], "low");
}

#[test]
fn ecs_and_hec_tell_the_same_attribution() {
    for ev in [fixtures::event(1), fixtures::degraded_event(2)] {
        let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
        let env = envelope(&ev);
        let mitre = &env["event"]["mitre_attack"];
        let ann = &env["event"]["annotations"]["mitre_attack"];
        let id = &ev.event_id;
        assert_eq!(doc["attackmesh"]["technique_ids"], mitre["technique_ids"], "{id}");
        assert_eq!(doc["threat"]["tactic"]["id"], mitre["tactic_ids"], "{id}");
        assert_eq!(doc["threat"]["tactic"]["name"], ann["mitre_tactic"], "{id}");
        assert_eq!(doc["threat"]["group"]["name"], ann["mitre_threat_group_name"], "{id}");
        assert_eq!(doc["event"]["severity"], env["event"]["severity_id"], "{id}");
        assert_eq!(doc["attackmesh"]["severity"], env["event"]["severity"], "{id}");
    }
}

#[test]
fn a_parent_technique_is_named_from_attack_when_only_its_sub_technique_was_seen() {
    let mut ev = fixtures::event(1);
    // Only T1110.001 attributed (its parent T1110 is not in the event), and a detail-less hint.
    let meta = ev.metadata.as_mut().unwrap();
    meta.techniques.retain(|t| t.id == "T1110.001");
    ev.technique_ids = vec!["T1110.001".into(), "T1059.004".into()];
    let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
    assert_eq!(doc["threat"]["technique"]["id"], serde_json::json!(["T1110", "T1059"]));
    assert_eq!(
        doc["threat"]["technique"]["name"],
        serde_json::json!(["Brute Force", "Command and Scripting Interpreter"])
    );
    assert_eq!(
        doc["threat"]["technique"]["subtechnique"]["id"],
        serde_json::json!(["T1110.001", "T1059.004"])
    );
    // The pairing keeps the parent by id under its tactic (its name is in `threat.*` above).
    let pairing = &doc["attackmesh"]["threat"][0];
    assert_eq!(pairing["tactic"], serde_json::json!({"id": "TA0006"}));
    assert_eq!(
        pairing["technique"],
        serde_json::json!([{"id": "T1110", "subtechnique": [{"id": "T1110.001"}]}])
    );
}

#[test]
fn the_ocsf_finding_pairs_each_sub_technique_with_its_parent_and_tactic() {
    let ev = fixtures::event(1);
    let f = ocsf::finding(&ev, Original::Keep, None);
    assert_eq!(
        (&f["class_uid"], &f["type_uid"], &f["activity_id"]),
        (&json!(2004), &json!(200401), &json!(1))
    );
    assert_eq!((&f["severity_id"], &f["severity"]), (&json!(4), &json!("High")));
    assert_eq!(f["metadata"]["version"], "1.8.0");
    assert_eq!(f["metadata"]["product"]["name"], "attackmesh");
    assert_eq!(f["finding_info"]["uid"], ev.event_id.as_str());
    assert_eq!(f["finding_info"]["attacks"], f["attacks"]);
    let pairs: Vec<(&str, &str, &str)> = f["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["tactic"]["uid"].as_str().unwrap(),
                a["technique"]["uid"].as_str().unwrap(),
                a["sub_technique"]["uid"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // T1110 itself is not repeated beside T1110.001 under the same tactic.
    assert_eq!(pairs, [("TA0006", "T1110", "T1110.001"), ("TA0007", "T1046", "")]);
    assert!(
        f["attacks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["version"] == ev.attack_version.as_str())
    );
    assert_eq!(f["attacks"][0]["technique"]["name"], "Brute Force");
    let score = (ev.confidence_score * 100.0).round() as i64;
    assert_eq!(f["confidence_score"], score);
    assert_eq!(
        f["evidences"][0]["src_endpoint"]["ip"],
        ev.source.as_ref().unwrap().ip.as_str()
    );
    let observed: Vec<&str> = f["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(observed.contains(&"evidences[0].src_endpoint.ip"), "{observed:?}");
    // The ranked actors have no OCSF attribute: they stay, with scores, under `unmapped`.
    assert_eq!(
        f["unmapped"]["attackmesh"]["threat_actors"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn a_re_attributed_event_is_an_update_of_the_same_finding() {
    let mut ev = fixtures::event(1);
    ev.revision = 2;
    let f = ocsf::finding(&ev, Original::Keep, None);
    assert_eq!((&f["activity_id"], &f["type_uid"]), (&json!(2), &json!(200402)));
    assert_eq!(f["type_name"], "Detection Finding: Update");
    assert_eq!(f["finding_info"]["uid"], ev.event_id.as_str());
}

/// An attributed event carrying a real Suricata alert as a parser delivers it.
fn suricata_event() -> Option<(EnrichedEvent, usize)> {
    let data = attackmesh_testkit::data::shared_data()?;
    let path = data.join("samples/suricata/first-org-conf-2015.eve.ndjson");
    let (_, record) = attackmesh_testkit::data::sample_events(Format::SuricataEve, &path).remove(0);
    let mut ev = fixtures::event(1);
    let size = record.original.len();
    // Enrichment derives the indicators of an alert from its addresses.
    let ip = |e: &Option<attackmesh::proto::Endpoint>| Indicator {
        r#type: IndicatorType::Ipv4 as i32,
        value: e.as_ref().map(|e| e.ip.clone()).unwrap_or_default(),
    };
    ev.related_indicators = vec![ip(&record.source), ip(&record.destination)];
    (ev.source, ev.destination) = (record.source, record.destination);
    (ev.original, ev.original_format, ev.attributes) = (record.original, record.original_format, record.attributes);
    Some((ev, size))
}

#[test]
fn an_ecs_document_holds_the_record_once_and_names_techniques_once() {
    let Some((ev, record)) = suricata_event() else {
        return;
    };
    let kept = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
    assert_eq!(kept["event"]["original"], ev.original.as_str());
    assert!(
        kept["attackmesh"].get("attributes").is_none(),
        "the parsed record again"
    );
    let dropped = ecs::document(&ev, chrono::Utc::now(), Original::Drop);
    assert!(dropped["event"].get("original").is_none());
    assert_eq!(dropped["attackmesh"]["attributes"]["alert.signature_id"], "2001219");

    // Names and pages live in `threat.*`; the techniques keep confidences and evidence.
    let custom = &kept["attackmesh"];
    let technique = &custom["techniques"][0];
    assert!(
        technique.get("name").is_none() && technique.get("tactics").is_none(),
        "{technique}"
    );
    assert_eq!(technique["evidence"][0]["rule_id"], "network/ssh-bruteforce");
    assert!(custom.get("rule_pack_version").is_none(), "already rule.version");
    // Of every loaded pack, the one whose rules gave evidence.
    let mut ev = ev;
    if let Some(m) = ev.metadata.as_mut() {
        m.rule_pack_version = "network@2.1.0,suricata@1.0.0,sigma-core@8eaafff1f284".into();
    }
    let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
    assert_eq!(doc["rule"]["version"], "network@2.1.0");
    // Several packs that gave evidence, in the order loaded; every pack when each gave some, or
    // when no evidence names a loaded one.
    for (loaded, used) in [
        ("suricata@1.0.0,network@2.1.0,x@1", "network@2.1.0"),
        ("network@2.1.0", "network@2.1.0"),
        ("a@1,b@2", "a@1,b@2"),
    ] {
        let mut ev = ev.clone();
        if let Some(m) = ev.metadata.as_mut() {
            m.rule_pack_version = loaded.into();
        }
        let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
        assert_eq!(doc["rule"]["version"], used, "{loaded}");
    }
    let mut two = ev.clone();
    if let Some(m) = two.metadata.as_mut() {
        m.rule_pack_version = "x@1,network@2.1.0,sigma-core@8,y@2".into();
        if let Some(e) = m.techniques.iter_mut().flat_map(|t| &mut t.evidence).nth(1) {
            e.rule_id = "sigma-core/proc-creation".into();
        }
    }
    let doc = ecs::document(&two, chrono::Utc::now(), Original::Keep);
    assert_eq!(doc["rule"]["version"], "network@2.1.0,sigma-core@8");
    assert!(custom.get("event_type").is_none(), "already event.action");

    // At most twice the record plus a bounded block: the ECS envelope (about 900 bytes) and the
    // ATT&CK attribution (here three techniques, their named pairing and two ranked actors),
    // whichever way the record is kept.
    for doc in [&kept, &dropped] {
        let size = serde_json::to_vec(doc).unwrap().len();
        assert!(
            size <= 2 * record + 3072,
            "{size} bytes for a {record}-byte record: {doc:#}"
        );
    }
}

#[test]
fn attributes_a_detector_sent_beside_its_own_record_are_kept() {
    let mut ev = fixtures::event(1);
    ev.original = r#"{"note":"free text"}"#.into();
    ev.original_format = "my-detector".into();
    let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
    assert!(
        !doc["attackmesh"]["attributes"].is_null(),
        "not derived from the record"
    );
    ev.original_format = "suricata-eve".into();
    ev.attributes.insert("original_truncated".into(), "true".into());
    let doc = ecs::document(&ev, chrono::Utc::now(), Original::Keep);
    assert!(
        !doc["attackmesh"]["attributes"].is_null(),
        "the record is cut: the attributes say more"
    );
}

#[test]
fn an_ocsf_finding_holds_the_record_once() {
    let Some((ev, record)) = suricata_event() else {
        return;
    };
    let kept = ocsf::finding(&ev, Original::Keep, None);
    assert_eq!(kept["raw_data"], ev.original.as_str());
    assert!(
        kept["unmapped"]["attackmesh"].get("attributes").is_none(),
        "the parsed record again"
    );
    let dropped = ocsf::finding(&ev, Original::Drop, None);
    assert!(dropped.get("raw_data").is_none());
    assert_eq!(
        dropped["unmapped"]["attackmesh"]["attributes"]["alert.signature_id"],
        "2001219"
    );
    // A detector's own attributes beside its record say more than the record: both are kept.
    let mut own = ev.clone();
    own.original_format = "my-detector".into();
    let f = ocsf::finding(&own, Original::Keep, None);
    assert!(!f["raw_data"].is_null() && !f["unmapped"]["attackmesh"]["attributes"].is_null());
    for doc in [&kept, &dropped] {
        let size = serde_json::to_vec(doc).unwrap().len();
        assert!(
            size <= 2 * record + 4096,
            "{size} bytes for a {record}-byte record: {doc:#}"
        );
    }
}

/// `event` as a compact batch carries it: techniques and actors without the details a
/// knowledge base of its release tells.
pub(crate) fn compact(event: &EnrichedEvent) -> EnrichedEvent {
    let mut event = event.clone();
    let rule_packs = event.metadata.as_ref().map(|m| m.rule_pack_version.clone());
    let mut attribution = attackmesh::proto::Attribution {
        metadata: event.metadata.take(),
        ..Default::default()
    };
    attackmesh_attack::compact::strip(&mut attribution);
    event.metadata = attribution.metadata;
    if let (Some(m), Some(v)) = (event.metadata.as_mut(), rule_packs) {
        m.rule_pack_version = v;
    }
    event
}

/// `events` as a sink's driver hands them over: compact and queued compact for `compact_for`,
/// or, without it, filled in from `kb`. A test comparing the two builds `events` once (fixture
/// events are stamped with the time they are made).
pub(crate) fn queued_compact(
    kb: &attackmesh_attack::Kb,
    events: &[EnrichedEvent],
    compact_for: Option<&str>,
) -> Vec<std::sync::Arc<crate::sinks::QueuedEvent>> {
    use std::sync::Arc;
    (0u64..)
        .zip(events)
        .map(|(seq, event)| {
            let mut event = compact(event);
            if compact_for.is_none() {
                attackmesh_attack::compact::fill_in(kb, event.metadata.as_mut().unwrap());
            }
            Arc::new(crate::sinks::QueuedEvent {
                seq,
                event: Arc::new(event.into()),
                trace_context: Default::default(),
                enqueued_at_micros: 0,
                compact_for: compact_for.map(Arc::from),
            })
        })
        .collect()
}

/// Every shape's line for `event`, with and without the original record, its details taken
/// from `kb` when given.
fn every_shape(event: &EnrichedEvent, kb: Option<&attackmesh_attack::Kb>) -> Vec<(String, Vec<u8>)> {
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let mut lines = Vec::new();
    for original in [Original::Keep, Original::Drop] {
        let mut out = Vec::new();
        ecs::write_document(event, now, original, kb, &mut out);
        lines.push((format!("ecs {original:?}"), out));
        lines.push((
            format!("ocsf {original:?}"),
            serde_json::to_vec(&ocsf::finding(event, original, kb)).unwrap(),
        ));
    }
    let mut out = Vec::new();
    hec::write_envelope(event, &hec::Metadata::default(), kb, &mut out);
    lines.push(("hec".into(), out));
    lines
}

/// A compact event is written in every SIEM shape, its details by reference to the knowledge
/// base, byte for byte as the same event filled in: for every real sample (candidate groups
/// among them), the fixture's sub-technique and claimed group, a degraded event (its details
/// travel in full) and ids the knowledge base does not hold (left bare either way).
#[test]
fn compact_events_are_written_in_every_shape_as_the_events_filled_in() {
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let mut events = attackmesh_testkit::data::real_attributed_samples();
    events.push(fixtures::event(1));
    events.push(fixtures::degraded_event(2));
    let mut unknown = fixtures::event(3);
    let m = unknown.metadata.as_mut().unwrap();
    m.techniques[1].id = "T9999".into();
    m.threat_actors[1].group_id = "g0007".into();
    events.push(unknown);
    let (mut compared, mut with_actors) = (0, 0);
    for full in &events {
        let compact = compact(full);
        let mut filled = compact.clone();
        if let Some(m) = filled.metadata.as_mut() {
            attackmesh_attack::compact::fill_in(&kb, m);
            with_actors += usize::from(!m.threat_actors.is_empty());
        }
        let want = every_shape(&filled, None);
        for (got, want) in every_shape(&compact, Some(&kb)).iter().zip(&want) {
            assert_eq!(
                String::from_utf8_lossy(&got.1),
                String::from_utf8_lossy(&want.1),
                "{} ({})",
                full.event_id,
                want.0
            );
            compared += 1;
        }
        // A full event is written as it is, knowledge base or not.
        assert_eq!(
            every_shape(full, Some(&kb)),
            every_shape(full, None),
            "{}",
            full.event_id
        );
    }
    assert!(
        with_actors > 1 && compared >= 5 * events.len(),
        "{with_actors} / {compared}"
    );
}

/// An event as siem-export receives it, its attributes left in its bytes, is written in every
/// shape exactly as the same event decoded whole: real records, and attributes that need
/// escaping, mark a truncated record or name the rule.
#[test]
fn received_events_are_written_as_the_events_they_decode_to() {
    use attackmesh::held::{EventView, Held};
    use prost::Message;

    let mut events = attackmesh_testkit::data::real_attributed_samples();
    events.extend((0..20).map(fixtures::event));
    let mut odd = fixtures::event(99);
    odd.original = r#"{"alert":{"signature_id":2001219}}"#.into();
    odd.original_format = "suricata-eve".into();
    odd.attributes = [
        ("alert.signature_id", "2001219"),
        ("original_truncated", "true"),
        ("quote\"and\\slash", "line\nbreak\u{1}"),
        ("é", "ü"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    events.push(odd.clone());
    odd.attributes.remove("original_truncated");
    events.push(odd);
    let now = chrono::Utc::now();
    let meta = hec::Metadata::default();
    for event in &events {
        let held = Held::<EnrichedEvent>::decode(event.encode_to_vec().into()).unwrap();
        assert!(held.is_held(), "{}", event.event_id);
        assert_eq!(super::rule_id(&held), super::rule_id(event));
        assert_eq!(
            super::attributes_repeat_original(&held),
            super::attributes_repeat_original(event)
        );
        for original in [Original::Keep, Original::Drop] {
            let (mut want, mut got) = (Vec::new(), Vec::new());
            ecs::write_document(event, now, original, None, &mut want);
            ecs::write_document(&held, now, original, None, &mut got);
            hec::write_envelope(event, &meta, None, &mut want);
            hec::write_envelope(&held, &meta, None, &mut got);
            attackmesh::json::write_enriched_event(event, original == Original::Keep, &mut want);
            attackmesh::json::write_enriched_event(&held, original == Original::Keep, &mut got);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{}",
                event.event_id
            );
            assert_eq!(
                ocsf::finding(&held, original, None),
                ocsf::finding(event, original, None)
            );
        }
        assert_eq!(
            attackmesh::validate::enriched_event(&held),
            attackmesh::validate::enriched_event(event)
        );
        assert_eq!(held.attribute_count(), event.attributes.len());
    }
}
