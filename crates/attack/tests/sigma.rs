//! Sigma rules as an attribution source: the embedded SigmaHQ Windows rules attribute a Sysmon
//! event, refused rules are listed with their reasons, a user's rule applies and replaces a
//! SigmaHQ rule with the same id, and a detector sending only the `original` document gets the
//! same attribution.

use std::sync::Arc;

use attackmesh::formats::{Format, ParseState, parse_line};
use attackmesh::proto::{AttributionStatus, DetectionEvent};
use attackmesh_attack::sigma::{Compiled, SigmaFile, SigmaPack};
use attackmesh_attack::{Engine, Kb, RulePack, SigmaSet};

/// Sysmon event 1: PowerShell started with an encoded command (`-enc`, base64 of `IEX (New-Object Net.WebClient)`).
const SYSMON_ENCODED: &str = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon","Guid":"5770385F-C22A-43E0-BF4C-06F5698FFBD9"}},"EventID":1,"Version":5,"Level":4,"Task":1,"Opcode":0,"Keywords":"0x8000000000000000","TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T10:00:00.123456Z"}},"EventRecordID":4242,"Execution":{"#attributes":{"ProcessID":2000,"ThreadID":3000}},"Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"WS01.corp.local","Security":{"#attributes":{"UserID":"S-1-5-18"}}},"EventData":{"RuleName":"-","ProcessId":4321,"Image":"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe","OriginalFileName":"PowerShell.EXE","CommandLine":"powershell.exe -NoP -W Hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA","CurrentDirectory":"C:\\Users\\alice\\","User":"CORP\\alice","IntegrityLevel":"High","ParentImage":"C:\\Windows\\System32\\cmd.exe","ParentCommandLine":"cmd.exe /c run.bat"}}}"##;

fn sysmon_event() -> DetectionEvent {
    parse_line(Format::EvtxJson, SYSMON_ENCODED, &mut ParseState::default())
        .expect("parses")
        .expect("an event")
}

fn engine() -> Engine {
    Engine::embedded().expect("embedded engine")
}

#[test]
fn encoded_powershell_gets_the_technique_of_the_sigmahq_rule() {
    let engine = engine();
    let a = engine.attribute(&sysmon_event());
    assert_eq!(a.status, AttributionStatus::Ok as i32);
    attackmesh_testkit::assert_only_active(engine.kb(), &a, "sysmon encoded powershell");
    let t = a
        .metadata
        .as_ref()
        .and_then(|m| m.techniques.iter().find(|t| t.id == "T1059.001"))
        .expect("T1059.001 attributed");
    // "Suspicious Encoded PowerShell Command Line" (SigmaHQ, level high).
    let evidence = t
        .evidence
        .iter()
        .find(|e| e.rule_id == "sigma:ca2092a1-c273-4878-9b4b-0d60115bf5ea")
        .expect("evidence names the SigmaHQ rule");
    assert!(evidence.detail.contains("Suspicious Encoded PowerShell Command Line"));
    assert!(evidence.confidence > 0.5);
    assert!(t.tactics.iter().any(|x| x.id == "TA0002"), "execution tactic");
    assert!(a.metadata.expect("metadata").rule_pack_version.contains("sigma-core@"));
}

