//! Parsers that turn detector records into [`DetectionEvent`]s: Suricata EVE JSON, Zeek logs (TSV
//! and JSON), Cowrie JSON, Falco JSON output, Wazuh `alerts.json`, Windows event logs (binary
//! `.evtx`, `evtx_dump` JSON, Winlogbeat/Elastic Agent documents) and canonical NDJSON; and
//! OpenTelemetry log records ([`otlp`], requests rather than lines).
//!
//! A record is one line. [`parse_line`] parses one line; [`Reader`] walks a stream and reports
//! each line with its byte offsets so a shipper can checkpoint and resume without loss or
//! duplication. Parsers only map fields: they never validate techniques, never attribute, and
//! never panic on any input.
//!
//! # Conventions
//!
//! * `event_type` is `"<format>.<subtype>"`: `suricata.<event_type>`, `zeek.<path>`, Cowrie's
//!   `eventid` verbatim, `falco.alert`, `wazuh.alert`; NDJSON events keep their own.
//! * `attributes` are the record's scalar leaves flattened to dotted keys (`alert.signature_id`,
//!   `output_fields.proc.cmdline`, `rule.mitre.id`); Windows events keep their own field names
//!   (`Image`, `CommandLine`, `EventID`, see `windows`); arrays of scalars are joined with `,`,
//!   arrays of objects get index segments (`dns.answers.0.rdata`). Zeek TSV columns are keys as
//!   named by `#fields`; unset and empty Zeek fields are left out. Caps follow
//!   [`crate::limits`]: values are cut on a character boundary, over-long keys are dropped, and
//!   when attributes had to be left out `attributes_dropped` says how many.
//! * `original` is the line without its terminator; a line over
//!   [`MAX_ORIGINAL_BYTES`](crate::limits::MAX_ORIGINAL_BYTES) keeps its first bytes and gets the
//!   attribute `original_truncated=true`. `original_format` is the [`Format`] name.
//! * `event_id` is deterministic: UUID v5 in [`EVENT_ID_NAMESPACE`] over
//!   `"<format name>\n<event_type>\n<line>"`, so re-shipping a line yields the same id wherever
//!   the file lives. Detector ids are not used: Cowrie's `uuid` names the sensor and Suricata's
//!   `flow_id` is shared by every alert of a flow.
//! * `technique_hints` are the detector's own ATT&CK ids (Suricata
//!   `alert.metadata.mitre_technique_id`, Falco tags, Wazuh `rule.mitre.id`), trimmed and
//!   uppercased; values not shaped like `T1234` or `T1234.567` (tactics such as `TA0011`) are
//!   left out, since validation rejects an event carrying one. They remain in the attributes.
//! * Indicators that validation would reject (malformed domain, URL or hash, over
//!   [`MAX_INDICATOR_BYTES`](crate::limits::MAX_INDICATOR_BYTES)) are left out, never cut.
//! * A record without a usable timestamp is an error naming the field. Byte-identical lines of
//!   the same format and event type share an id: they are one event logged twice.

mod builder;
mod common;
mod cowrie;
mod evtx;
mod evtx_json;
mod falco;
mod ndjson;
pub mod otlp;
mod reader;
mod suricata;
mod tree;
mod wazuh;
mod windows;
mod winlogbeat;
mod zeek;

#[cfg(test)]
mod reader_tests;
#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod windows_tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::proto::DetectionEvent;

pub use builder::{ATTRIBUTES_DROPPED, recycle};
pub use evtx::EvtxLines;
pub use falco::{falco_from_json, falco_from_value};
pub use reader::{Reader, Record, ResumePoint, open_path, open_path_at, resume_path, scan_prefix};
pub use zeek::ZeekHeader;

/// Longest line a reader accepts, in bytes without its terminator (1 MiB); longer lines are
/// reported as [`ParseError::LineTooLong`] and skipped without being held in memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Namespace of the UUID v5 event ids derived from records.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6afa_de86_c78b_4e99_8e17_6381_f9ab_981b);

/// A detector record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Suricata EVE JSON (`eve.json`), one event per line.
    SuricataEve,
    /// Zeek logs, TSV with `#` headers or JSON lines.
    Zeek,
    /// Cowrie honeypot JSON log (`cowrie.json`).
    Cowrie,
    /// Falco JSON output (`json_output: true`, also the `http_output` body).
    Falco,
    /// Wazuh manager `alerts.json`.
    Wazuh,
    /// Canonical `DetectionEvent` JSON, one per line.
    Ndjson,
    /// Binary Windows event log files (`.evtx`), read record by record.
    Evtx,
    /// Windows events as `evtx_dump` JSON (`{"Event":{"System":…,"EventData":…}}`): one per
    /// line, one document, or an array.
    EvtxJson,
    /// Windows events as Winlogbeat / Elastic Agent ECS documents (`winlog.*`).
    Winlogbeat,
}

