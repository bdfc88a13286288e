//! EnrichedEvent → HEC event envelope (`time`, `host`, `source`, `sourcetype`, `index`, `event`,
//! `fields`): what the Splunk HEC sink posts and what the file sink writes in its `hec` shape.
//! The event carries `mitre_attack.*` (technique ids, technique details with tactics,
//! ranked threat actors) and Splunk CIM-friendly fields (`src`, `dest`, `src_port`, `dest_port`,
//! `user`, `signature`, `severity`, `annotations.mitre_attack.*`); a campaign alert also carries
//! Splunk RBA's `risk_object`, `risk_object_type`, `risk_score`, `threat_object`,
//! `threat_object_type` and the `campaign` itself. Index-time `fields` hold only
//! strings or lists of strings, as HEC requires.
//!
//! The envelope carries no `original`: `attributes` stand for the detector's record, once.
//! What looks repeated is what Splunk reads: `fields` are index-time fields (not part of the
//! licensed raw event), `src`/`dest`, `signature` and `user` are the CIM names beside the
//! detector's own, and `annotations.mitre_attack.*` is the shape Splunk ES's MITRE views read.
//! The envelope is serialised straight into the caller's buffer (one per batch). No I/O here.

use attackmesh::{
    held::EventView,
    proto::{AttributionStatus, DetectorKind, Endpoint, EnrichedEvent},
};
use attackmesh_attack::Kb;
use serde::Serialize;

use super::{
    attack::{AttackView, stix_type},
    rfc3339,
};

/// `source` of the events unless configured otherwise.
pub const DEFAULT_SOURCE: &str = "attackmesh";
/// `sourcetype` of the events unless configured otherwise.
pub const DEFAULT_SOURCETYPE: &str = "attackmesh:alert";

/// Where Splunk files an event: the envelope's `host`, `source`, `sourcetype` and `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// `host`; the detector's name (`source_service`) when `None`.
    pub host: Option<&'a str>,
    /// `source`.
    pub source: &'a str,
    /// `sourcetype`.
    pub sourcetype: &'a str,
    /// `index`; left out when `None`, so the token's default index applies.
    pub index: Option<&'a str>,
}

impl Default for Metadata<'_> {
    fn default() -> Self {
        Self {
            host: None,
            source: DEFAULT_SOURCE,
            sourcetype: DEFAULT_SOURCETYPE,
            index: None,
        }
    }
}

/// Epoch seconds with microseconds, as HEC's `time`.
fn epoch(ts: Option<&pbjson_types::Timestamp>) -> Option<f64> {
    let ts = ts?;
    let micros = i64::from(ts.nanos) / 1000;
    Some(((ts.seconds as f64 + micros as f64 / 1e6) * 1e6).round() / 1e6)
}

fn no_str(s: &str) -> bool {
    s.is_empty()
}

fn no_items<T>(v: &[T]) -> bool {
    v.is_empty()
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<f64>,
    #[serde(skip_serializing_if = "no_str")]
    host: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    source: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    sourcetype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: Body<'a>,
    fields: Fields<'a>,
}

#[derive(Serialize)]
struct Fields<'a> {
    event_id: &'a str,
    severity: &'static str,
    #[serde(skip_serializing_if = "no_items")]
    mitre_technique_id: &'a [String],
}

#[derive(Serialize, Default)]
struct Side<'a> {
    addr: &'a str,
    ip: &'a str,
    host: &'a str,
    port: Option<u32>,
    user: &'a str,
}

