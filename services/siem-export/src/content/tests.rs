//! The Kibana rules and the Splunk app as a user meets them: one rule per technique with the
//! right `threat` and query, and an app archive that is the same bytes on every build.

use std::io::Read as _;

use attackmesh_attack::Engine;
use serde_json::{Value, json};

use super::{elastic, splunk};

fn options() -> elastic::RuleOptions {
    elastic::RuleOptions {
        index: vec!["attackmesh-alerts*".into()],
        enabled: false,
    }
}

#[test]
fn a_sub_technique_rule_maps_its_parent_and_matches_only_the_sub_technique() {
    let engine = Engine::embedded().unwrap();
    let kb = engine.kb();
    let rule = elastic::rule(kb, kb.technique("T1110.001").unwrap(), &options());
    assert_eq!(
        rule["threat"],
        json!([{
            "framework": "MITRE ATT&CK",
            "tactic": {"id": "TA0006", "name": "Credential Access", "reference": "https://attack.mitre.org/tactics/TA0006/"},
            "technique": [{
                "id": "T1110",
                "name": "Brute Force",
                "reference": "https://attack.mitre.org/techniques/T1110/",
                "subtechnique": [{"id": "T1110.001", "name": "Password Guessing", "reference": "https://attack.mitre.org/techniques/T1110/001/"}],
            }],
        }])
    );
    assert_eq!(
        rule["query"],
        "event.kind:alert and event.dataset:attackmesh.alerts and threat.technique.subtechnique.id:\"T1110.001\""
    );
    let parent = elastic::rule(kb, kb.technique("T1110").unwrap(), &options());
    assert!(
        parent["query"]
            .as_str()
            .unwrap()
            .ends_with("not threat.technique.subtechnique.id:T1110.*")
    );
    assert_ne!(rule["rule_id"], parent["rule_id"]);
    // The same technique keeps its rule id, so a re-import overwrites instead of duplicating.
    assert_eq!(
        rule["rule_id"],
        elastic::rule(kb, kb.technique("T1110.001").unwrap(), &options())["rule_id"]
    );
}

#[test]
fn the_import_file_has_one_rule_per_emittable_technique_and_kibanas_summary() {
    let engine = Engine::embedded().unwrap();
    let text = String::from_utf8(elastic::rules_ndjson(&engine, &options())).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (summary, rules) = lines.split_last().unwrap();
    assert_eq!(rules.len(), engine.emittable_techniques().len());
    assert_eq!(summary["exported_rules_count"], rules.len());
    assert!(
        rules
            .iter()
            .all(|r| r["enabled"] == false && r["rule_name_override"] == "message")
    );
}

#[test]
fn the_splunk_app_archive_is_deterministic_and_versioned() {
    let first = splunk::app_tgz("1.2.3").unwrap();
    assert_eq!(first, splunk::app_tgz("1.2.3").unwrap());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(first.as_slice()));
    let mut names = Vec::new();
    let mut app_conf = String::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "attackmesh/default/app.conf" {
            entry.read_to_string(&mut app_conf).unwrap();
        }
        names.push(path);
    }
    assert_eq!(names[0], "attackmesh/");
    assert!(names.contains(&"attackmesh/default/props.conf".to_owned()));
    assert!(app_conf.contains("version = 1.2.3") && !app_conf.contains("@VERSION@"));
    assert!(app_conf.contains("id = attackmesh"));
}
