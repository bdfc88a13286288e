//! Windows event log records (EVTX, Sysmon, PowerShell, Security…) as detection events, shared
//! by the `evtx`, `evtx-json` and `winlogbeat` formats.
//!
//! Each format reads its layout into a [`WinRecord`]: the System fields under the names Sigma
//! rules use (`EventID`, `Channel`, `Provider_Name`, `Computer`, …) and the event data by its
//! own names (`Image`, `CommandLine`, `ParentImage`, `TargetObject`, `ScriptBlockText`, …;
//! UserData leaves by their element name; unnamed `<Data>` items joined as `Data`). [`build`]
//! turns a record into a `BEHAVIOURAL_ANALYSIS` event:
//!
//! * `event_type` is `windows.<channel>.<EventID>`, e.g.
//!   `windows.Microsoft-Windows-Sysmon/Operational.1`; `source_service` the provider.
//! * The source endpoint is the acting side: the computer (or the remote address of a logon or
//!   connection), the acting user and process (`Image`, `CommandLine`, `ProcessId`,
//!   `ParentImage`). The destination is the target: `DestinationIp`/`DestinationPort`/
//!   `DestinationHostname`, the computer logged on to, `TargetUserName`.
//! * Security 4688 also gets `Image`/`ParentImage` from `NewProcessName`/`ParentProcessName`,
//!   as Sigma's `process_creation` rules read them.
//! * Attributes are the record's fields, event data and System fields first; empty values
//!   are kept (Sigma rules test for them).

use pbjson_types::Timestamp;

use super::builder::EventBuilder;
use super::common::{ip_text, port_from_str};
use super::{Format, ParseError};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Process, Severity};

/// Attribute keys kept first when a record has more fields than the cap allows.
const PRIORITY: &[&str] = &[
    "EventID",
    "Channel",
    "Provider_Name",
    "Computer",
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "OriginalFileName",
    "TargetObject",
    "Details",
    "TargetFilename",
    "ScriptBlockText",
    "Payload",
    "ContextInfo",
    "Data",
];

/// One Windows event, whatever layout it came in.
#[derive(Debug, Default)]
pub(crate) struct WinRecord {
    pub(crate) timestamp: Option<Timestamp>,
    /// System fields (`EventID`, `Channel`, `Provider_Name`, `Computer`, …).
    pub(crate) system: Vec<(String, String)>,
    /// Event data (or user data) fields.
    pub(crate) data: Vec<(String, String)>,
    /// A rendered message, when the layout carries one (Winlogbeat).
    pub(crate) message: Option<String>,
}

impl WinRecord {
    fn get(&self, name: &str) -> Option<&str> {
        self.data
            .iter()
            .chain(&self.system)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty() && *v != "-")
    }

    fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// Every field, event data first, with the aliases Sigma rules expect.
    pub(crate) fn fields(mut self) -> Vec<(String, String)> {
        let alias = |r: &WinRecord, from: &str, to: &str| {
            (r.get(to).is_none())
                .then(|| r.get(from).map(|v| (to.to_owned(), v.to_owned())))
                .flatten()
        };
        if self.get("Channel").is_some_and(|c| c.eq_ignore_ascii_case("security"))
            && self.get("EventID") == Some("4688")
        {
            let extra: Vec<(String, String)> = [("NewProcessName", "Image"), ("ParentProcessName", "ParentImage")]
                .into_iter()
                .filter_map(|(from, to)| alias(&self, from, to))
                .collect();
            self.data.extend(extra);
        }
        let mut out = self.data;
        out.extend(self.system);
        out
    }
}

/// The last component of a Windows or POSIX path.
fn base_name(path: &str) -> &str {
    path.rsplit(['\\', '/']).find(|p| !p.is_empty()).unwrap_or_default()
}

/// Windows event levels: 1 critical, 2 error, 3 warning, 4 and 0 information.
fn severity(level: Option<&str>) -> Severity {
    match level.map(str::trim) {
        Some("1") => Severity::Critical,
        Some("2") => Severity::High,
        Some("3") => Severity::Medium,
        _ => Severity::Low,
    }
}

