//! The knowledge base's objects as the contract's protobuf messages (lookup answers and the
//! technique details attached to attributions).

use attackmesh::proto;

use super::{Group, Kb, Technique};

impl Kb {
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
        proto::TechniqueDetail {
            id: technique.id.clone(),
            name: technique.name.clone(),
            tactics: self.tactic_protos(technique),
            url: technique.url.clone(),
            confidence: 0.0,
            evidence: Vec::new(),
            stix_id: technique.stix_id.clone(),
            replaces_revoked_id: String::new(),
        }
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