impl<'a> Side<'a> {
    fn of(e: Option<&'a Endpoint>) -> Self {
        let Some(e) = e else { return Self::default() };
        let addr = if e.ip.is_empty() {
            e.hostname.as_str()
        } else {
            e.ip.as_str()
        };
        Self {
            addr,
            ip: &e.ip,
            host: &e.hostname,
            port: (e.port > 0).then_some(e.port),
            user: &e.user,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    event_id: &'a str,
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    #[serde(skip_serializing_if = "no_str")]
    description: &'a str,
    signature: &'a str,
    severity: &'static str,
    severity_id: i64,
    #[serde(skip_serializing_if = "no_str")]
    src: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    src_ip: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    src_host: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u32>,
    #[serde(skip_serializing_if = "no_str")]
    src_user: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    dest: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    dest_ip: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    dest_host: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u32>,
    #[serde(skip_serializing_if = "no_str")]
    dest_user: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    user: &'a str,
    vendor_product: &'static str,
    #[serde(skip_serializing_if = "no_str")]
    source_service: &'a str,
    #[serde(skip_serializing_if = "no_str")]
    submitted_by: &'a str,
    detector_kind: &'static str,
    confidence_score: f64,
    #[serde(skip_serializing_if = "no_str")]
    attack_version: &'a str,
    attribution_status: &'static str,
    revision: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    enriched_at: Option<String>,
    mitre_attack: Mitre<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Annotations<'a>>,
    #[serde(skip_serializing_if = "no_items")]
    indicators: Vec<IndicatorOut<'a>>,
    #[serde(skip_serializing_if = "Attributes::is_empty")]
    attributes: Attributes<'a>,
    #[serde(skip_serializing_if = "no_str")]
    original_format: &'a str,
    /// Risk-based-alerting fields and the campaign, on a campaign alert only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    rba: Option<super::campaign::Rba>,
}

#[derive(Serialize)]
struct Mitre<'a> {
    technique_ids: &'a [String],
    #[serde(skip_serializing_if = "no_items")]
    techniques: Vec<TechniqueOut<'a>>,
    #[serde(skip_serializing_if = "no_items")]
    tactic_ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "no_items")]
    threat_actors: Vec<ActorOut<'a>>,
}

#[derive(Serialize)]
struct TechniqueOut<'a> {
    id: &'a str,
    name: &'a str,
    url: &'a str,
    confidence: f64,
    tactics: Vec<TacticOut<'a>>,
    evidence: Vec<EvidenceOut<'a>>,
}

#[derive(Serialize)]
struct TacticOut<'a> {
    id: &'a str,
    name: &'a str,
    reference: &'a str,
}

#[derive(Serialize)]
struct EvidenceOut<'a> {
    rule_id: &'a str,
    detail: &'a str,
    confidence: f64,
}

#[derive(Serialize)]
struct ActorOut<'a> {
    group_id: &'a str,
    name: &'a str,
    aliases: &'a [String],
    score: f64,
    matched_techniques: &'a [String],
}

#[derive(Serialize)]
struct Annotations<'a> {
    mitre_attack: Ann<'a>,
}

#[derive(Serialize)]
struct Ann<'a> {
    #[serde(skip_serializing_if = "no_items")]
    mitre_technique_id: &'a [String],
    #[serde(skip_serializing_if = "no_items")]
    mitre_technique: Vec<&'a str>,
    #[serde(skip_serializing_if = "no_items")]
    mitre_tactic_id: Vec<&'a str>,
    #[serde(skip_serializing_if = "no_items")]
    mitre_tactic: Vec<&'a str>,
    #[serde(skip_serializing_if = "no_items")]
    mitre_threat_group_name: Vec<&'a str>,
}

#[derive(Serialize)]
struct IndicatorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

/// An event's attributes, written as a JSON object in key order.
struct Attributes<'a>(Vec<(&'a str, &'a str)>);

impl Attributes<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Attributes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}