impl Format {
    /// Every format, in the order of [`Format::NAMES`].
    pub const ALL: [Format; 9] = [
        Format::SuricataEve,
        Format::Zeek,
        Format::Cowrie,
        Format::Falco,
        Format::Wazuh,
        Format::Ndjson,
        Format::Evtx,
        Format::EvtxJson,
        Format::Winlogbeat,
    ];

    /// The names accepted by [`FromStr`] and printed by [`fmt::Display`].
    pub const NAMES: [&'static str; 9] = [
        "suricata-eve",
        "zeek",
        "cowrie",
        "falco",
        "wazuh",
        "ndjson",
        "evtx",
        "evtx-json",
        "winlogbeat",
    ];

    /// The format's name, also used as `original_format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::SuricataEve => "suricata-eve",
            Format::Zeek => "zeek",
            Format::Cowrie => "cowrie",
            Format::Falco => "falco",
            Format::Wazuh => "wazuh",
            Format::Ndjson => "ndjson",
            Format::Evtx => "evtx",
            Format::EvtxJson => "evtx-json",
            Format::Winlogbeat => "winlogbeat",
        }
    }

    /// True for formats whose records may be JSON documents spread over several lines or
    /// arrays of records (see [`Reader`]).
    pub fn reads_documents(self) -> bool {
        matches!(self, Format::Evtx | Format::EvtxJson | Format::Winlogbeat)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Format::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParseError::UnknownFormat(s.to_owned()))
    }
}

/// Why a line could not be turned into an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Another error, located at a line of a stream (added by [`Reader`]).
    #[error("line {line}: {error}")]
    AtLine {
        /// 1-based line number.
        line: u64,
        /// What went wrong on that line.
        error: Box<ParseError>,
    },
    /// The line is not JSON.
    #[error("invalid JSON at column {column}: {message}")]
    InvalidJson {
        /// 1-based column where the JSON parser gave up.
        column: usize,
        /// The JSON parser's reason.
        message: String,
    },
    /// The line is JSON but not an object.
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// A field the format requires is absent.
    #[error("missing field `{0}`")]
    MissingField(String),
    /// A field has a type the format does not allow there.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// Dotted name of the field.
        field: String,
        /// What the field must hold.
        expected: &'static str,
    },
    /// A field holds a value the format does not define.
    #[error("field `{field}` has unknown value `{value}`; expected {expected}")]
    UnknownValue {
        /// Dotted name of the field.
        field: String,
        /// The value found (cut to 64 bytes).
        value: String,
        /// The values the format defines.
        expected: &'static str,
    },
    /// A timestamp field could not be parsed.
    #[error("bad timestamp `{value}` in field `{field}`")]
    BadTimestamp {
        /// Name of the field.
        field: String,
        /// The value found (cut to 64 bytes).
        value: String,
    },
    /// The line exceeds [`MAX_LINE_BYTES`].
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The line is not valid UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    /// A Zeek TSV record came before any `#fields` header.
    #[error("zeek record before a `#fields` header")]
    ZeekMissingHeader,
    /// A Zeek TSV record does not have one value per `#fields` column.
    #[error("zeek record has {found} fields, the `#fields` header names {expected}")]
    ZeekFieldCount {
        /// Columns named by `#fields`.
        expected: usize,
        /// Values found on the line.
        found: usize,
    },
    /// A canonical NDJSON line does not decode as a `DetectionEvent`.
    #[error("invalid detection event: {0}")]
    InvalidEvent(String),
    /// An OTLP log record (or the request holding it) that cannot be read; the message names
    /// the field (see [`otlp`]).
    #[error("{0}")]
    Otlp(String),
    /// A format name that [`Format::from_str`] does not know.
    #[error(
        "unknown format `{0}`, expected one of: suricata-eve, zeek, cowrie, falco, wazuh, ndjson, evtx, evtx-json, winlogbeat"
    )]
    UnknownFormat(String),
    /// Reading the input failed (including a corrupt or truncated gzip stream).
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

impl ParseError {
    /// The error without its line location.
    pub fn kind(&self) -> &ParseError {
        match self {
            ParseError::AtLine { error, .. } => error.kind(),
            other => other,
        }
    }

