//! Zeek logs, in the TSV layout (with `#separator`, `#fields`, ... headers) and as JSON lines;
//! each line is detected on its own, so a stream may switch between them.
//!
//! Every record becomes an event `zeek.<path>`, the path coming from `#path` (TSV), `_path`
//! (JSON) or else the file name (`conn.log` gives `zeek.conn`). Column names are the attribute
//! keys; unset (`-`) and empty (`(empty)`) fields are left out, set and vector values are joined
//! with `,` whatever the `#set_separator`.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::builder::EventBuilder;
use super::common::{ip_text, parse_time, port_from_str};
use super::tree;
use super::{Format, ParseError, ParseState};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, IndicatorType, Severity};

/// Attributes kept first when a record has more than the cap allows.
const PRIORITY: &[&str] = &["note", "msg", "name", "query", "host", "uri", "id.", "proto", "service"];

/// The header of a Zeek TSV log, as far as it has been read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeekHeader {
    separator: String,
    set_separator: String,
    empty_field: String,
    unset_field: String,
    path: Option<String>,
    fields: Vec<String>,
    types: Vec<String>,
}

impl Default for ZeekHeader {
    fn default() -> Self {
        Self {
            separator: "\t".to_owned(),
            set_separator: ",".to_owned(),
            empty_field: "(empty)".to_owned(),
            unset_field: "-".to_owned(),
            path: None,
            fields: Vec::new(),
            types: Vec::new(),
        }
    }
}

impl ZeekHeader {
    /// The log's `#path`, when one was read.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The column names of `#fields`.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Applies one `#` line; unknown directives (`#open`, `#close`, comments) change nothing.
    fn apply(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("#separator") {
            let value = rest.strip_prefix([' ', '\t']).unwrap_or(rest);
            let decoded = unescape(value.trim_end_matches(['\r', '\n']));
            if !decoded.is_empty() {
                self.separator = decoded;
            }
            return;
        }
        let body = &line[1..];
        let Some((key, value)) = body.split_once(self.separator.as_str()) else {
            return;
        };
        match key {
            "set_separator" => self.set_separator = unescape(value),
            "empty_field" => self.empty_field = unescape(value),
            "unset_field" => self.unset_field = unescape(value),
            "path" => self.path = Some(unescape(value)).filter(|p| !p.is_empty()),
            "fields" => self.fields = value.split(self.separator.as_str()).map(unescape).collect(),
            "types" => self.types = value.split(self.separator.as_str()).map(str::to_owned).collect(),
            _ => {}
        }
    }

    fn is_container(&self, column: usize) -> bool {
        self.types
            .get(column)
            .is_some_and(|t| t.starts_with("set[") || t.starts_with("vector[") || t.starts_with("table["))
    }
}

