//! Rule-pack validation: the embedded packs load, and broken packs fail naming file, rule and
//! what is wrong.

use attackmesh::proto::DetectorKind;
use attackmesh_attack::{Engine, Kb, RulePack};

fn compile(yaml: &str) -> Result<Engine, attackmesh_attack::Error> {
    let kb = Kb::embedded().expect("embedded KB");
    Engine::new(kb, vec![RulePack::parse("test-pack.yaml", yaml)?])
}

fn error(yaml: &str) -> String {
    compile(yaml).expect_err("the pack must be refused").to_string()
}

const HEAD: &str = "pack: test\nversion: 1.2.3\nrules:\n";

#[test]
fn embedded_packs_compile() {
    let engine = Engine::embedded().expect("embedded packs are valid");
    assert!(engine.rules().len() > 400, "rules: {}", engine.rules().len());
    for pack in [
        "traffic",
        "behaviour",
        "decoy",
        "cowrie",
        "commands",
        "suricata",
        "zeek",
        "falco",
        "wazuh",
    ] {
        assert!(
            engine.rule_pack_version().contains(&format!("{pack}@1.")),
            "{pack} missing: {}",
            engine.rule_pack_version()
        );
    }
}

#[test]
fn unknown_technique_fails_naming_file_rule_and_id() {
    let err = error(&format!(
        "{HEAD}  - id: bogus\n    event_type: x\n    techniques: [{{ id: T9999, confidence: 0.5 }}]\n"
    ));
    assert!(
        err.contains("test-pack.yaml") && err.contains("`bogus`") && err.contains("T9999"),
        "{err}"
    );
    assert!(err.contains("not a technique of ATT&CK 18.1"), "{err}");
}

#[test]
fn revoked_and_deprecated_techniques_are_refused_with_a_hint() {
    let err = error(&format!(
        "{HEAD}  - id: old\n    event_type: x\n    techniques: [{{ id: T1073, confidence: 0.5 }}]\n"
    ));
    assert!(
        err.contains("T1073 is revoked") && err.contains("use T1574.001"),
        "{err}"
    );
    let err = error(&format!(
        "{HEAD}  - id: dep\n    event_type: x\n    techniques: [{{ id: T1064, confidence: 0.5 }}]\n"
    ));
    assert!(err.contains("T1064 is deprecated"), "{err}");
}

#[test]
fn bad_regex_fails_naming_the_rule() {
    let err = error(&format!(
        "{HEAD}  - id: broken-regex\n    when:\n      - {{ field: description, regex: '(unclosed' }}\n    techniques: [{{ id: T1046, confidence: 0.5 }}]\n"
    ));
    assert!(
        err.contains("`broken-regex`") && err.contains("bad regex `(unclosed`"),
        "{err}"
    );
}

#[test]
fn confidence_outside_unit_interval_fails() {
    let err = error(&format!(
        "{HEAD}  - id: too-sure\n    event_type: x\n    techniques: [{{ id: T1046, confidence: 1.5 }}]\n"
    ));
    assert!(err.contains("`too-sure`") && err.contains("outside [0, 1]"), "{err}");
    let err = error(&format!(
        "{HEAD}  - id: no-conf\n    event_type: x\n    techniques: [T1046]\n"
    ));
    assert!(err.contains("no confidence"), "{err}");
}

#[test]
fn structural_mistakes_are_refused() {
    let err = error(&format!(
        "{HEAD}  - id: a\n    event_type: x\n    techniques: [T1046]\n    confidence: 0.5\n  - id: a\n    event_type: y\n    techniques: [T1046]\n    confidence: 0.5\n"
    ));
    assert!(err.contains("duplicate rule id"), "{err}");
    let err = error(&format!(
        "{HEAD}  - id: typo\n    event_typ: x\n    techniques: [T1046]\n"
    ));
    assert!(err.contains("test-pack.yaml") && err.contains("event_typ"), "{err}");
    let err = error(&format!(
        "{HEAD}  - id: glob\n    event_type: 'a*b*'\n    confidence: 0.5\n    techniques: [T1046]\n"
    ));
    assert!(err.contains("`glob`") && err.contains("event_type `a*b*`"), "{err}");
    let err = error(&format!(
        "{HEAD}  - id: two-ops\n    when:\n      - {{ attr: x, equals: a, contains: [b] }}\n    confidence: 0.5\n    techniques: [T1046]\n"
    ));
    assert!(err.contains("exactly one operator"), "{err}");
    let err = error(&format!(
        "{HEAD}  - id: kind\n    detector_kind: sensor\n    confidence: 0.5\n    techniques: [T1046]\n"
    ));
    assert!(err.contains("detector_kind `sensor`"), "{err}");
    let err = error("pack: test\nversion: '1.0'\nrules: []\n");
    assert!(err.contains("version `1.0` is not x.y.z"), "{err}");
}

