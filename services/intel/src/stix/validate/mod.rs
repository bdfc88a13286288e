//! Checks one STIX 2.1 object as a TAXII writer posted it, the way stix2-validator's mandatory
//! checks do: the common properties its kind needs (`type`, `spec_version` "2.1", an `id` of
//! `<type>--<RFC 4122 UUID>`, `created`/`modified` in UTC with millisecond or finer precision),
//! the required properties of the types STIX 2.1 defines, property names and values, identifier
//! references, timestamp formats and order (`modified` ≥ `created`, `valid_until` > `valid_from`,
//! …). On top of the validator, timestamps must name a real instant in years 0001–9999, and
//! `created`/`modified` may lie at most [`MAX_CLOCK_SKEW_SECS`] ahead of this server's clock.
//! Indicator patterns of type `stix` are checked for balanced brackets and closed quotes, not
//! against the full pattern grammar.
//!
//! Pure: no storage, and nothing here knows who posted the object.

use base64::Engine as _;
use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};
use uuid::{Uuid, Variant};

use self::types::{OBSERVABLES, REQUIRED, check_type_specific};
use super::{SPEC_VERSION, StixObject};

mod types;

/// How far ahead of this server's clock a posted `created` or `modified` may lie: a writer whose
/// clock runs a little fast is not refused, a version dated years ahead (which would stay the
/// latest version for ever) is.
pub const MAX_CLOCK_SKEW_SECS: i64 = 24 * 3600;

/// What common properties an object needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// SDOs, SROs, language contents, extension definitions and custom objects with timestamps:
    /// `spec_version`, `created`, `modified`.
    Domain,
    /// Marking definitions: `spec_version` and `created`; they have no versions.
    Marking,
    /// Cyber observables (and custom objects without timestamps): `type` and `id` only.
    Observable,
}

fn kind_of(ty: &str, map: &Map<String, Value>) -> Kind {
    if ty == "marking-definition" {
        Kind::Marking
    } else if OBSERVABLES.iter().any(|(t, _)| *t == ty) {
        Kind::Observable
    } else if REQUIRED.iter().any(|(t, _)| *t == ty) || map.contains_key("created") || map.contains_key("modified") {
        Kind::Domain
    } else {
        Kind::Observable
    }
}

/// The object `value` as posted, or every problem found with it (joined with `; `).
pub fn check(value: &Value, now: DateTime<Utc>) -> Result<StixObject, String> {
    let Value::Object(map) = value else {
        return Err("a STIX object must be a JSON object".into());
    };
    let mut problems = Vec::new();
    let ty = check_type(map, &mut problems);
    check_properties(map, &mut problems);
    if let Some(ty) = ty {
        match map.get("id").and_then(Value::as_str) {
            Some(id) if is_identifier_of(id, ty) => {}
            Some(id) => problems.push(format!("`id` {id:?} is not `{ty}--<RFC 4122 UUID>`")),
            None => problems.push("`id` is missing".into()),
        }
        let kind = kind_of(ty, map);
        check_common(map, kind, now, &mut problems);
        check_references(map, &mut problems);
        check_type_specific(map, ty, kind, &mut problems);
    }
    if problems.is_empty() {
        Ok(StixObject(map.clone()))
    } else {
        Err(problems.join("; "))
    }
}

fn check_type<'a>(map: &'a Map<String, Value>, problems: &mut Vec<String>) -> Option<&'a str> {
    let Some(ty) = map.get("type").and_then(Value::as_str) else {
        problems.push("`type` is missing".into());
        return None;
    };
    let parts: Vec<&str> = ty.split('-').collect();
    // Segments of letters and digits joined by single hyphens; a trailing hyphen is allowed.
    let shaped = (3..=250).contains(&ty.len())
        && ty.starts_with(|c: char| c.is_ascii_lowercase())
        && parts.iter().enumerate().all(|(i, part)| {
            part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && (!part.is_empty() || i == parts.len() - 1)
        });
    if !shaped {
        problems.push(format!(
            "`type` {ty:?} must be 3-250 lower-case letters, digits and hyphens"
        ));
        return None;
    }
    if ty == "bundle" {
        problems.push("a bundle is not an object; post its objects".into());
        return None;
    }
    Some(ty)
}

