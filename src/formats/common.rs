//! JSON helpers shared by the format parsers: flattening to dotted keys, typed field lookups,
//! ports, addresses and lenient timestamps.
//!
//! Nothing here knows a detector's record layout; that lives in the per-format modules.

use std::net::IpAddr;

use chrono::{DateTime, Datelike as _, NaiveDateTime, Utc};
use pbjson_types::Timestamp;
use serde_json::Value;

use super::ParseError;

/// Cuts `s` to at most `max` bytes without splitting a character.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// Returns `s` cut to at most `max` bytes without splitting a character.
pub(crate) fn truncated(s: &str, max: usize) -> String {
    let mut owned = s.to_owned();
    truncate(&mut owned, max);
    owned
}

/// Flattens the scalar leaves of `value` into dotted keys (`alert.signature`), in document
/// order. Arrays of scalars are joined with `,`; arrays holding objects get index segments
/// (`dns.answers.0.rdata`). Nulls, empty strings and empty arrays are left out.
pub(crate) fn flatten(value: &Value, out: &mut Vec<(String, String)>) {
    // One key buffer for the whole walk: segments are pushed and popped, and a key is copied
    // only for a leaf that is kept.
    let mut key = String::with_capacity(64);
    flatten_into(value, &mut key, out);
}

/// Runs `f` with `segment` appended to `key` (after a `.` unless `key` is empty), then
/// restores `key`.
pub(crate) fn with_segment(key: &mut String, segment: &str, f: impl FnOnce(&mut String)) {
    let len = key.len();
    if len > 0 {
        key.push('.');
    }
    key.push_str(segment);
    f(key);
    key.truncate(len);
}

fn flatten_into(value: &Value, key: &mut String, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (segment, child) in map {
                with_segment(key, segment, |key| flatten_into(child, key, out));
            }
        }
        Value::Array(items) => {
            if items.iter().all(|item| !item.is_object() && !item.is_array()) {
                let joined: Vec<String> = items.iter().filter_map(scalar_string).collect();
                if !joined.is_empty() && !key.is_empty() {
                    out.push((key.clone(), joined.join(",")));
                }
            } else {
                for (index, item) in items.iter().enumerate() {
                    with_segment(key, &index.to_string(), |key| flatten_into(item, key, out));
                }
            }
        }
        scalar => {
            if !key.is_empty()
                && let Some(text) = scalar_string(scalar)
            {
                out.push((key.clone(), text));
            }
        }
    }
}

