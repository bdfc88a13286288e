//! Rule-pack validation: the embedded packs load, and broken packs fail naming file, rule and
//! what is wrong.

use attackmesh_attribution::{Engine, Kb, RulePack};

fn compile(yaml: &str) -> Result<Engine, attackmesh_attribution::Error> {
    let kb = Kb::embedded().expect("embedded KB");
    Engine::new(kb, vec![RulePack::parse("test-pack.yaml", yaml)?])
}

#[test]
fn embedded_packs_compile() {
    let engine = Engine::embedded().expect("embedded packs are valid");
    assert!(engine.rules().len() > 300, "rules: {}", engine.rules().len());
    for pack in ["traffic", "behaviour", "decoy", "cowrie", "commands", "suricata", "zeek", "falco", "wazuh"] {
        assert!(engine.rule_pack_version().contains(&format!("{pack}@")), "{pack} missing: {}", engine.rule_pack_version());
    }
}