#[test]
fn a_valid_pack_maps_with_all_condition_kinds() {
    let yaml = format!(
        "{HEAD}  - id: ssh-bf\n    event_type: [brute_*]\n    detector_kind: traffic_monitor\n    when:\n      - {{ attr: dest_port, in: [22, 2222] }}\n      - {{ attr: attempts, gte: 10 }}\n      - {{ field: description, contains: [SSH] }}\n      - {{ field: description, not: true, regex: '(?i)benign' }}\n    techniques: [{{ id: T1110.001, confidence: 0.7 }}]\n"
    );
    let engine = compile(&yaml).expect("valid");
    let ev = |port: &str, attempts: &str, description: &str| {
        attackmesh_testkit::event(
            "brute_force",
            DetectorKind::TrafficMonitor,
            description,
            &[("dest_port", port), ("attempts", attempts)],
        )
    };
    assert_eq!(
        engine.attribute(&ev("2222", "12", "ssh brute force")).technique_ids,
        ["T1110.001"]
    );
    assert!(
        engine
            .attribute(&ev("23", "12", "ssh brute force"))
            .technique_ids
            .is_empty(),
        "port"
    );
    assert!(
        engine
            .attribute(&ev("22", "3", "ssh brute force"))
            .technique_ids
            .is_empty(),
        "count"
    );
    assert!(
        engine
            .attribute(&ev("22", "12", "rdp brute force"))
            .technique_ids
            .is_empty(),
        "text"
    );
    assert!(
        engine
            .attribute(&ev("22", "12", "ssh brute force, benign scanner"))
            .technique_ids
            .is_empty(),
        "negated"
    );
    let mut other_kind = ev("22", "12", "ssh brute force");
    other_kind.detector_kind = DetectorKind::Decoy as i32;
    assert!(engine.attribute(&other_kind).technique_ids.is_empty(), "kind");
}

#[test]
fn a_directory_pack_replaces_the_embedded_one_of_the_same_name_or_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cowrie.yaml"),
        "pack: cowrie\nversion: 9.0.0\nrules:\n  - id: only\n    event_type: cowrie.login.failed\n    techniques: [{ id: T1110, confidence: 0.4 }]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("wazuh.yaml"),
        "pack: wazuh\nversion: 1.0.0\nenabled: false\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a pack").expect("write");
    let engine = Engine::new(
        Kb::embedded().expect("kb"),
        RulePack::embedded_with_dir(dir.path()).expect("packs"),
    )
    .expect("compiles");
    assert!(
        engine.rule_pack_version().contains("cowrie@9.0.0"),
        "{}",
        engine.rule_pack_version()
    );
    assert!(
        !engine.rule_pack_version().contains("wazuh@"),
        "{}",
        engine.rule_pack_version()
    );
    let failed = attackmesh_testkit::event(
        "cowrie.login.failed",
        DetectorKind::Decoy,
        "login attempt [root/root] failed",
        &[],
    );
    assert_eq!(engine.attribute(&failed).technique_ids, ["T1110"]);

    std::fs::write(dir.path().join("broken.yaml"), "pack: broken\nversion: 1.0.0\nrules:\n  - id: r\n    event_type: x\n    techniques: [{ id: T0000, confidence: 0.1 }]\n").expect("write");
    let err = Engine::new(
        Kb::embedded().expect("kb"),
        RulePack::embedded_with_dir(dir.path()).expect("parses"),
    )
    .expect_err("bad pack refused")
    .to_string();
    assert!(err.contains("broken.yaml") && err.contains("T0000"), "{err}");
}