#[test]
fn a_detector_sending_only_the_original_gets_the_same_attribution() {
    let engine = engine();
    let parsed = sysmon_event();
    let bare = DetectionEvent {
        original: parsed.original.clone(),
        original_format: "evtx-json".into(),
        ..attackmesh_testkit::event(
            "windows.sysmon",
            attackmesh::proto::DetectorKind::BehaviouralAnalysis,
            "x",
            &[],
        )
    };
    let ids = |ev: &DetectionEvent| {
        let mut ids: Vec<String> = engine
            .attribute(ev)
            .metadata
            .map(|m| {
                m.techniques
                    .iter()
                    .flat_map(|t| t.evidence.iter().filter(|e| e.rule_id.starts_with("sigma:")))
                    .map(|e| e.rule_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    };
    let full = ids(&parsed);
    assert!(!full.is_empty());
    assert_eq!(ids(&bare), full);
}

#[test]
fn embedded_rules_load_and_refusals_are_listed_with_reasons() {
    let engine = engine();
    let sigma = engine.sigma();
    let packs = sigma.packs();
    let core = packs.iter().find(|p| p.name == "sigma-core").expect("core pack");
    assert!(core.loaded > 2000, "{core:?}");
    let rejected: Vec<_> = sigma.rejected().collect();
    assert_eq!(
        rejected.len(),
        packs.iter().map(|p| p.rejected).sum::<usize>(),
        "every refusal is listed"
    );
    assert!(rejected.iter().all(|r| !r.reason.is_empty() && !r.path.is_empty()));
    let by_source = sigma.by_logsource();
    assert!(by_source.get("windows/process_creation").copied().unwrap_or(0) > 1000);
    assert!(by_source.contains_key("windows/security"));
}

fn local(files: &[(&str, &str)]) -> Arc<Compiled> {
    let pack = SigmaPack {
        name: "sigma-local".into(),
        version: "test".into(),
        source: "test".into(),
        files: files
            .iter()
            .map(|(path, text)| SigmaFile {
                path: (*path).into(),
                text: (*text).into(),
            })
            .collect(),
    };
    Arc::new(Compiled::compile(&[pack]))
}

const BROKEN: &str = "title: Broken\nid: 11111111-0000-0000-0000-000000000001\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  selection:\n    CommandLine|contains: x\n  condition: selection and filter\nlevel: high\ntags: [attack.t1059]\n";

const OWN: &str = "title: Lab whoami\nid: 11111111-0000-0000-0000-000000000002\nstatus: stable\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  selection:\n    Image|endswith: '\\powershell.exe'\n    CommandLine|contains|all: ['-NoP', 'Hidden']\n  condition: selection\nlevel: critical\ntags: [attack.t1027]\n";

#[test]
fn a_broken_rule_is_reported_and_a_users_rule_applies() {
    let kb = Kb::embedded().expect("kb");
    let compiled = local(&[("broken.yml", BROKEN), ("own.yml", OWN)]);
    let set = SigmaSet::bind(&kb, vec![compiled.clone()]);
    let rejected: Vec<_> = set.rejected().collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].path, "broken.yml");
    assert_eq!(rejected[0].title, "Broken");
    assert!(rejected[0].reason.contains("filter"), "{}", rejected[0].reason);
    assert_eq!(set.packs()[0].loaded, 1);

    let engine =
        Engine::with_sigma(kb, RulePack::embedded().expect("packs"), vec![compiled]).expect("engine with local rules");
    let a = engine.attribute(&sysmon_event());
    let t = a
        .metadata
        .expect("metadata")
        .techniques
        .into_iter()
        .find(|t| t.id == "T1027")
        .expect("the user's rule attributes T1027");
    assert!(
        t.evidence
            .iter()
            .any(|e| e.rule_id == "sigma:11111111-0000-0000-0000-000000000002")
    );
}

#[test]
fn a_users_rule_replaces_the_sigmahq_rule_with_its_id() {
    let kb = Kb::embedded().expect("kb");
    // The SigmaHQ rule's id, with a detection that cannot match this event.
    let replaced = "title: Replaced\nid: ca2092a1-c273-4878-9b4b-0d60115bf5ea\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  selection:\n    Image|endswith: '\\nothing.exe'\n  condition: selection\nlevel: low\ntags: [attack.t1059.001]\n";
    let sets = vec![
        SigmaSet::embedded_compiled().expect("embedded"),
        local(&[("replaced.yml", replaced)]),
    ];
    let engine = Engine::with_sigma(kb, Vec::new(), sets).expect("engine");
    let a = engine.attribute(&sysmon_event());
    let hit = a
        .metadata
        .expect("metadata")
        .techniques
        .iter()
        .flat_map(|t| t.evidence.clone())
        .any(|e| e.rule_id == "sigma:ca2092a1-c273-4878-9b4b-0d60115bf5ea");
    assert!(!hit, "the user's version of the rule is the one in force");
}

/// A Sysmon process creation with two more fields no rule names.
fn sysmon_with(a: &str, b: &str) -> DetectionEvent {
    DetectionEvent {
        attributes: [
            ("A", a),
            ("B", b),
            ("Channel", "Microsoft-Windows-Sysmon/Operational"),
            ("EventID", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Default::default()
    }
}

fn keyword_rule(n: u32, keyword: &str) -> String {
    format!(
        "title: Keyword {keyword}\nid: 11111111-0000-0000-0000-00000000010{n}\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  keywords: ['{keyword}']\n  condition: keywords\nlevel: high\ntags: [attack.t1059]\n"
    )
}

fn titles(set: &SigmaSet, ev: &DetectionEvent) -> Vec<String> {
    let mut titles = Vec::new();
    set.for_each_match(ev, |hit, _| titles.push(hit.title.to_owned()));
    titles.sort();
    titles
}

#[test]
fn a_keyword_is_found_in_any_value_in_any_case_never_across_two() {
    let kb = Kb::embedded().expect("kb");
    let (across, inside, last) = (
        keyword_rule(1, "abc"),
        keyword_rule(2, "xab"),
        keyword_rule(3, "operational"),
    );
    let set = SigmaSet::bind(
        &kb,
        vec![local(&[
            ("across.yml", &across),
            ("inside.yml", &inside),
            ("last.yml", &last),
        ])],
    );
    // Values in key order: "xAb", "cx", the channel, the event id.
    assert_eq!(
        titles(&set, &sysmon_with("xAb", "cx")),
        ["Keyword operational", "Keyword xab"]
    );
}

#[test]
fn a_keyword_too_short_to_prefilter_still_reads_every_value() {
    let kb = Kb::embedded().expect("kb");
    // Two letters: no needle, so the rule is evaluated for every event of its route.
    let short = keyword_rule(4, "qz");
    let set = SigmaSet::bind(&kb, vec![local(&[("short.yml", &short)])]);
    assert_eq!(titles(&set, &sysmon_with("-", "aQZa")), ["Keyword qz"]);
    assert!(titles(&set, &sysmon_with("q", "z")).is_empty());
}

#[test]
fn a_rule_is_routed_by_the_event_id_it_reads() {
    let kb = Kb::embedded().expect("kb");
    let rule = |n: u32, id: u32| {
        format!(
            "title: Event {id}\nid: 11111111-0000-0000-0000-00000000020{n}\nlogsource:\n  product: windows\n  service: sysmon\ndetection:\n  selection:\n    EventID: {id}\n  condition: selection\nlevel: high\ntags: [attack.t1059]\n"
        )
    };
    let (one, block) = (rule(1, 1), rule(2, 27));
    let set = SigmaSet::bind(&kb, vec![local(&[("one.yml", &one), ("block.yml", &block)])]);
    let event = |ids: &[(&str, &str)]| DetectionEvent {
        attributes: ids
            .iter()
            .copied()
            .chain([("Channel", "Microsoft-Windows-Sysmon/Operational")])
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..Default::default()
    };
    assert_eq!(titles(&set, &event(&[("EventID", "27")])), ["Event 27"]);
    assert_eq!(titles(&set, &event(&[("EventID", "1")])), ["Event 1"]);
    assert!(titles(&set, &event(&[("EventID", "3")])).is_empty());
    // A rule reads the first field of its name in any case ("EVENTID" sorts before
    // "EventID"), and is routed by that one too.
    assert_eq!(
        titles(&set, &event(&[("EventID", "1"), ("EVENTID", "27")])),
        ["Event 27"]
    );
    assert_eq!(
        titles(&set, &event(&[("eventid", "1"), ("EventID", "27")])),
        ["Event 27"]
    );
}
