//! Campaigns: one story per intruder. A [`CampaignBuilder`] observes enriched events in
//! event-time order and links them through shared entities (IP addresses, host names, user
//! names) into campaigns; an event that touches two open campaigns merges them into the one that
//! started first. Each campaign keeps its techniques with first-seen times, its tactics in
//! kill-chain order, per-object risk in the manner of Splunk's risk-based alerting (an event
//! adds `severity weight × confidence` to every entity it involves, and configurable incident
//! rules fire on the totals), the groups that best match all of it, and a revision that only
//! grows. Campaigns close after a period of inactivity; memory is bounded; a [`Snapshot`] lets
//! a restarted builder continue without duplicating campaigns.
//!
//! Also here: a campaign as an alert for siem-export ([`campaign_alert`]) and as a MITRE Attack
//! Flow 2.0 STIX bundle ([`attack_flow`]). This crate does no I/O and has no async runtime.

#![forbid(unsafe_code)]

mod alert;
mod builder;
mod config;
mod emit;
mod entity;
mod error;
mod flow;
mod state;

pub use alert::{CAMPAIGN_SOURCE, campaign_alert};
pub use builder::{CAMPAIGN_EVENT_TYPE, CampaignBuilder, Snapshot};
pub use config::{CampaignConfig, IncidentRule, SeverityWeights};
pub use emit::{RISK_FORMULA, entity_kind, kill_chain, summary};
pub use entity::{EntityKey, kind_name};
pub use error::Error;
pub use flow::{ATTACK_FLOW_EXTENSION, attack_flow};

#[cfg(test)]
mod tests;