fn body<'a>(held: &'a impl EventView<EnrichedEvent>, view: &'a AttackView<'_>) -> Body<'a> {
    let ev = held.event();
    let details = view
        .details()
        .map(|(t, d)| TechniqueOut {
            id: t.id,
            name: t.name,
            url: t.page(),
            confidence: d.confidence,
            tactics: t
                .tactics()
                .iter()
                .map(|x| TacticOut {
                    id: x.id,
                    name: x.name,
                    reference: view.tactic_reference(x.id),
                })
                .collect(),
            evidence: d
                .evidence
                .iter()
                .map(|e| EvidenceOut {
                    rule_id: &e.rule_id,
                    detail: &e.detail,
                    confidence: e.confidence,
                })
                .collect(),
        })
        .collect();
    let tactic_ids: Vec<&str> = view.tactics.iter().map(|t| t.id).collect();
    let ann = Ann {
        mitre_technique_id: &ev.technique_ids,
        mitre_technique: view.details().map(|(t, _)| t.name).collect(),
        mitre_tactic_id: tactic_ids.clone(),
        mitre_tactic: view.tactics.iter().map(|t| t.name).collect(),
        mitre_threat_group_name: view.groups.iter().map(|g| g.actor.name).collect(),
    };
    let has_ann = !(ann.mitre_technique_id.is_empty()
        && ann.mitre_technique.is_empty()
        && ann.mitre_tactic_id.is_empty()
        && ann.mitre_threat_group_name.is_empty());
    let (src, dest) = (Side::of(ev.source.as_ref()), Side::of(ev.destination.as_ref()));
    let user = if src.user.is_empty() { dest.user } else { src.user };
    let kind = DetectorKind::try_from(ev.detector_kind).unwrap_or(DetectorKind::Unspecified);
    let status = AttributionStatus::try_from(ev.attribution_status).unwrap_or(AttributionStatus::Unspecified);
    Body {
        event_id: &ev.event_id,
        event_type: &ev.event_type,
        timestamp: rfc3339(ev.timestamp.as_ref()),
        description: &ev.description,
        signature: if ev.description.is_empty() {
            &ev.event_type
        } else {
            &ev.description
        },
        severity: view.severity_name(),
        severity_id: view.severity_number(),
        src: src.addr,
        src_ip: src.ip,
        src_host: src.host,
        src_port: src.port,
        src_user: src.user,
        dest: dest.addr,
        dest_ip: dest.ip,
        dest_host: dest.host,
        dest_port: dest.port,
        dest_user: dest.user,
        user,
        vendor_product: "attackmesh",
        source_service: &ev.source_service,
        submitted_by: &ev.submitted_by,
        detector_kind: kind.as_str_name(),
        confidence_score: ev.confidence_score,
        attack_version: &ev.attack_version,
        attribution_status: status.as_str_name(),
        revision: ev.revision,
        enriched_at: rfc3339(ev.enriched_at.as_ref()),
        mitre_attack: Mitre {
            technique_ids: &ev.technique_ids,
            techniques: details,
            tactic_ids,
            threat_actors: view
                .actors
                .iter()
                .map(|a| ActorOut {
                    group_id: a.group_id,
                    name: a.name,
                    aliases: a.aliases,
                    score: a.score,
                    matched_techniques: a.matched_techniques,
                })
                .collect(),
        },
        annotations: has_ann.then_some(Annotations { mitre_attack: ann }),
        indicators: ev
            .related_indicators
            .iter()
            .map(|i| IndicatorOut {
                kind: stix_type(i.r#type),
                value: &i.value,
            })
            .collect(),
        attributes: Attributes(held.attributes().collect()),
        original_format: &ev.original_format,
        rba: ev.campaign.as_deref().map(super::campaign::Rba::of),
    }
}

fn envelope<'a>(
    held: &'a impl EventView<EnrichedEvent>,
    view: &'a AttackView<'_>,
    meta: &Metadata<'a>,
) -> Envelope<'a> {
    let ev = held.event();
    Envelope {
        time: epoch(ev.timestamp.as_ref()),
        host: meta.host.unwrap_or(&ev.source_service),
        source: meta.source,
        sourcetype: meta.sourcetype,
        index: meta.index,
        event: body(held, view),
        fields: Fields {
            event_id: &ev.event_id,
            severity: view.severity_name(),
            mitre_technique_id: &ev.technique_ids,
        },
    }
}

/// Appends the envelope of `ev` to `out` (no newline), as it goes into a batch body or a line.
/// `kb` fills in a compact event's details, as for [`AttackView::of`].
pub fn write_envelope(ev: &impl EventView<EnrichedEvent>, meta: &Metadata<'_>, kb: Option<&Kb>, out: &mut Vec<u8>) {
    let view = AttackView::of(ev.event(), kb);
    // The envelope holds strings, numbers and string maps only: writing it into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &envelope(ev, &view, meta));
}

/// The envelope of `ev` on its own, for tests that look into it.
#[cfg(test)]
pub(crate) fn envelope_bytes(ev: &EnrichedEvent, meta: &Metadata<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_envelope(ev, meta, None, &mut out);
    out
}