/// Property names and values as STIX allows them for every object.
fn check_properties(map: &Map<String, Value>, problems: &mut Vec<String>) {
    for (key, value) in map {
        let named = key == "id"
            || ((3..=250).contains(&key.len())
                && key.starts_with(|c: char| c.is_ascii_lowercase())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        if !named {
            problems.push(format!(
                "property name {key:?} must be 3-250 lower-case letters, digits and underscores"
            ));
            continue;
        }
        match value {
            Value::Null => problems.push(format!("`{key}` is null; leave it out instead")),
            Value::Array(items) if items.is_empty() => {
                problems.push(format!("`{key}` is an empty list; leave it out instead"));
            }
            _ => {}
        }
        if key.ends_with("_hex")
            && !value
                .as_str()
                .is_some_and(|s| s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            problems.push(format!("`{key}` must be hex-encoded bytes"));
        }
        if key.ends_with("_bin")
            && value
                .as_str()
                .is_none_or(|s| base64::engine::general_purpose::STANDARD.decode(s).is_err())
        {
            problems.push(format!("`{key}` must be base64-encoded bytes"));
        }
    }
}

fn check_common(map: &Map<String, Value>, kind: Kind, now: DateTime<Utc>, problems: &mut Vec<String>) {
    match (map.get("spec_version"), kind) {
        (None, Kind::Observable) => {}
        (None, _) => problems.push("`spec_version` is missing".into()),
        (Some(v), _) if v.as_str() == Some(SPEC_VERSION) => {}
        (Some(_), _) => problems.push("only STIX 2.1 is accepted (`spec_version` \"2.1\")".into()),
    }
    let needed: &[&str] = match kind {
        Kind::Domain => &["created", "modified"],
        Kind::Marking => &["created"],
        Kind::Observable => &[],
    };
    let mut parsed = [None, None];
    for (slot, key) in ["created", "modified"].into_iter().enumerate() {
        let Some(value) = map.get(key) else {
            if needed.contains(&key) {
                problems.push(format!("`{key}` is missing"));
            }
            continue;
        };
        if kind == Kind::Observable {
            continue;
        }
        match timestamp_of(value, kind == Kind::Domain) {
            Ok(t) if (t - now).num_seconds() > MAX_CLOCK_SKEW_SECS => problems.push(format!(
                "`{key}` {} lies more than {} hours ahead of this server's clock",
                value,
                MAX_CLOCK_SKEW_SECS / 3600
            )),
            Ok(t) => parsed[slot] = Some(t),
            Err(why) => problems.push(format!("`{key}` {why}")),
        }
    }
    if let [Some(created), Some(modified)] = parsed
        && modified < created
    {
        problems.push("`modified` precedes `created`".into());
    }
}

/// Identifier references: `created_by_ref` names an identity, markings name marking
/// definitions, and every other `*_ref`/`*_refs` holds identifiers.
fn check_references(map: &Map<String, Value>, problems: &mut Vec<String>) {
    for (key, value) in map {
        let wanted = match key.as_str() {
            "created_by_ref" => "identity",
            "object_marking_refs" => "marking-definition",
            _ => "",
        };
        let ok = |v: &Value| {
            v.as_str()
                .is_some_and(|id| is_identifier(id) && (wanted.is_empty() || id_type(id) == wanted))
        };
        let valid = if key.ends_with("_ref") {
            ok(value)
        } else if key.ends_with("_refs") {
            value.as_array().is_some_and(|items| items.iter().all(ok))
        } else {
            continue;
        };
        if !valid {
            let what = if wanted.is_empty() { "STIX" } else { wanted };
            problems.push(format!("`{key}` must hold {what} identifiers"));
        }
    }
    let list_of = |key: &str, item_ok: &dyn Fn(&Map<String, Value>) -> bool| {
        map.get(key).is_none_or(|v| {
            v.as_array()
                .is_some_and(|items| items.iter().all(|i| i.as_object().is_some_and(item_ok)))
        })
    };
    let string = |m: &Map<String, Value>, k: &str| m.get(k).is_some_and(Value::is_string);
    if !list_of("external_references", &|r| string(r, "source_name")) {
        problems.push("every `external_references` entry needs a `source_name`".into());
    }
    if !list_of("kill_chain_phases", &|p| {
        string(p, "kill_chain_name") && string(p, "phase_name")
    }) {
        problems.push("every `kill_chain_phases` entry needs `kill_chain_name` and `phase_name`".into());
    }
    let granular = |g: &Map<String, Value>| {
        let selectors = g
            .get("selectors")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty() && s.iter().all(Value::is_string));
        let marking = g
            .get("marking_ref")
            .and_then(Value::as_str)
            .is_some_and(|id| is_identifier(id) && id_type(id) == "marking-definition");
        selectors && (marking != g.contains_key("lang"))
    };
    if !list_of("granular_markings", &granular) {
        problems.push("every `granular_markings` entry needs `selectors` and one `marking_ref` or `lang`".into());
    }
    if !map
        .get("labels")
        .is_none_or(|v| v.as_array().is_some_and(|l| l.iter().all(Value::is_string)))
    {
        problems.push("`labels` must be a list of strings".into());
    }
    if map
        .get("confidence")
        .is_some_and(|v| v.as_u64().is_none_or(|c| c > 100))
    {
        problems.push("`confidence` must be an integer from 0 to 100".into());
    }
    for (key, ok) in [
        ("revoked", Value::is_boolean as fn(&Value) -> bool),
        ("lang", Value::is_string),
    ] {
        if map.get(key).is_some_and(|v| !ok(v)) {
            problems.push(format!("`{key}` has the wrong JSON type"));
        }
    }
}

