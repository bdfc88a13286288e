//! A JSON tree that borrows from the line it was parsed from: strings without escapes are slices
//! of the line, objects are vectors of entries in document order. It reads every document
//! exactly as `serde_json::Value` (with `preserve_order`) does, to the same values: a repeated
//! key keeps its first position and its last value, numbers are the same `Number`s. Parsing one
//! costs no hashing and no allocation per key or string, which a `Value` pays for every leaf.
//!
//! The helpers mirror those of `common` for `Value`, one for one.

use std::borrow::Cow;
use std::fmt;

use pbjson_types::Timestamp;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::builder::KeptStrings;
use super::common::{parse_time, port_from_str, with_segment};
use super::{ParseError, json_object};

/// A parsed JSON value borrowing from its input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(Number),
    /// A string; borrowed unless it had escapes.
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object, keys unique, in the order of their first occurrence.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// Objects with more keys than this find repeated keys through a hash set instead of a scan.
const SCAN_KEYS: usize = 16;

impl<'a> Json<'a> {
    /// The value of `key` when this is an object holding it.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The same value, borrowing from a `serde_json::Value`.
    pub(crate) fn from_value(value: &'a serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::Str(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The string, when this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses `line` as a JSON object, or `None` when only a `serde_json::Value` reads it right:
/// the line is not valid JSON or not an object (the caller reports the error the `Value` parse
/// gives), or it uses `serde_json`'s raw-value marker key.
pub(crate) fn object(line: &str) -> Option<Json<'_>> {
    match serde_json::from_str::<Json<'_>>(line) {
        Ok(value @ Json::Object(_)) => Some(value),
        Ok(_) | Err(_) => None,
    }
}

/// Parses `line` as a JSON object and builds from it with `build`: from the borrowed tree when
/// it reads the line right, else (see [`object`]) from a `serde_json::Value` converted to a tree,
/// so a line that is not a JSON object gets the `Value` parse's error word for word.
pub(crate) fn with_object<T>(
    line: &str,
    build: impl FnOnce(&Json<'_>) -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    match object(line) {
        Some(record) => build(&record),
        None => build(&Json::from_value(&json_object(line)?)),
    }
}