    /// The line the error was found on, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            ParseError::AtLine { line, .. } => Some(*line),
            _ => None,
        }
    }

    pub(crate) fn at_line(self, line: u64) -> Self {
        ParseError::AtLine {
            line,
            error: Box::new(self),
        }
    }

    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        let text = error.to_string();
        let message = match text.rfind(" at line ") {
            Some(position) => text[..position].to_owned(),
            None => text,
        };
        ParseError::InvalidJson {
            column: error.column(),
            message,
        }
    }
}

/// What a parser must remember between lines of one stream: the stream's name and, for Zeek
/// TSV, the header in force. Serializable so a checkpoint can store it alongside an offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseState {
    source_name: String,
    zeek: ZeekHeader,
}

impl ParseState {
    /// State for a stream named `source_name` (a path or a label such as `-` for stdin); Zeek
    /// uses the file name to name the log when there is no `#path` header.
    pub fn new(source_name: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            zeek: ZeekHeader::default(),
        }
    }

    /// The stream's name.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Renames the stream, keeping the header state.
    pub fn set_source_name(&mut self, source_name: impl Into<String>) {
        self.source_name = source_name.into();
    }

    /// The Zeek TSV header seen so far.
    pub fn zeek_header(&self) -> &ZeekHeader {
        &self.zeek
    }
}

/// Parses one line (a trailing `\n` or `\r\n` and a leading byte-order mark are ignored).
///
/// Returns `Ok(None)` for lines that carry no detection: blank lines, Zeek `#` header lines
/// (which update `state`) and Suricata `stats` records.
pub fn parse_line(format: Format, line: &str, state: &mut ParseState) -> Result<Option<DetectionEvent>, ParseError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    // Editors on Windows start files with a byte-order mark; it is not part of the record.
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    match format {
        Format::SuricataEve => suricata::parse(line),
        Format::Zeek => zeek::parse(line, state),
        Format::Cowrie => cowrie::parse(line).map(Some),
        Format::Falco => falco::falco_from_json(line).map(Some),
        Format::Wazuh => wazuh::parse(line).map(Some),
        Format::Ndjson => ndjson::parse(line).map(Some),
        Format::Evtx | Format::EvtxJson => evtx_json::parse(format, line),
        Format::Winlogbeat => winlogbeat::parse(line).map(Some),
    }
}

/// Parses a whole document of a [`Format::reads_documents`] format: one record, or an array of
/// records (each element kept as its own `original`). Other formats parse it as one line.
pub fn parse_document(format: Format, text: &str) -> Vec<Result<Option<DetectionEvent>, ParseError>> {
    let trimmed = text.trim().trim_start_matches('\u{feff}');
    if !format.reads_documents() || !trimmed.starts_with('[') {
        return vec![parse_line(format, trimmed, &mut ParseState::default())];
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
        Ok(items) => items
            .iter()
            .map(|item| parse_line(format, &item.to_string(), &mut ParseState::default()))
            .collect(),
        Err(e) => vec![Err(ParseError::from_json(&e))],
    }
}

/// The fields of a Windows event (`evtx`, `evtx-json` or `winlogbeat` record) under the names
/// Sigma rules use, event data first, values in full (not cut to the attribute limits); `None`
/// for another format or a record that does not parse. Used to re-read an event that arrived
/// with only its `original`, or whose attributes were cut.
pub fn windows_fields(original_format: &str, original: &str) -> Option<Vec<(String, String)>> {
    let value: serde_json::Value = serde_json::from_str(original).ok()?;
    let record = match original_format {
        "evtx" | "evtx-json" => evtx_json::record(&value).ok()?,
        "winlogbeat" => winlogbeat::record(&value).ok()?,
        _ => return None,
    };
    Some(record.fields())
}

/// Parses `line` as a JSON object.
pub(crate) fn json_object(line: &str) -> Result<serde_json::Value, ParseError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| ParseError::from_json(&e))?;
    match value {
        serde_json::Value::Object(_) => Ok(value),
        serde_json::Value::Array(_) => Err(ParseError::NotAnObject("an array")),
        serde_json::Value::String(_) => Err(ParseError::NotAnObject("a string")),
        serde_json::Value::Number(_) => Err(ParseError::NotAnObject("a number")),
        serde_json::Value::Bool(_) => Err(ParseError::NotAnObject("a boolean")),
        serde_json::Value::Null => Err(ParseError::NotAnObject("null")),
    }
}