/// Whether `text` is `<type>--<UUID>` with a well-formed type and an RFC 4122 UUID (versions
/// 1 to 5), as STIX identifiers are.
pub fn is_identifier(text: &str) -> bool {
    let Some((ty, uuid)) = text.split_once("--") else {
        return false;
    };
    let typed = ty.len() >= 3
        && ty.starts_with(|c: char| c.is_ascii_lowercase())
        && ty
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ty.ends_with('-');
    let hyphenated = uuid.len() == 36
        && uuid
            .bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'));
    typed
        && hyphenated
        && Uuid::parse_str(uuid)
            .is_ok_and(|u| (1..=5).contains(&u.get_version_num()) && u.get_variant() == Variant::RFC4122)
}

/// Whether `text` is an identifier of an object of type `ty`.
pub fn is_identifier_of(text: &str, ty: &str) -> bool {
    is_identifier(text) && id_type(text) == ty
}

fn id_type(id: &str) -> &str {
    id.split_once("--").map_or("", |(ty, _)| ty)
}

/// A STIX timestamp: `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in UTC naming a real instant in years
/// 0001–9999; `millis` demands at least millisecond precision (as `created`/`modified` must
/// have).
pub fn timestamp_of(value: &Value, millis: bool) -> Result<DateTime<Utc>, String> {
    let Some(text) = value.as_str() else {
        return Err("must be a timestamp string".into());
    };
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shaped = bytes.len() >= 20
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
            .iter()
            .all(|(i, c)| bytes[*i] == *c)
        && bytes.ends_with(b"Z");
    // Bytes 0..19 are ASCII and the last is `Z` when shaped, so the slice is on char boundaries.
    let fraction_ok = shaped
        && match text[19..text.len() - 1].strip_prefix('.') {
            Some(f) => !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) && (!millis || f.len() >= 3),
            None => text.len() == 20 && !millis,
        };
    if !fraction_ok {
        let precision = if millis {
            " with at least millisecond precision"
        } else {
            ""
        };
        return Err(format!(
            "{value} is not a UTC timestamp (YYYY-MM-DDTHH:MM:SS.sssZ){precision}"
        ));
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("{value} names no real instant"))?
        .with_timezone(&Utc);
    if parsed.year() < 1 {
        return Err(format!("{value} lies before year 0001"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests;
