//! Compact attributions: an attribution without what a knowledge base of the same ATT&CK release
//! can tell (technique names, tactics, urls and STIX ids; group names, aliases and STIX ids), for
//! a caller that holds that release itself (the contract's
//! `AttributeRequest.compact_for_attack_version`). Fewer and smaller nested messages to encode,
//! send and decode on every hop.
//!
//! The rule-pack version, the same for every attribution of one answer, travels once per answer
//! (`AttributeResponse.rule_pack_version`) instead of in each attribution.
//!
//! An `Export` batch can carry events compact too (`ExportRequest.compact_for_attack_version`),
//! in a form that keeps `technique_ids` and `metadata.rule_pack_version` ([`for_export`] makes
//! it from a compact attribution): a technique or threat actor without a name is one whose
//! details the receiver fills in ([`fill_in`]), or writes straight from its knowledge base
//! ([`attackmesh::json::AttackDetails`], implemented by [`Kb`]).
//!
//! [`strip`] makes the compact form of a finished attribution (what
//! [`Engine::attribute_compact`](crate::Engine::attribute_compact) makes directly) and [`expand`]
//! makes the full one again: `expand(kb, strip(a), v) == a` for every attribution made with `kb`
//! (or a knowledge base of the same release) and rule-pack version `v`. Expansion fills fields
//! with the very code that fills them when an attribution is made ([`Kb::technique_detail`],
//! [`Kb::threat_actor`]), so the two cannot drift apart. This module does no I/O and knows
//! nothing of how the forms travel.

use std::mem::take;

use attackmesh::proto::{Attribution, EnrichmentMetadata, TechniqueDetail, ThreatActor};

use crate::error::Error;
use crate::kb::{Kb, describe_group};

/// Whether a caller asking for compact attributions of ATT&CK release `requested` gets them
/// from a service whose knowledge base is `kb`: only for that exact, non-empty release.
pub fn answers_compact(kb: &Kb, requested: &str) -> bool {
    !requested.is_empty() && requested == kb.attack_version()
}

/// Leaves in `attribution` only what a knowledge base cannot tell: confidence, status and
/// ATT&CK release; per technique its id, confidence, evidence and `replaces_revoked_id`; per
/// threat actor its group id, score and matched techniques. `technique_ids` is emptied too (it
/// repeats the techniques' ids in the same order), and so is `metadata.rule_pack_version` (the
/// answer carries it once).
pub fn strip(attribution: &mut Attribution) {
    attribution.technique_ids = Vec::new();
    let Some(metadata) = attribution.metadata.as_mut() else {
        return;
    };
    metadata.rule_pack_version = String::new();
    // Rebuilt field by field, so a field added to the contract later is left out until
    // expansion knows how to fill it (and the round-trip tests say so).
    for t in &mut metadata.techniques {
        *t = TechniqueDetail {
            id: take(&mut t.id),
            confidence: t.confidence,
            evidence: take(&mut t.evidence),
            replaces_revoked_id: take(&mut t.replaces_revoked_id),
            ..Default::default()
        };
    }
    for actor in &mut metadata.threat_actors {
        *actor = ThreatActor {
            group_id: take(&mut actor.group_id),
            score: actor.score,
            matched_techniques: take(&mut actor.matched_techniques),
            ..Default::default()
        };
    }
}

