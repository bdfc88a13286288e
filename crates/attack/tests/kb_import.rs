//! The importer against the real ATT&CK 18.1 bundle, and the committed compact KB against a
//! fresh import of it.

use std::sync::OnceLock;

use attackmesh_attack::Kb;
use attackmesh_attack::kb::{KbData, Resolved};

fn imported() -> Option<&'static Kb> {
    static KB: OnceLock<Option<Kb>> = OnceLock::new();
    KB.get_or_init(|| attackmesh_testkit::attack_bundle().map(|p| Kb::load(p).expect("the official bundle imports")))
        .as_ref()
}

#[test]
fn real_bundle_has_the_published_counts() {
    let Some(kb) = imported() else { return };
    let c = kb.counts();
    assert_eq!(kb.attack_version(), "18.1");
    assert_eq!(kb.domain(), "enterprise-attack");
    assert_eq!(c.techniques, 216, "active techniques");
    assert_eq!(c.subtechniques, 475, "active sub-techniques");
    assert_eq!(c.tactics, 14, "tactics");
    assert_eq!(c.groups, 172, "active groups");
    assert!(c.software > 700, "software: {}", c.software);
    assert!(c.campaigns > 40, "campaigns: {}", c.campaigns);
    assert!(c.mitigations > 40, "mitigations: {}", c.mitigations);
}

#[test]
fn password_guessing_is_credential_access() {
    let Some(kb) = imported() else { return };
    let t = kb.technique("T1110.001").expect("T1110.001");
    assert_eq!(t.name, "Password Guessing");
    assert_eq!(t.parent_id.as_deref(), Some("T1110"));
    assert!(t.is_subtechnique && t.is_active());
    let tactics: Vec<_> = kb
        .tactics_of(t)
        .map(|t| (t.id.as_str(), t.name.as_str(), t.shortname.as_str()))
        .collect();
    assert_eq!(tactics, [("TA0006", "Credential Access", "credential-access")]);
    assert_eq!(t.url, "https://attack.mitre.org/techniques/T1110/001");
    assert!(t.stix_id.starts_with("attack-pattern--"));
    let parent = kb.technique("T1110").expect("T1110");
    assert!(kb.subtechniques_of(parent).any(|s| s.id == "T1110.001"));
}

#[test]
fn apt29_is_found_by_id_name_and_alias() {
    let Some(kb) = imported() else { return };
    let g = kb.group("G0016").expect("G0016");
    assert_eq!(g.name, "APT29");
    for alias in ["Cozy Bear", "NOBELIUM", "Midnight Blizzard", "The Dukes"] {
        assert!(
            g.aliases.iter().any(|a| a == alias),
            "alias {alias} missing from {:?}",
            g.aliases
        );
        assert_eq!(
            kb.group(alias).map(|g| g.id.as_str()),
            Some("G0016"),
            "lookup by {alias}"
        );
    }
    assert_eq!(kb.group("apt29").map(|g| g.id.as_str()), Some("G0016"));
    assert!(
        g.techniques.len() > 50,
        "APT29 uses many techniques: {}",
        g.techniques.len()
    );
    assert!(
        g.techniques
            .iter()
            .all(|t| matches!(kb.resolve(t), Resolved::Active(_)))
    );
}

#[test]
fn revoked_techniques_resolve_to_their_replacement_through_chains() {
    let Some(kb) = imported() else { return };
    // T1073 (DLL Side-Loading) was revoked by T1574.002, itself revoked by T1574.001.
    match kb.resolve("T1073") {
        Resolved::Revoked { requested, replacement } => {
            assert_eq!(requested.id, "T1073");
            assert_eq!(replacement.id, "T1574.001");
        }
        other => panic!("T1073 should be revoked, got {other:?}"),
    }
    match kb.resolve("T1150") {
        Resolved::Revoked { replacement, .. } => assert_eq!(replacement.id, "T1647"),
        other => panic!("T1150 should be revoked, got {other:?}"),
    }
    assert!(matches!(kb.resolve("T1064"), Resolved::Deprecated(t) if t.name == "Scripting"));
    assert!(matches!(kb.resolve("T9999"), Resolved::Unknown));
    assert!(matches!(kb.resolve("t1110.001"), Resolved::Active(t) if t.id == "T1110.001"));
}

#[test]
fn committed_compact_kb_equals_a_fresh_import() {
    let Some(fresh) = imported() else { return };
    let embedded = Kb::embedded().expect("the committed compact KB decodes");
    let same = embedded.data() == fresh.data();
    assert!(
        same,
        "crates/attack/kb/enterprise-attack-18.1.kb.gz is stale; regenerate it with \
         `attackmesh kb import ../shared/data/attack/enterprise-attack-18.1.json.gz --out \
         crates/attack/kb/enterprise-attack-18.1.kb.gz` (or `cargo test -p attackmesh-attack \
         --test kb_import -- --ignored regenerate`)"
    );
}

#[test]
fn compact_form_round_trips() {
    let kb = Kb::embedded().expect("embedded");
    let bytes = kb.to_compact().expect("encodes");
    let again = Kb::from_bytes(&bytes, None).expect("decodes");
    assert_eq!(again.data(), kb.data());
    let data: &KbData = kb.data();
    assert!(
        data.techniques.windows(2).all(|w| w[0].id < w[1].id),
        "techniques sorted by id"
    );
}

#[test]
fn garbage_is_not_a_knowledge_base() {
    let err = Kb::from_bytes(b"hello", None).expect_err("garbage");
    assert!(
        err.to_string()
            .contains("neither a compact knowledge base nor an ATT&CK STIX bundle"),
        "{err}"
    );
}

/// Rewrites the committed compact KB from the shared bundle.
#[test]
#[ignore = "writes crates/attack/kb; run explicitly to regenerate"]
fn regenerate() {
    let Some(kb) = imported() else { return };
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/kb/enterprise-attack-18.1.kb.gz");
    std::fs::write(out, kb.to_compact().expect("encodes")).expect("writes");
}
