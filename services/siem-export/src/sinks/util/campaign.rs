//! A campaign alert's extra fields in the shapes sinks write: the `attackmesh.campaign` object
//! of the ECS document and the risk-based-alerting fields of the HEC event. A campaign alert is
//! an [`EnrichedEvent`](attackmesh::proto::EnrichedEvent) whose `campaign` is set (its `event_id` is the campaign id and its
//! `revision` the campaign's, so sinks replace it in place); everything else about it —
//! `threat.*`, `annotations.mitre_attack.*` — comes from the event like any other. No I/O here.

use std::net::IpAddr;

use attackmesh::proto::{ActorEvidence, Campaign, CampaignStatus, EntityType};
use serde::Serialize;
use serde_json::{Value, json};

use super::rfc3339;

/// `ip`, `host` or `user`.
fn kind(t: i32) -> &'static str {
    match EntityType::try_from(t) {
        Ok(EntityType::Ip) => "ip",
        Ok(EntityType::Host) => "host",
        Ok(EntityType::User) => "user",
        _ => "other",
    }
}

/// The compact campaign object indexed as `attackmesh.campaign` and sent as HEC `campaign`.
pub fn summary_object(c: &Campaign) -> Value {
    let status = CampaignStatus::try_from(c.status).unwrap_or(CampaignStatus::Unspecified);
    let evidence = ActorEvidence::try_from(c.actor_evidence).unwrap_or(ActorEvidence::Unspecified);
    let risk = c.risk.clone().unwrap_or_default();
    let kill_chain: Vec<&str> = c.tactics.iter().map(|t| t.name.as_str()).collect();
    json!({
        "id": c.campaign_id,
        "revision": c.revision,
        "status": status.as_str_name().trim_start_matches("CAMPAIGN_STATUS_").to_ascii_lowercase(),
        "first_seen": rfc3339(c.first_seen.as_ref()),
        "last_seen": rfc3339(c.last_seen.as_ref()),
        "summary": c.summary,
        "kill_chain": kill_chain.join(" → "),
        "tactic_ids": c.tactics.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        "technique_ids": c.techniques.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        "entities": c.entities.iter().map(|e| json!({
            "type": kind(e.r#type), "value": e.value, "risk_score": e.risk_score, "event_count": e.event_count,
        })).collect::<Vec<_>>(),
        "risk_score": risk.score,
        "risk_rules": risk.rules.iter().map(|r| json!({
            "rule": r.rule, "object": r.object, "object_type": kind(r.object_type), "detail": r.detail,
        })).collect::<Vec<_>>(),
        "detectors": c.detectors.iter().map(|d| json!({
            "source_service": d.source_service, "event_count": d.event_count,
        })).collect::<Vec<_>>(),
        "candidate_groups": c.candidate_groups.iter().map(|g| json!({
            "group_id": g.group_id, "name": g.name, "score": g.score,
        })).collect::<Vec<_>>(),
        "actor_evidence": evidence.as_str_name().trim_start_matches("ACTOR_EVIDENCE_").to_ascii_lowercase(),
        "merged_ids": c.merged_ids,
        "merged_into": c.merged_into,
    })
}

/// The campaign's addresses, host names and user names, for ECS `related.*`.
pub fn entity_refs(c: &Campaign) -> (Vec<IpAddr>, Vec<&str>, Vec<&str>) {
    let (mut ips, mut hosts, mut users) = (Vec::new(), Vec::new(), Vec::new());
    for e in &c.entities {
        match EntityType::try_from(e.r#type) {
            Ok(EntityType::Ip) => {
                if let Ok(ip) = e.value.parse::<IpAddr>() {
                    ips.push(ip);
                }
            }
            Ok(EntityType::Host) => hosts.push(e.value.as_str()),
            Ok(EntityType::User) => users.push(e.value.as_str()),
            _ => {}
        }
    }
    (ips, hosts, users)
}

/// Whether an address is outside every private, loopback, link-local and documentation-free
/// internal range: an intruder's or a C2's address, Splunk's `threat_object`.
fn is_external(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00),
    }
}

/// Splunk risk-based-alerting fields of a campaign alert: the campaign's own objects
/// (internal addresses and hosts as `system`, users as `user`, highest risk first) as
/// `risk_object`, external addresses as `threat_object` (`ip_address`), and the campaign risk.
#[derive(Debug, Serialize)]
pub struct Rba {
    /// Risk objects, highest risk first.
    pub risk_object: Vec<String>,
    /// `system` or `user`, one per risk object.
    pub risk_object_type: Vec<&'static str>,
    /// The campaign's risk (the highest per-object total).
    pub risk_score: f64,
    /// External addresses involved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threat_object: Vec<String>,
    /// `ip_address`, one per threat object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threat_object_type: Vec<&'static str>,
    /// The compact campaign object ([`summary_object`]).
    pub campaign: Value,
}

impl Rba {
    /// The fields of `c`.
    pub fn of(c: &Campaign) -> Self {
        let risk = c.risk.clone().unwrap_or_default();
        let objects = if risk.objects.is_empty() {
            c.entities.clone()
        } else {
            risk.objects
        };
        let (mut risk_object, mut risk_object_type, mut threat_object) = (Vec::new(), Vec::new(), Vec::new());
        for o in &objects {
            let external = o.value.parse::<IpAddr>().is_ok_and(|ip| is_external(&ip));
            if external {
                threat_object.push(o.value.clone());
            } else {
                risk_object.push(o.value.clone());
                risk_object_type.push(if o.r#type == EntityType::User as i32 {
                    "user"
                } else {
                    "system"
                });
            }
        }
        let threat_object_type = vec!["ip_address"; threat_object.len()];
        Self {
            risk_object,
            risk_object_type,
            risk_score: risk.score,
            threat_object,
            threat_object_type,
            campaign: summary_object(c),
        }
    }
}