/// Fills a compact attribution in from `kb`, which must be of the attribution's ATT&CK release:
/// technique names, tactics, urls and STIX ids, group names, aliases and STIX ids, and
/// `technique_ids`; and `metadata.rule_pack_version` with `rule_pack_version` (the answer's).
/// Fails when the releases differ or an id is not an active technique or group of `kb`;
/// `attribution` may then be partly filled and must be discarded.
pub fn expand(kb: &Kb, attribution: &mut Attribution, rule_pack_version: &str) -> Result<(), Error> {
    same_release(kb, attribution, "expanded with")?;
    let Some(metadata) = attribution.metadata.as_mut() else {
        return Ok(());
    };
    rule_pack_version.clone_into(&mut metadata.rule_pack_version);
    for detail in &mut metadata.techniques {
        let technique = kb
            .technique(&detail.id)
            .filter(|t| t.is_active())
            .ok_or_else(|| inactive(kb, "technique", &detail.id))?;
        kb.describe_technique(technique, detail);
    }
    attribution.technique_ids = metadata.techniques.iter().map(|t| t.id.clone()).collect();
    for actor in &mut metadata.threat_actors {
        let group = kb
            .group(&actor.group_id)
            .filter(|g| g.is_active() && g.id.eq_ignore_ascii_case(actor.group_id.trim()))
            .ok_or_else(|| inactive(kb, "group", &actor.group_id))?;
        describe_group(group, actor);
    }
    Ok(())
}

/// Fails unless `attribution` is of `kb`'s ATT&CK release, saying it cannot be `done` that
/// release.
fn same_release(kb: &Kb, attribution: &Attribution, done: &str) -> Result<(), Error> {
    if attribution.attack_version == kb.attack_version() {
        return Ok(());
    }
    Err(Error::Compact(format!(
        "attribution of ATT&CK `{}` cannot be {done} ATT&CK {}",
        attackmesh::text::clip(&attribution.attack_version, 16),
        kb.attack_version()
    )))
}

/// The error for `id`, which is not an active `kind` (technique, group) of `kb`.
fn inactive(kb: &Kb, kind: &str, id: &str) -> Error {
    Error::Compact(format!(
        "{kind} `{}` is not an active {kind} of ATT&CK {}",
        attackmesh::text::clip(id, 16),
        kb.attack_version()
    ))
}

/// Turns a compact attribution (as attribution answers it, with the answer's
/// `rule_pack_version`) into the compact form an `Export` batch carries: `technique_ids` and
/// `metadata.rule_pack_version` put back, names and the rest still left out. Fails, as
/// [`expand`] does, when `kb` is of another release or an id is not, exactly, an active
/// technique or group of `kb` (a receiver of the same release could not fill it in); the
/// attribution may then be partly changed and must be discarded.
pub fn for_export(kb: &Kb, attribution: &mut Attribution, rule_pack_version: &str) -> Result<(), Error> {
    same_release(kb, attribution, "sent compact for")?;
    let Some(metadata) = attribution.metadata.as_mut() else {
        return Ok(());
    };
    if let Some(t) = metadata
        .techniques
        .iter()
        .find(|t| !kb.exact_technique(&t.id).is_some_and(|t| t.is_active()))
    {
        return Err(inactive(kb, "technique", &t.id));
    }
    if let Some(a) = metadata
        .threat_actors
        .iter()
        .find(|a| !kb.exact_group(&a.group_id).is_some_and(|g| g.is_active()))
    {
        return Err(inactive(kb, "group", &a.group_id));
    }
    rule_pack_version.clone_into(&mut metadata.rule_pack_version);
    attribution.technique_ids = metadata.techniques.iter().map(|t| t.id.clone()).collect();
    Ok(())
}

/// Fills in, from `kb`, every technique and threat actor of `metadata` left without a name whose
/// id `kb` holds exactly (in any state): the details [`expand`] fills in. Returns how many it
/// could not fill in (ids `kb` does not hold, left as they are). `kb` may be of another release
/// than the event's, as for an event queued before an upgrade: the details are then that
/// release's, and the event's `attack_version` still names its own.
pub fn fill_in(kb: &Kb, metadata: &mut EnrichmentMetadata) -> usize {
    let mut missing = 0;
    for detail in metadata.techniques.iter_mut().filter(|t| t.name.is_empty()) {
        match kb.exact_technique(&detail.id) {
            Some(technique) => kb.describe_technique(technique, detail),
            None => missing += 1,
        }
    }
    for actor in metadata.threat_actors.iter_mut().filter(|a| a.name.is_empty()) {
        match kb.exact_group(&actor.group_id) {
            Some(group) => describe_group(group, actor),
            None => missing += 1,
        }
    }
    missing
}
