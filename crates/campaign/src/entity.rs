//! The entities an event involves: addresses, host names and user names of both ends. They are
//! what links events into campaigns and what risk is attributed to.

use attackmesh::proto::{Endpoint, EnrichedEvent, EntityType};
use serde::{Deserialize, Serialize};

/// An entity: its kind (an [`EntityType`] value) and its value as reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityKey {
    /// [`EntityType`] as its protobuf number.
    pub kind: i32,
    /// Address, host name or user name.
    pub value: String,
}

impl EntityKey {
    /// `ip`, `host` or `user`: the short name sinks use (e.g. Splunk's `risk_object_type`).
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind)
    }
}

/// Short name of an [`EntityType`] value: `ip`, `host`, `user` (or `other`).
pub fn kind_name(kind: i32) -> &'static str {
    match EntityType::try_from(kind) {
        Ok(EntityType::Ip) => "ip",
        Ok(EntityType::Host) => "host",
        Ok(EntityType::User) => "user",
        _ => "other",
    }
}

/// The event's entities, source side first, without duplicates.
pub(crate) fn of_event(event: &EnrichedEvent) -> Vec<EntityKey> {
    let mut out: Vec<EntityKey> = Vec::with_capacity(6);
    for ep in [event.source.as_ref(), event.destination.as_ref()]
        .into_iter()
        .flatten()
    {
        push_endpoint(&mut out, ep);
    }
    out
}

fn push_endpoint(out: &mut Vec<EntityKey>, ep: &Endpoint) {
    for (kind, value) in [
        (EntityType::Ip, ep.ip.trim()),
        (EntityType::Host, ep.hostname.trim()),
        (EntityType::User, ep.user.trim()),
    ] {
        if value.is_empty() {
            continue;
        }
        let value = if kind == EntityType::Host {
            value.to_ascii_lowercase()
        } else {
            value.to_owned()
        };
        let key = EntityKey {
            kind: kind as i32,
            value,
        };
        if !out.contains(&key) {
            out.push(key);
        }
    }
}

/// The host name of the event's target (its source when it has no target), else its address:
/// the asset an Attack Flow action happened on.
pub(crate) fn asset_of(event: &EnrichedEvent) -> String {
    let pick = |ep: Option<&Endpoint>| {
        ep.map(|e| {
            if e.hostname.is_empty() {
                e.ip.clone()
            } else {
                e.hostname.to_ascii_lowercase()
            }
        })
        .filter(|s| !s.is_empty())
    };
    pick(event.destination.as_ref())
        .or_else(|| pick(event.source.as_ref()))
        .unwrap_or_default()
}
