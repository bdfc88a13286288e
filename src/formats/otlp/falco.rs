//! Falco alerts that falcosidekick's OTLP logs output sends, turned back into the Falco alert
//! they came from, so they are parsed — and attributed — exactly as over `POST /falco`.
//!
//! falcosidekick logs each alert through the OpenTelemetry SDK with resource
//! `service.name = "falco"` (scope `falco`), the alert's `output` as body, severity INFO, and the
//! string attributes `priority`, `rule`, `source`, `hostname`, `tags` (joined with `,`) and
//! `timestamp` (Go's `time.Time.String()`: `2024-03-04 05:06:07.123456789 +0000 UTC`). Any other
//! attribute of such a record is taken as one of the alert's `output_fields`, so a sender that
//! adds them (`proc.cmdline`, `fd.sip`, …) gets the same endpoints and indicators as Falco's own
//! HTTP output. Without `timestamp` the record's time is the alert's time.

use chrono::{DateTime, SecondsFormat, Utc};
use pbjson_types::Timestamp;
use serde_json::{Map, Value};

use super::decode::Located;
use super::{attr_str, attributes_object};
use crate::formats::ParseError;
use crate::formats::common::parse_time;

/// The attributes falcosidekick sets; every other one is an output field.
const ALERT_FIELDS: [&str; 6] = ["priority", "rule", "source", "hostname", "tags", "timestamp"];

/// The Falco alert a record carries, when it is one (see the module doc).
pub(super) fn alert(located: &Located, time: &Timestamp) -> Result<Option<Value>, ParseError> {
    let from_falco =
        attr_str(&located.resource.attributes, "service.name") == Some("falco") || located.scope.name == "falco";
    let attributes = attributes_object(&located.record.attributes);
    let is_text = |key: &str| attributes.get(key).is_some_and(Value::is_string);
    if !from_falco || !is_text("rule") || !is_text("priority") {
        return Ok(None);
    }
    let mut alert = Map::new();
    if let Some(output) = super::body_text(located.record.body.as_ref()) {
        alert.insert("output".into(), Value::String(output));
    }
    let mut output_fields = Map::new();
    for (key, value) in attributes {
        match key.as_str() {
            "tags" => {
                alert.insert(key, tags(value));
            }
            "timestamp" => {
                let Value::String(text) = &value else {
                    return Err(ParseError::WrongType {
                        field: "timestamp".into(),
                        expected: "a string",
                    });
                };
                alert.insert(key, Value::String(rfc3339(&go_time(text)?)));
            }
            _ if ALERT_FIELDS.contains(&key.as_str()) => {
                alert.insert(key, value);
            }
            _ => {
                output_fields.insert(key, value);
            }
        }
    }
    if let Some(go) = alert.remove("timestamp") {
        alert.insert("time".into(), go);
    } else {
        alert.insert("time".into(), Value::String(rfc3339(time)));
    }
    if !output_fields.is_empty() {
        alert.insert("output_fields".into(), Value::Object(output_fields));
    }
    Ok(Some(Value::Object(alert)))
}

/// Falco's tags: falcosidekick joins them with `,`; an array is taken as it is.
fn tags(value: Value) -> Value {
    match value {
        Value::String(joined) => Value::Array(
            joined
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(|tag| Value::String(tag.to_owned()))
                .collect(),
        ),
        other => other,
    }
}

/// Parses Go's `time.Time.String()` (`2006-01-02 15:04:05.999999999 -0700 MST`, perhaps with a
/// monotonic clock reading ` m=+0.000`), or any timestamp the other formats accept.
pub(super) fn go_time(text: &str) -> Result<Timestamp, ParseError> {
    let text = text.split(" m=").next().unwrap_or_default().trim();
    let parts: Vec<&str> = text.split_whitespace().collect();
    let rewritten = match parts.as_slice() {
        [date, time, offset, _] | [date, time, offset] if offset.starts_with(['+', '-']) && offset.len() == 5 => {
            format!("{date} {time}{offset}")
        }
        _ => text.to_owned(),
    };
    parse_time("timestamp", &rewritten).map_err(|_| ParseError::BadTimestamp {
        field: "timestamp".into(),
        value: crate::text::clip(text, 64).to_owned(),
    })
}

/// RFC 3339 with as many fraction digits as needed, as Falco writes `time`.
fn rfc3339(time: &Timestamp) -> String {
    let nanos = u32::try_from(time.nanos).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(time.seconds, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_strings_parse() {
        let t = go_time("2024-03-04 05:06:07.123456789 +0000 UTC").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_709_528_767, 123_456_789));
        let t = go_time("2024-03-04 07:06:07.5 +0200 CEST m=+12.000000001").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_709_528_767, 500_000_000));
        let t = go_time("2024-03-04T05:06:07Z").unwrap();
        assert_eq!(t.seconds, 1_709_528_767);
        for bad in [
            "",
            "yesterday",
            "2024-03-04 25:06:07 +0000 UTC",
            "2024-03-04 05:06:07 +00 UTC",
        ] {
            assert!(
                go_time(bad).is_err_and(|e| e.to_string().contains("`timestamp`")),
                "{bad}"
            );
        }
        assert_eq!(rfc3339(&t), "2024-03-04T05:06:07Z");
    }
}
