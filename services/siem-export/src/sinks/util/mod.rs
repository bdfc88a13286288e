//! What more than one sink uses: the ATT&CK view of an event, the shapes events are written in
//! (ECS document, HEC envelope, OCSF finding) and the HTTP client. Sinks never import one another; code two
//! of them need lives here, and nothing here knows which sink calls it.

pub mod attack;
pub mod campaign;
#[cfg(test)]
mod campaign_tests;
mod doc;
pub mod ecs;
mod ecs_indicators;
#[cfg(test)]
mod ecs_tests;
#[cfg(test)]
mod ecs_tree;
pub mod hec;
pub(crate) mod http;
pub mod ocsf;
#[cfg(test)]
pub(crate) mod tests;
pub mod warm;

use attackmesh::{formats::Format, held::EventView, proto::EnrichedEvent};
use serde::{Deserialize, Serialize};

/// Whether a sink writes the detector's record as it arrived (`original` in a sink's settings).
/// Either way an ECS document holds the record once: as the original, or as its parsed
/// attributes. The canonical shape, the contract's lossless JSON of the event, keeps the
/// attributes beside the original (replays re-attribute from them without a format parser).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Original {
    /// Written (ECS `event.original`, canonical `original`); the ECS document then leaves out
    /// the attributes a detector format's parser derived from it (see
    /// [`attributes_repeat_original`]).
    #[default]
    Keep,
    /// Left out: the parsed attributes stand for the record.
    Drop,
}

/// Whether `event`'s attributes are only its original record parsed: the record is present and
/// whole, and `original_format` names a format `attackmesh::formats` parses (which derives the
/// attributes from the record alone). Attributes a detector sent with a record in a format of
/// its own, or beside a truncated record, say more than the record and are always written.
pub fn attributes_repeat_original(view: &impl EventView<EnrichedEvent>) -> bool {
    let event = view.event();
    !event.original.is_empty()
        && event.original_format.parse::<Format>().is_ok()
        && view.attribute("original_truncated").is_none()
}

/// RFC 3339 with as many fractional digits as needed, `Z`; `None` without a timestamp or for one
/// that is no instant ([`attackmesh::json::write_rfc3339`]).
pub fn rfc3339(ts: Option<&pbjson_types::Timestamp>) -> Option<String> {
    attackmesh::json::rfc3339(ts?, attackmesh::json::Rfc3339::ZULU)
}

/// The detector's name for what it saw: the description, else the event type (ECS `rule.name`,
/// OCSF `finding_info.analytic.name`).
pub fn rule_name(event: &attackmesh::proto::EnrichedEvent) -> &str {
    if event.description.is_empty() {
        &event.event_type
    } else {
        &event.description
    }
}

/// The detector's id of the rule or signature that fired, from the event's attributes
/// (`signature_id`, Suricata's `alert.signature_id`, `sid`, `rule_id` or `rule.id`, the first
/// present); empty without one.
pub fn rule_id(event: &impl EventView<EnrichedEvent>) -> &str {
    ["signature_id", "alert.signature_id", "sid", "rule_id", "rule.id"]
        .iter()
        .find_map(|k| event.attribute(k))
        .unwrap_or_default()
}
