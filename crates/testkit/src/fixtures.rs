//! Enriched events as the pipeline delivers them, for the export sinks' tests and benchmarks:
//! realistic events that exercise every field the sinks encode.

use attackmesh::proto::{
    AttributionStatus, DetectorKind, Endpoint, EnrichedEvent, EnrichmentMetadata, Evidence, EvidenceSource, Indicator,
    IndicatorType, Process, Severity, Tactic, TechniqueDetail, ThreatActor,
};
use pbjson_types::Timestamp;

fn tactic(id: &str, name: &str, short: &str) -> Tactic {
    Tactic {
        id: id.into(),
        name: name.into(),
        shortname: short.into(),
    }
}

/// A fully attributed SSH brute-force event number `i` (unique `event_id`, revision 1).
pub fn event(i: u64) -> EnrichedEvent {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = Timestamp {
        seconds: now - 5,
        nanos: 123_456_000,
    };
    let technique = |id: &str, name: &str, tactics: Vec<Tactic>, confidence: f64| TechniqueDetail {
        id: id.into(),
        name: name.into(),
        tactics,
        url: format!("https://attack.mitre.org/techniques/{}/", id.replace('.', "/")),
        confidence,
        evidence: vec![Evidence {
            source: EvidenceSource::Rule as i32,
            rule_id: "network/ssh-bruteforce".into(),
            detail: "ET SCAN Potential SSH Scan".into(),
            confidence,
        }],
        stix_id: "attack-pattern--a93494bb-4b80-4ea1-8695-3236a49916fd".into(),
        replaces_revoked_id: String::new(),
    };
    EnrichedEvent {
        event_id: format!("evt-{i:08}"),
        timestamp: Some(ts),
        source_service: "suricata-edge-01".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: "suricata.alert".into(),
        source: Some(Endpoint {
            ip: "203.0.113.7".into(),
            port: 51234,
            hostname: "scanner.example".into(),
            user: "root".into(),
            process: None,
        }),
        destination: Some(Endpoint {
            ip: "10.0.0.5".into(),
            port: 22,
            hostname: "bastion".into(),
            user: "admin".into(),
            process: Some(Process {
                pid: 4242,
                name: "sshd".into(),
                executable: "/usr/sbin/sshd".into(),
                command_line: "sshd: admin [priv]".into(),
                parent_name: "systemd".into(),
            }),
        }),
        severity: Severity::High as i32,
        description: "ET SCAN Potential SSH Scan OUTBOUND".into(),
        technique_ids: vec!["T1110.001".into(), "T1110".into(), "T1046".into()],
        confidence_score: 0.82,
        related_indicators: vec![
            Indicator {
                r#type: IndicatorType::Ipv4 as i32,
                value: "203.0.113.7".into(),
            },
            Indicator {
                r#type: IndicatorType::Ipv4 as i32,
                value: "198.51.100.0/24".into(),
            },
            Indicator {
                r#type: IndicatorType::Ipv6 as i32,
                value: "2001:db8::7".into(),
            },
            Indicator {
                r#type: IndicatorType::Domain as i32,
                value: "scanner.example".into(),
            },
            Indicator {
                r#type: IndicatorType::Url as i32,
                value: "http://scanner.example/x.sh".into(),
            },
            Indicator {
                r#type: IndicatorType::FileSha256 as i32,
                value: "A".repeat(64),
            },
            Indicator {
                r#type: IndicatorType::FileMd5 as i32,
                value: "b".repeat(32),
            },
            Indicator {
                r#type: IndicatorType::FileSha1 as i32,
                value: "c".repeat(40),
            },
            Indicator {
                r#type: IndicatorType::FileName as i32,
                value: "x.sh".into(),
            },
            Indicator {
                r#type: IndicatorType::Email as i32,
                value: "ops@example.org".into(),
            },
            Indicator {
                r#type: IndicatorType::UserAccount as i32,
                value: "root".into(),
            },
            Indicator {
                r#type: IndicatorType::ProcessCommandLine as i32,
                value: "curl x | sh".into(),
            },
            Indicator {
                r#type: IndicatorType::Mac as i32,
                value: "00:11:22:33:44:55".into(),
            },
            Indicator {
                r#type: IndicatorType::X509Sha1 as i32,
                value: "d".repeat(40),
            },
        ],
        metadata: Some(EnrichmentMetadata {
            techniques: vec![
                technique(
                    "T1110.001",
                    "Password Guessing",
                    vec![tactic("TA0006", "Credential Access", "credential-access")],
                    0.8,
                ),
                technique(
                    "T1110",
                    "Brute Force",
                    vec![tactic("TA0006", "Credential Access", "credential-access")],
                    0.7,
                ),
                technique(
                    "T1046",
                    "Network Service Discovery",
                    vec![tactic("TA0007", "Discovery", "discovery")],
                    0.6,
                ),
            ],
            threat_actors: vec![
                ThreatActor {
                    group_id: "G0016".into(),
                    name: "APT29".into(),
                    aliases: vec!["Cozy Bear".into(), "NOBELIUM".into()],
                    score: 0.71,
                    matched_techniques: vec!["T1110".into()],
                    stix_id: "intrusion-set--899ce53f-13a0-479b-a0e4-67d46e241542".into(),
                },
                ThreatActor {
                    group_id: "G0007".into(),
                    name: "APT28".into(),
                    aliases: vec!["Fancy Bear".into()],
                    score: 0.2,
                    matched_techniques: vec!["T1110".into()],
                    stix_id: String::new(),
                },
            ],
            rule_pack_version: "2026.11.1".into(),
        }),
        attack_version: "18.1".into(),
        attribution_status: AttributionStatus::Ok as i32,
        attributes: [
            ("signature_id".to_owned(), "2003068".to_owned()),
            ("proto".to_owned(), "TCP".to_owned()),
        ]
        .into(),
        original: r#"{"event_type":"alert","alert":{"signature_id":2003068}}"#.into(),
        original_format: "suricata-eve".into(),
        enriched_at: Some(Timestamp { seconds: now, nanos: 0 }),
        revision: 1,
        submitted_by: "suricata-edge".into(),
        campaign_id: String::new(),
        campaign: None,
    }
}

/// A degraded event: validated detector hints only, no technique details, no endpoints' IPs.
pub fn degraded_event(i: u64) -> EnrichedEvent {
    let mut ev = event(i);
    ev.attribution_status = AttributionStatus::Degraded as i32;
    ev.metadata = None;
    ev.technique_ids = vec!["T1059.004".into()];
    ev.related_indicators.clear();
    ev.source = Some(Endpoint {
        hostname: "web-01".into(),
        user: "www-data".into(),
        ..Default::default()
    });
    ev.destination = None;
    ev.detector_kind = DetectorKind::BehaviouralAnalysis as i32;
    ev.severity = Severity::Unspecified as i32;
    ev.attributes.clear();
    ev.original.clear();
    ev
}