/// The key `serde_json` reserves for raw values; a `Value` parse treats an object holding it
/// specially, so such input is left to it.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Detector objects mostly hold a handful to a dozen keys: room for eight from the start
        // spares the growth from one to four to eight.
        let mut entries: Vec<(Cow<'de, str>, Json<'de>)> = Vec::with_capacity(8);
        let mut index: Option<std::collections::HashMap<String, usize>> = None;
        while let Some(Key(key)) = map.next_key()? {
            if key == RAW_VALUE_KEY {
                return Err(de::Error::custom("raw value marker"));
            }
            let value: Json<'de> = map.next_value()?;
            // A repeated key keeps its first place and takes the new value, as in an IndexMap.
            let found = match &index {
                Some(index) => index.get(key.as_ref()).copied(),
                None => entries.iter().position(|(k, _)| *k == key),
            };
            match found {
                Some(position) => entries[position].1 = value,
                None => {
                    if let Some(index) = index.as_mut() {
                        index.insert(key.clone().into_owned(), entries.len());
                    }
                    entries.push((key, value));
                    if index.is_none() && entries.len() > SCAN_KEYS {
                        index = Some(
                            entries
                                .iter()
                                .enumerate()
                                .map(|(i, (k, _))| (k.clone().into_owned(), i))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Flattens the scalar leaves of `value` into dotted keys, exactly as `common::flatten` does
/// for a `Value`.
///
/// The texts are written into strings recycled events left on this thread, when there are
/// some (see [`super::builder::recycle`]).
pub(crate) fn flatten(value: &Json<'_>, out: &mut Vec<(String, String)>) {
    let mut key = String::with_capacity(64);
    flatten_into(value, &mut key, &mut KeptStrings::take(), out);
}

fn flatten_into(value: &Json<'_>, key: &mut String, kept: &mut KeptStrings, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(entries) => {
            for (segment, child) in entries {
                with_segment(key, segment, |key| flatten_into(child, key, kept, out));
            }
        }
        Json::Array(items) => {
            if items
                .iter()
                .all(|item| !matches!(item, Json::Object(_) | Json::Array(_)))
            {
                // Scalars joined with `,`; `push_scalar` never writes an empty one.
                let mut joined = kept.empty();
                for item in items {
                    let len = joined.len();
                    if len > 0 {
                        joined.push(',');
                    }
                    if !push_scalar(item, &mut joined) {
                        joined.truncate(len);
                    }
                }
                if !joined.is_empty() && !key.is_empty() {
                    out.push((kept.copy(key), joined));
                }
            } else {
                for (index, item) in items.iter().enumerate() {
                    with_segment(key, &index.to_string(), |key| flatten_into(item, key, kept, out));
                }
            }
        }
        scalar => {
            if !key.is_empty() {
                let mut text = kept.empty();
                if push_scalar(scalar, &mut text) {
                    out.push((kept.copy(key), text));
                }
            }
        }
    }
}

/// Appends the textual form of a scalar to `out`, as [`scalar_string`] gives it; `false` (and
/// nothing written) for null, empty strings, objects and arrays.
fn push_scalar(value: &Json<'_>, out: &mut String) -> bool {
    match value {
        Json::Str(s) if !s.is_empty() => out.push_str(s),
        Json::Number(n) => push_number(n, out),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        _ => return false,
    }
    true
}

/// The textual form of a scalar; `None` for null, empty strings, objects and arrays.
pub(crate) fn scalar_string<'v>(value: &'v Json<'_>) -> Option<Cow<'v, str>> {
    match value {
        Json::Str(s) if !s.is_empty() => Some(Cow::Borrowed(s.as_ref())),
        Json::Number(n) => Some(Cow::Owned(number_text(n))),
        Json::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// `n.to_string()`, with integers written digit by digit instead of through `fmt` (the same
/// digits).
fn number_text(n: &Number) -> String {
    let mut text = String::new();
    push_number(n, &mut text);
    text
}

/// Appends `n` as [`number_text`] writes it.
fn push_number(n: &Number, text: &mut String) {
    let (negative, magnitude) = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => (false, u),
        (None, Some(i)) => (true, i.unsigned_abs()),
        (None, None) => {
            use std::fmt::Write as _;
            let _ = write!(text, "{n}");
            return;
        }
    };
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = magnitude;
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        text.push('-');
    }
    text.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

/// Follows `path` through nested objects.
pub(crate) fn get<'v, 'a>(value: &'v Json<'a>, path: &[&str]) -> Option<&'v Json<'a>> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

/// The trimmed, non-empty string at `path`.
pub(crate) fn get_str<'v>(value: &'v Json<'_>, path: &[&str]) -> Option<&'v str> {
    get(value, path)
        .and_then(Json::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The scalar at `path` as trimmed, non-empty text (numbers and booleans included).
pub(crate) fn get_text<'v>(value: &'v Json<'_>, path: &[&str]) -> Option<Cow<'v, str>> {
    let text = get(value, path).and_then(scalar_string)?;
    let trimmed = match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    };
    (!trimmed.is_empty()).then_some(trimmed)
}

/// The integer at `path`, given as a JSON number or a numeric string.
pub(crate) fn get_i64(value: &Json<'_>, path: &[&str]) -> Option<i64> {
    match get(value, path)? {
        Json::Number(n) => n.as_i64(),
        Json::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The strings at `path`: each scalar of an array, or the single scalar found there.
pub(crate) fn get_strings<'v>(value: &'v Json<'_>, path: &[&str]) -> Vec<Cow<'v, str>> {
    match get(value, path) {
        Some(Json::Array(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(other) => scalar_string(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A port from the value at `path`, see [`port_from_str`].
pub(crate) fn get_port(value: &Json<'_>, path: &[&str]) -> u32 {
    get_text(value, path).map_or(0, |text| port_from_str(&text))
}

/// Parses the timestamp found in `field` of `record`, which was read from `line`. A field holding
/// neither a string nor a number is quoted in the error as a `Value` writes it, so `line` is
/// read once more as one in that (rare) case.
pub(crate) fn timestamp(record: &Json<'_>, field: &str, line: &str) -> Result<Timestamp, ParseError> {
    match timestamp_field(record, field) {
        Some(timestamp) => timestamp,
        None => super::common::timestamp_field(&json_object(line)?, field),
    }
}

/// Parses the timestamp found in `field`; `None` when only a `Value` can word the error (the
/// field holds neither a string nor a number).
fn timestamp_field(record: &Json<'_>, field: &str) -> Option<Result<Timestamp, ParseError>> {
    match record.get(field) {
        None | Some(Json::Null) => Some(Err(ParseError::MissingField(field.to_owned()))),
        Some(Json::Str(text)) => Some(parse_time(field, text)),
        Some(Json::Number(number)) => Some(parse_time(field, &number_text(number))),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let text = r#"[0,7,-1,18446744073709551615,-9223372036854775808,1.5,-0.0,1e3,12345678901234567890123]"#;
        let ours: Json<'_> = serde_json::from_str(text).expect("json");
        let theirs: serde_json::Value = serde_json::from_str(text).expect("json");
        let (Json::Array(ours), serde_json::Value::Array(theirs)) = (ours, theirs) else {
            panic!("arrays")
        };
        for (ours, theirs) in ours.iter().zip(&theirs) {
            let Json::Number(n) = ours else { panic!("number") };
            assert_eq!(number_text(n), theirs.to_string());
        }
    }

    /// JSON text with few distinct keys (so objects repeat keys), escapes, every scalar kind
    /// and nesting.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "[a-c .\\\\\"]{0,4}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            Just(r#""\u00e9\/x""#.to_owned()),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec(
                    (
                        prop_oneof![Just("a"), Just("b"), Just("a.b"), Just(""), Just("\\u0061")],
                        inner
                    ),
                    0..6
                )
                .prop_map(|entries| {
                    let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn reads_and_flattens_like_a_value(text in json_text()) {
            let value: Result<serde_json::Value, _> = serde_json::from_str(&text);
            let ours: Result<Json<'_>, _> = serde_json::from_str(&text);
            proptest::prop_assert_eq!(value.is_ok(), ours.is_ok(), "{}", text);
            if let (Ok(value), Ok(ours)) = (value, ours) {
                proptest::prop_assert_eq!(&Json::from_value(&value), &ours, "{}", text);
                let (mut theirs_flat, mut ours_flat) = (Vec::new(), Vec::new());
                crate::formats::common::flatten(&value, &mut theirs_flat);
                flatten(&ours, &mut ours_flat);
                proptest::prop_assert_eq!(&theirs_flat, &ours_flat, "{}", text);
                // Once more into the strings of a recycled event: the same pairs.
                super::super::builder::recycle(crate::proto::DetectionEvent {
                    attributes: ours_flat.into_iter().map(|(k, v)| (k + "#", v + "#")).collect(),
                    ..Default::default()
                });
                let mut again = Vec::new();
                flatten(&ours, &mut again);
                proptest::prop_assert_eq!(&theirs_flat, &again, "{}", text);
                for path in [&["a"][..], &["a", "b"], &["a.b"], &["b", "a", "a"]] {
                    let theirs_text = crate::formats::common::get_text(&value, path);
                    let ours_text = get_text(&ours, path).map(Cow::into_owned);
                    proptest::prop_assert_eq!(theirs_text, ours_text);
                    proptest::prop_assert_eq!(crate::formats::common::get_strings(&value, path), get_strings(&ours, path).into_iter().map(Cow::into_owned).collect::<Vec<_>>());
                    proptest::prop_assert_eq!(crate::formats::common::get_i64(&value, path), get_i64(&ours, path));
                    proptest::prop_assert_eq!(crate::formats::common::get_str(&value, path), get_str(&ours, path));
                }
            }
        }
    }
}