/// The textual form of a JSON scalar; `None` for null, empty strings, objects and arrays.
pub(crate) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Follows `path` through nested objects; each segment is one literal key (which may itself
/// contain dots, as Falco's `output_fields` keys do).
pub(crate) fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

/// The trimmed, non-empty string at `path`.
pub(crate) fn get_str<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(value, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The scalar at `path` as text (numbers and booleans included).
/// (Parsers read the borrowed tree; this is the oracle its property test compares with.)
#[cfg(test)]
pub(crate) fn get_text(value: &Value, path: &[&str]) -> Option<String> {
    get(value, path)
        .and_then(scalar_string)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The integer at `path`, given as a JSON number or a numeric string.
/// (Parsers read the borrowed tree; this is the oracle its property test compares with.)
#[cfg(test)]
pub(crate) fn get_i64(value: &Value, path: &[&str]) -> Option<i64> {
    match get(value, path)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The strings at `path`: each string of an array, or the single string found there.
/// (Parsers read the borrowed tree; this is the oracle its property test compares with.)
#[cfg(test)]
pub(crate) fn get_strings(value: &Value, path: &[&str]) -> Vec<String> {
    match get(value, path) {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(other) => scalar_string(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A port from text; anything outside 0..=65535 (or not a number) is unknown (0).
pub(crate) fn port_from_str(text: &str) -> u32 {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|port| *port <= u32::from(u16::MAX))
        .unwrap_or(0)
}

/// The address in canonical textual form when `text` is an IPv4 or IPv6 address, else empty.
pub(crate) fn ip_text(text: &str) -> String {
    canonical_ip(text).map(|(_, text)| text).unwrap_or_default()
}

/// The address `text` holds (trimmed) and its canonical text. An IPv4 address that parses is
/// already canonical (the parser refuses leading zeros), so its text is taken as it is.
pub(crate) fn canonical_ip(text: &str) -> Option<(IpAddr, String)> {
    let text = text.trim();
    let ip: IpAddr = text.parse().ok()?;
    let canonical = match ip {
        IpAddr::V4(_) => text.to_owned(),
        IpAddr::V6(v6) => v6.to_string(),
    };
    Some((ip, canonical))
}

/// Parses the timestamp found in `field`, see [`parse_time`].
pub(crate) fn timestamp_field(record: &Value, field: &str) -> Result<Timestamp, ParseError> {
    match record.get(field) {
        None | Some(Value::Null) => Err(ParseError::MissingField(field.to_owned())),
        Some(Value::String(text)) => parse_time(field, text),
        Some(Value::Number(number)) => parse_time(field, &number.to_string()),
        Some(other) => Err(ParseError::BadTimestamp {
            field: field.to_owned(),
            value: truncated(&other.to_string(), 64),
        }),
    }
}

/// Parses a detector timestamp leniently: RFC 3339 (`Z` or `+hh:mm`), `+hhmm` offsets
/// (Suricata, Wazuh), no offset at all (taken as UTC), or epoch seconds with a fraction (Zeek).
pub(crate) fn parse_time(field: &str, text: &str) -> Result<Timestamp, ParseError> {
    parse_datetime(text.trim())
        // A google.protobuf.Timestamp (and RFC 3339) spans the years 0001 to 9999 only: later
        // instants would be written as JSON that no decoder reads back.
        .filter(|t| (1..=9999).contains(&t.year()))
        .map(Timestamp::from)
        .ok_or_else(|| ParseError::BadTimestamp {
            field: field.to_owned(),
            value: truncated(text, 64),
        })
}

fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    if text.is_empty() {
        return None;
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) && !text.contains('-') && !text.contains(':') {
        return parse_epoch(text);
    }
    if let Some(parsed) = parse_iso(text) {
        return Some(parsed);
    }
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(parsed) = DateTime::parse_from_str(text, pattern) {
            return Some(parsed.with_timezone(&Utc));
        }
    }
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, pattern) {
            return Some(parsed.and_utc());
        }
    }
    None
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|±HH:MM|±HHMM]` without chrono's format
/// machinery; `None` for anything else (left to the general patterns, which read every text
/// this reads to the same instant).
fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?
            .iter()
            .try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(digits(0..4)?).ok()?, digits(5..7)?, digits(8..10)?)?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        for (index, digit) in fraction[..count].iter().enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(u32::try_from(8 - index).ok()?);
        }
        rest = &fraction[count..];
    }
    if second >= 60 {
        return None; // a leap second is left to chrono
    }
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let offset_seconds = match rest {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let (hours, minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let local = date.and_time(time);
    Some((local - chrono::Duration::seconds(offset_seconds)).and_utc())
}

/// Epoch seconds as `digits[.digits]`, parsed exactly (no float rounding), or in exponent form.
fn parse_epoch(text: &str) -> Option<DateTime<Utc>> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) && fraction.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: i64 = whole.parse().ok()?;
        let mut nanos: u32 = 0;
        for (index, digit) in fraction.bytes().take(9).enumerate() {
            let exponent = u32::try_from(8 - index).ok()?;
            nanos += u32::from(digit - b'0') * 10u32.pow(exponent);
        }
        return DateTime::from_timestamp(seconds, nanos);
    }
    let float: f64 = text.parse().ok()?;
    if !float.is_finite() || !(0.0..=1.0e11).contains(&float) {
        return None;
    }
    let seconds = float.trunc();
    let nanos = ((float - seconds) * 1.0e9).round().clamp(0.0, 999_999_999.0);
    // Both values are finite and range-checked above, so the casts cannot saturate.
    DateTime::from_timestamp(seconds as i64, nanos as u32)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Option<(i64, i32)> {
        parse_time("ts", text).ok().map(|t| (t.seconds, t.nanos))
    }

    #[test]
    fn timestamps_beyond_year_9999_are_refused() {
        // Found by the parse_zeek fuzz target: a Zeek `ts` in milliseconds became year 45677,
        // which canonical JSON writes as `+45677-…` and cannot read back.
        assert_eq!(seconds("1379288690947.057"), None);
        assert_eq!(seconds("+45677-12-01T11:29:07Z"), None);
        assert_eq!(seconds("253402300800"), None);
        assert_eq!(seconds("253402300799"), Some((253_402_300_799, 0)));
        assert_eq!(seconds("9999-12-31T23:59:59Z"), Some((253_402_300_799, 0)));
    }

    #[test]
    fn timestamps_are_parsed_leniently() {
        assert_eq!(
            seconds("2019-01-02T03:50:11.315110"),
            Some((1_546_401_011, 315_110_000))
        );
        assert_eq!(
            seconds("2015-03-29T11:01:38.221126-0600"),
            Some((1_427_648_498, 221_126_000))
        );
        assert_eq!(
            seconds("2024-01-01T10:00:00.123+0000"),
            Some((1_704_103_200, 123_000_000))
        );
        assert_eq!(
            seconds("2024-01-01T10:00:00.123456789Z"),
            Some((1_704_103_200, 123_456_789))
        );
        assert_eq!(seconds("2024-01-01T11:00:00+01:00"), Some((1_704_103_200, 0)));
        assert_eq!(seconds("1379288667.706265"), Some((1_379_288_667, 706_265_000)));
        assert_eq!(seconds("1575413096"), Some((1_575_413_096, 0)));
        assert_eq!(seconds("1.5e9"), Some((1_500_000_000, 0)));
        for bad in ["", "yesterday", "2024-13-01T00:00:00Z", "99999999999999999999", "-"] {
            assert!(seconds(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn the_common_shape_reads_as_chrono_reads_it() {
        let slow = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f"].iter().find_map(|p| {
                        DateTime::parse_from_str(text, p)
                            .map(|t| t.with_timezone(&Utc))
                            .ok()
                            .or_else(|| NaiveDateTime::parse_from_str(text, p).ok().map(|t| t.and_utc()))
                    })
                })
        };
        let mut checked = 0;
        for date in [
            "2015-03-29",
            "2024-02-29",
            "2023-02-29",
            "0001-01-01",
            "9999-12-31",
            "2024-13-01",
            "2024-00-10",
        ] {
            for time in [
                "11:01:38", "00:00:00", "23:59:59", "24:00:00", "12:60:00", "23:59:60", "1:2:3",
            ] {
                for fraction in ["", ".5", ".221126", ".123456789", ".1234567891", ".", ".x"] {
                    for zone in [
                        "", "Z", "+0000", "-0600", "+05:30", "-23:59", "+2400", "+0060", "+01", "z", " Z",
                    ] {
                        let text = format!("{date}T{time}{fraction}{zone}");
                        if let Some(fast) = parse_iso(&text) {
                            assert_eq!(Some(fast), slow(&text), "{text}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn flattening_joins_scalar_arrays_and_indexes_objects() {
        let value: Value = serde_json::json!({
            "alert": {"signature_id": 7, "metadata": {"mitre_technique_id": ["T1046", "T1595"]}},
            "answers": [{"rdata": "1.2.3.4"}],
            "empty": "", "none": null, "flag": true
        });
        let mut out = Vec::new();
        flatten(&value, &mut out);
        let find = |key: &str| out.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(find("alert.signature_id"), Some("7"));
        assert_eq!(find("alert.metadata.mitre_technique_id"), Some("T1046,T1595"));
        assert_eq!(find("answers.0.rdata"), Some("1.2.3.4"));
        assert_eq!(find("flag"), Some("true"));
        assert_eq!(find("empty"), None);
        assert_eq!(find("none"), None);
    }

    #[test]
    fn addresses_are_written_canonically() {
        for (text, expected) in [
            (" 10.0.0.1 ", "10.0.0.1"),
            ("2001:DB8::0001", "2001:db8::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("010.0.0.1", ""),
            ("host", ""),
        ] {
            assert_eq!(ip_text(text), expected, "{text}");
            if let Some((ip, canonical)) = canonical_ip(text) {
                assert_eq!(ip.to_string(), canonical);
            }
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut text = "é".repeat(10);
        truncate(&mut text, 5);
        assert_eq!(text, "éé");
        assert_eq!(port_from_str("65535"), 65535);
        assert_eq!(port_from_str("65536"), 0);
        assert_eq!(port_from_str("-1"), 0);
    }
}