/// Builds the detection event of `record`; `line` is the record as read (kept as `original`).
pub(crate) fn build(format: Format, line: &str, record: WinRecord) -> Result<DetectionEvent, ParseError> {
    let timestamp = record
        .timestamp
        .ok_or_else(|| ParseError::MissingField("TimeCreated".into()))?;
    let channel = record.get("Channel").unwrap_or("unknown").to_owned();
    let event_id = record.get("EventID").unwrap_or("0").to_owned();
    let provider = record.get("Provider_Name").unwrap_or("windows").to_owned();
    let computer = record.get("Computer").unwrap_or_default().to_owned();

    let mut b = EventBuilder::new(format, line, DetectorKind::BehaviouralAnalysis);
    b.timestamp(timestamp);
    b.event_type(&format!("windows.{channel}.{event_id}"));
    b.source_service(&provider);
    b.severity(severity(record.get("Level")));
    b.description(&describe(&record, &provider, &event_id));

    let image = record.first(&["Image", "NewProcessName", "SourceImage", "Application"]);
    let command_line = record.first(&["CommandLine", "ProcessCommandLine"]);
    let process = Process {
        pid: record
            .first(&["ProcessId", "NewProcessId", "SourceProcessId"])
            .and_then(parse_pid)
            .unwrap_or(0),
        name: image.map(base_name).unwrap_or_default().to_owned(),
        executable: image.unwrap_or_default().to_owned(),
        command_line: command_line.unwrap_or_default().to_owned(),
        parent_name: record
            .first(&["ParentImage", "ParentProcessName"])
            .map(base_name)
            .unwrap_or_default()
            .to_owned(),
    };
    if let Some(cmd) = command_line {
        b.indicator(IndicatorType::ProcessCommandLine, cmd);
    }
    let user = qualified_user(&record);
    if let Some(u) = &user {
        b.indicator(IndicatorType::UserAccount, u);
    }
    let source_ip = record
        .first(&[
            "SourceIp",
            "IpAddress",
            "SourceAddress",
            "ClientAddress",
            "SourceNetworkAddress",
        ])
        .map(ip_text)
        .unwrap_or_default();
    let remote = !source_ip.is_empty() && record.get("DestinationIp").is_none();
    b.source(Endpoint {
        ip: source_ip.clone(),
        port: record.first(&["SourcePort", "IpPort"]).map_or(0, port_from_str),
        hostname: record
            .first(&["SourceHostname", "WorkstationName", "Workstation"])
            .map(str::to_owned)
            .unwrap_or_else(|| if remote { String::new() } else { computer.clone() }),
        user: user.unwrap_or_default(),
        process: (process != Process::default()).then_some(process),
    });
    let dest_host = record.first(&["DestinationHostname"]).map(str::to_owned);
    b.destination(Endpoint {
        ip: record
            .first(&["DestinationIp", "DestAddress"])
            .map(ip_text)
            .unwrap_or_default(),
        port: record.first(&["DestinationPort", "DestPort"]).map_or(0, port_from_str),
        hostname: dest_host
            .clone()
            .unwrap_or_else(|| if remote { computer.clone() } else { String::new() }),
        user: record.get("TargetUserName").unwrap_or_default().to_owned(),
        ..Endpoint::default()
    });
    if let Some(host) = dest_host {
        b.domain_indicator(&host);
    }
    if let Some(q) = record.get("QueryName") {
        b.domain_indicator(q);
    }
    if let Some(f) = record.first(&["TargetFilename", "ImageLoaded"]) {
        b.indicator(IndicatorType::FileName, f);
    }
    if let Some(hashes) = record.first(&["Hashes", "Hash"]) {
        hash_indicators(&mut b, hashes);
    }
    b.priority(PRIORITY);
    b.attributes(record.fields());
    Ok(b.finish())
}

fn parse_pid(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// `DOMAIN\user` of the acting account.
fn qualified_user(r: &WinRecord) -> Option<String> {
    if let Some(u) = r.get("User") {
        return Some(u.to_owned());
    }
    let name = r.get("SubjectUserName")?;
    Some(match r.get("SubjectDomainName") {
        Some(d) => format!("{d}\\{name}"),
        None => name.to_owned(),
    })
}

/// Sysmon's `Hashes` (`SHA256=…,MD5=…,IMPHASH=…`).
fn hash_indicators(b: &mut EventBuilder<'_>, hashes: &str) {
    for part in hashes.split(',') {
        let Some((kind, value)) = part.split_once('=') else {
            continue;
        };
        let kind = match kind.trim().to_ascii_uppercase().as_str() {
            "MD5" => IndicatorType::FileMd5,
            "SHA1" => IndicatorType::FileSha1,
            "SHA256" => IndicatorType::FileSha256,
            _ => continue,
        };
        b.hash_indicator(kind, value);
    }
}

/// `Provider EventID: the most telling field`.
fn describe(r: &WinRecord, provider: &str, event_id: &str) -> String {
    let detail = r
        .first(&[
            "CommandLine",
            "ScriptBlockText",
            "TargetObject",
            "TargetFilename",
            "QueryName",
            "ImageLoaded",
            "PipeName",
            "Image",
            "TargetUserName",
            "ServiceName",
            "TaskName",
            "Data",
        ])
        .or(r.message.as_deref());
    match detail {
        Some(d) => {
            let d = d.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{provider} {event_id}: {}", crate::text::clip(&d, 512))
        }
        None => format!("{provider} {event_id}"),
    }
}