/// Decodes Zeek's `\xHH` escapes; anything else is kept as written.
fn unescape(text: &str) -> String {
    if !text.contains("\\x") {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(hex) = text.get(i + 2..i + 4)
            && hex.bytes().all(|h| h.is_ascii_hexdigit())
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one Zeek line: a header (updates `state`, no event), a TSV record or a JSON record.
pub(super) fn parse(line: &str, state: &mut ParseState) -> Result<Option<DetectionEvent>, ParseError> {
    if line.starts_with('#') {
        state.zeek.apply(line);
        return Ok(None);
    }
    if line.trim_start().starts_with('{') {
        let mut pairs = Vec::new();
        tree::with_object(line, |record| {
            tree::flatten(record, &mut pairs);
            Ok(())
        })?;
        let path = pairs
            .iter()
            .find(|(key, _)| key == "_path")
            .map(|(_, value)| value.clone());
        return build(line, pairs, path, state.source_name()).map(Some);
    }
    let header = &state.zeek;
    if header.fields.is_empty() {
        return Err(ParseError::ZeekMissingHeader);
    }
    let values: Vec<&str> = line.split(header.separator.as_str()).collect();
    if values.len() != header.fields.len() {
        return Err(ParseError::ZeekFieldCount {
            expected: header.fields.len(),
            found: values.len(),
        });
    }
    let mut pairs = Vec::with_capacity(values.len());
    for (column, (name, raw)) in header.fields.iter().zip(values).enumerate() {
        if raw == header.unset_field || raw == header.empty_field || raw.is_empty() {
            continue;
        }
        let value = if header.is_container(column) && header.set_separator != "," {
            raw.split(header.set_separator.as_str())
                .map(unescape)
                .collect::<Vec<_>>()
                .join(",")
        } else {
            unescape(raw)
        };
        pairs.push((name.clone(), value));
    }
    build(line, pairs, header.path.clone(), state.source_name()).map(Some)
}

/// The log name from a file name: `conn.log`, `conn.log.gz`, `conn.09:00:00-10:00:00.log` → `conn`.
fn path_from_source(source_name: &str) -> Option<String> {
    let file = Path::new(source_name).file_name()?.to_str()?;
    let stem = file.split('.').next()?.trim();
    (!stem.is_empty() && stem != "-").then(|| stem.to_owned())
}

fn build(
    line: &str,
    pairs: Vec<(String, String)>,
    path: Option<String>,
    source_name: &str,
) -> Result<DetectionEvent, ParseError> {
    let fields: HashMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let get = |key: &str| fields.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let path = path
        .or_else(|| path_from_source(source_name))
        .unwrap_or_else(|| "unknown".to_owned());

    let mut b = EventBuilder::new(Format::Zeek, line, DetectorKind::TrafficMonitor);
    let ts = get("ts").ok_or_else(|| ParseError::MissingField("ts".into()))?;
    b.timestamp(parse_time("ts", ts)?);
    b.event_type(&format!("zeek.{path}"));
    b.source_service("zeek");
    b.severity(if path == "notice" {
        Severity::Medium
    } else {
        Severity::Low
    });
    // The account the initiator used, where the protocol log names one (ntlm, rdp, kerberos).
    let user = get("username")
        .or(get("cookie"))
        .or(get("client").map(|c| c.split('/').next().unwrap_or(c)))
        .filter(|u| *u != "-");
    b.source(Endpoint {
        ip: get("id.orig_h").map(ip_text).unwrap_or_default(),
        port: get("id.orig_p").map_or(0, port_from_str),
        user: user.map(str::to_owned).unwrap_or_default(),
        ..Endpoint::default()
    });
    b.destination(Endpoint {
        ip: get("id.resp_h").map(ip_text).unwrap_or_default(),
        port: get("id.resp_p").map_or(0, port_from_str),
        ..Endpoint::default()
    });

    let description = match path.as_str() {
        "notice" => get("msg").or(get("note")).map(str::to_owned),
        "weird" => get("name").map(str::to_owned),
        "dns" => get("query").map(str::to_owned),
        "http" => match (get("host"), get("uri")) {
            (Some(host), Some(uri)) => Some(format!("{host}{uri}")),
            (host, uri) => host.or(uri).map(str::to_owned),
        },
        "ssl" => get("server_name").or(get("subject")).map(str::to_owned),
        "x509" => get("certificate.subject").map(str::to_owned),
        "files" => get("filename")
            .map(str::to_owned)
            .or_else(|| get("mime_type").map(|mime| format!("{} file {mime}", get("source").unwrap_or("zeek")))),
        "intel" => get("seen.indicator").map(str::to_owned),
        "smtp" => get("subject").map(str::to_owned),
        "ftp" => get("command").map(|c| format!("{c} {}", get("arg").unwrap_or_default())),
        "kerberos" => get("client").map(|c| {
            format!(
                "{} {c} {}",
                get("request_type").unwrap_or("kerberos"),
                get("service").unwrap_or_default()
            )
        }),
        _ => None,
    };
    b.description(&description.unwrap_or_else(|| {
        let side = |host: &str, port: &str| match (get(host), get(port)) {
            (Some(h), Some(p)) => format!(" {h}:{p}"),
            (Some(h), None) => format!(" {h}"),
            _ => String::new(),
        };
        let (orig, resp) = (side("id.orig_h", "id.orig_p"), side("id.resp_h", "id.resp_p"));
        let arrow = if orig.is_empty() && resp.is_empty() { "" } else { " ->" };
        format!("zeek {path}{orig}{arrow}{resp}")
    }));

    match path.as_str() {
        "dns" => get("query").into_iter().for_each(|q| b.domain_indicator(q)),
        "http" => {
            if let Some(host) = get("host") {
                b.domain_indicator(host);
                if let Some(uri) = get("uri") {
                    b.indicator(IndicatorType::Url, &format!("http://{host}{uri}"));
                }
            }
        }
        "ssl" => get("server_name").into_iter().for_each(|n| b.domain_indicator(n)),
        "notice" => {
            for key in ["src", "dst"] {
                get(key).into_iter().for_each(|ip| b.ip_indicator(ip));
            }
        }
        "smtp" => {
            for address in get("mailfrom")
                .into_iter()
                .chain(get("rcptto"))
                .flat_map(|v| v.split(','))
            {
                let address = address.trim().trim_start_matches('<').trim_end_matches('>');
                if address.contains('@') {
                    b.indicator(IndicatorType::Email, address);
                }
            }
        }
        "intel" => intel_indicator(&mut b, get("seen.indicator"), get("seen.indicator_type")),
        _ => {}
    }
    for (key, kind) in [
        ("md5", IndicatorType::FileMd5),
        ("sha1", IndicatorType::FileSha1),
        ("sha256", IndicatorType::FileSha256),
    ] {
        get(key).into_iter().for_each(|hash| b.hash_indicator(kind, hash));
    }

    b.priority(PRIORITY);
    b.attributes(pairs.iter().filter(|(key, _)| key != "_path").cloned());
    Ok(b.finish())
}

fn intel_indicator(b: &mut EventBuilder<'_>, value: Option<&str>, kind: Option<&str>) {
    let (Some(value), Some(kind)) = (value, kind) else {
        return;
    };
    match kind.trim_start_matches("Intel::") {
        "ADDR" | "SUBNET" => b.ip_indicator(value),
        "DOMAIN" => b.domain_indicator(value),
        "URL" => b.indicator(IndicatorType::Url, value),
        "EMAIL" => b.indicator(IndicatorType::Email, value),
        "USER_NAME" => b.indicator(IndicatorType::UserAccount, value),
        "FILE_NAME" => b.indicator(IndicatorType::FileName, value),
        "CERT_HASH" => b.hash_indicator(IndicatorType::X509Sha1, value),
        "FILE_HASH" => {
            for kind in [
                IndicatorType::FileMd5,
                IndicatorType::FileSha1,
                IndicatorType::FileSha256,
            ] {
                b.hash_indicator(kind, value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::parse_line;

    const HEADER: &[&str] = &[
        "#separator \\x09",
        "#set_separator\t;",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tdns",
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tquery\tanswers\tTTLs",
        "#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tvector[string]\tvector[interval]",
    ];

    #[test]
    fn tsv_header_drives_records() {
        let mut state = ParseState::new("/var/log/zeek/current/whatever.log");
        for line in HEADER {
            assert!(parse_line(Format::Zeek, line, &mut state).is_ok_and(|e| e.is_none()));
        }
        assert_eq!(state.zeek_header().path(), Some("dns"));
        let mut with_bom = ParseState::default();
        assert!(parse_line(Format::Zeek, "\u{feff}#path\tconn", &mut with_bom).is_ok());
        assert_eq!(with_bom.zeek_header().path(), Some("conn"));
        let line = "1379288667.631940\tCZG\t192.168.33.10\t1030\tfe80::1\t53\tEvil.Example.COM.\ta.example;1.2.3.4\t-";
        let event = parse_line(Format::Zeek, line, &mut state)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(event.event_type, "zeek.dns");
        assert_eq!(event.description, "Evil.Example.COM.");
        assert_eq!(event.attributes["answers"], "a.example,1.2.3.4");
        assert!(!event.attributes.contains_key("TTLs"));
        assert_eq!(event.destination.as_ref().map(|d| d.ip.as_str()), Some("fe80::1"));
        assert!(
            event
                .indicators
                .iter()
                .any(|i| i.r#type == IndicatorType::Domain as i32 && i.value == "evil.example.com")
        );
        let short = parse_line(Format::Zeek, "1379288667.6\tCZG", &mut state);
        assert_eq!(
            short.map_err(|e| e.to_string()).err().as_deref(),
            Some("zeek record has 2 fields, the `#fields` header names 9")
        );
    }

    #[test]
    fn records_without_header_or_time_are_errors() {
        let mut state = ParseState::new("conn.log");
        let no_header = parse_line(Format::Zeek, "1379288667.6\tCZG", &mut state);
        assert!(matches!(no_header, Err(ParseError::ZeekMissingHeader)));
        let no_ts = parse_line(Format::Zeek, r#"{"name":"init-bare.zeek"}"#, &mut state);
        assert_eq!(
            no_ts.map_err(|e| e.to_string()).err().as_deref(),
            Some("missing field `ts`")
        );
        let json = parse_line(
            Format::Zeek,
            r#"{"ts":1575413205.85388,"name":"unknown_protocol"}"#,
            &mut state,
        );
        let event = json.ok().flatten().unwrap_or_default();
        assert_eq!(event.event_type, "zeek.conn", "falls back to the file name");
    }

    #[test]
    fn unescape_decodes_hex_only() {
        assert_eq!(unescape("a\\x09b\\x2"), "a\tb\\x2");
        assert_eq!(unescape("\\xzz\\x41"), "\\xzzA");
        assert_eq!(path_from_source("logs/http.2024-01-01.log.gz").as_deref(), Some("http"));
        assert_eq!(path_from_source("-"), None);
    }
}
