//! The knowledge base's objects as the contract's protobuf messages (lookup answers and the
//! technique details attached to attributions).

use attackmesh::{
    json::{AttackDetails, GroupText, TacticText, TechniqueText},
    proto,
};

use super::{Group, Kb, Technique};

/// The details a compact event leaves out, borrowed from the knowledge base: what
/// `Kb::describe_technique` and `describe_group` fill in, field for field (the tests of
/// [`crate::compact`] hold the two to the same bytes). Only an exact id counts, in any state: a
/// queued event written after an upgrade still finds a technique the new release revoked.
impl AttackDetails for Kb {
    fn technique(&self, id: &str) -> Option<(TechniqueText<'_>, impl Iterator<Item = TacticText<'_>>)> {
        let t = self.exact_technique(id)?;
        let text = TechniqueText {
            name: &t.name,
            url: &t.url,
            stix_id: &t.stix_id,
        };
        let tactics = self.tactics_of(t).map(|t| TacticText {
            id: &t.id,
            name: &t.name,
            shortname: &t.shortname,
        });
        Some((text, tactics))
    }

    fn group(&self, id: &str) -> Option<GroupText<'_>> {
        self.exact_group(id).map(|g| GroupText {
            name: &g.name,
            aliases: &g.aliases,
            stix_id: &g.stix_id,
        })
    }
}

impl Kb {
    /// The technique whose id is exactly `id` (as ATT&CK writes it), in any state.
    pub fn exact_technique(&self, id: &str) -> Option<&Technique> {
        self.technique(id).filter(|t| t.id == id)
    }

    /// The group whose id is exactly `id` (as ATT&CK writes it), in any state: a revoked group
    /// is not taken for its replacement. Found without building a key: groups are sorted by id
    /// (the index, which folds case, answers for data that is not).
    pub fn exact_group(&self, id: &str) -> Option<&Group> {
        let groups = &self.data.groups;
        match groups.binary_search_by(|g| g.id.as_str().cmp(id)) {
            Ok(i) => Some(&groups[i]),
            Err(_) => self
                .group_index
                .get(&id.to_lowercase())
                .map(|i| &groups[*i])
                .filter(|g| g.id == id),
        }
    }

    /// The tactics of a technique as protobuf messages.
    pub fn tactic_protos(&self, technique: &Technique) -> Vec<proto::Tactic> {
        self.tactics_of(technique)
            .map(|t| proto::Tactic {
                id: t.id.clone(),
                name: t.name.clone(),
                shortname: t.shortname.clone(),
            })
            .collect()
    }

    /// A technique as a `TechniqueDetail` with no confidence or evidence yet.
    pub fn technique_detail(&self, technique: &Technique) -> proto::TechniqueDetail {
        let mut detail = proto::TechniqueDetail::default();
        self.describe_technique(technique, &mut detail);
        detail
    }

    /// Fills what the knowledge base knows of a technique into `detail` (id, name, tactics,
    /// url, STIX id), leaving confidence, evidence and `replaces_revoked_id` as they are. The
    /// one place a `TechniqueDetail` learns these fields: attributions and the expansion of
    /// compact ones (see [`crate::compact`]) both come here.
    pub(crate) fn describe_technique(&self, technique: &Technique, detail: &mut proto::TechniqueDetail) {
        technique.id.clone_into(&mut detail.id);
        technique.name.clone_into(&mut detail.name);
        detail.tactics = self.tactic_protos(technique);
        technique.url.clone_into(&mut detail.url);
        technique.stix_id.clone_into(&mut detail.stix_id);
    }

    /// A group as a ranked candidate `ThreatActor`.
    pub fn threat_actor(&self, group: &Group, score: f64, matched_techniques: Vec<String>) -> proto::ThreatActor {
        let mut actor = proto::ThreatActor {
            score,
            matched_techniques,
            ..Default::default()
        };
        describe_group(group, &mut actor);
        actor
    }

    /// A technique as the `Technique` message of the lookup RPC.
    pub fn technique_proto(&self, technique: &Technique) -> proto::Technique {
        proto::Technique {
            id: technique.id.clone(),
            name: technique.name.clone(),
            tactics: self.tactic_protos(technique),
            url: technique.url.clone(),
            platforms: technique.platforms.clone(),
            stix_id: technique.stix_id.clone(),
            parent_id: technique.parent_id.clone().unwrap_or_default(),
            deprecated: technique.deprecated,
            subtechnique_ids: self.subtechniques_of(technique).map(|s| s.id.clone()).collect(),
        }
    }

    /// A group as the `Group` message of the lookup RPC.
    pub fn group_proto(&self, group: &Group) -> proto::Group {
        proto::Group {
            id: group.id.clone(),
            name: group.name.clone(),
            aliases: group.aliases.clone(),
            stix_id: group.stix_id.clone(),
            technique_ids: group.techniques.clone(),
            url: group.url.clone(),
        }
    }
}

/// Fills what the knowledge base knows of a group into `actor` (group id, name, aliases, STIX
/// id), leaving score and matched techniques as they are; like [`Kb::describe_technique`], the
/// one place for these fields.
pub(crate) fn describe_group(group: &Group, actor: &mut proto::ThreatActor) {
    group.id.clone_into(&mut actor.group_id);
    group.name.clone_into(&mut actor.name);
    actor.aliases.clone_from(&group.aliases);
    group.stix_id.clone_into(&mut actor.stix_id);
}
