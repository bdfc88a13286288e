//! What STIX 2.1 requires of each object type beyond the common properties: required
//! properties, timestamp properties and their order, value shapes, what relationships and
//! sightings may point at, and the shape of `stix` patterns.

use serde_json::{Map, Value};

use super::{Kind, id_type, timestamp_of};

/// Required properties of STIX 2.1 domain, relationship and meta objects beyond the common ones.
pub(super) const REQUIRED: &[(&str, &[&str])] = &[
    ("attack-pattern", &["name"]),
    ("campaign", &["name"]),
    ("course-of-action", &["name"]),
    ("grouping", &["context", "object_refs"]),
    ("identity", &["name"]),
    ("incident", &["name"]),
    ("indicator", &["pattern", "pattern_type", "valid_from"]),
    ("infrastructure", &["name"]),
    ("intrusion-set", &["name"]),
    ("location", &[]),
    ("malware", &["is_family"]),
    ("malware-analysis", &["product"]),
    ("note", &["content", "object_refs"]),
    ("observed-data", &["first_observed", "last_observed", "number_observed"]),
    ("opinion", &["opinion", "object_refs"]),
    ("report", &["name", "published", "object_refs"]),
    ("threat-actor", &["name"]),
    ("tool", &["name"]),
    ("vulnerability", &["name"]),
    ("relationship", &["relationship_type", "source_ref", "target_ref"]),
    ("sighting", &["sighting_of_ref"]),
    ("language-content", &["object_ref", "contents"]),
    (
        "extension-definition",
        &["created_by_ref", "name", "schema", "version", "extension_types"],
    ),
];

/// STIX 2.1 cyber-observable types and their required properties.
pub(super) const OBSERVABLES: &[(&str, &[&str])] = &[
    ("artifact", &[]),
    ("autonomous-system", &["number"]),
    ("directory", &["path"]),
    ("domain-name", &["value"]),
    ("email-addr", &["value"]),
    ("email-message", &["is_multipart"]),
    ("file", &[]),
    ("ipv4-addr", &["value"]),
    ("ipv6-addr", &["value"]),
    ("mac-addr", &["value"]),
    ("mutex", &["name"]),
    ("network-traffic", &["protocols"]),
    ("process", &[]),
    ("software", &["name"]),
    ("url", &["value"]),
    ("user-account", &[]),
    ("windows-registry-key", &[]),
    ("x509-certificate", &[]),
];

/// Timestamp properties by type (any precision), and pairs that must be in order.
const TIMESTAMPS: &[(&str, &[&str])] = &[
    ("campaign", &["first_seen", "last_seen"]),
    ("indicator", &["valid_from", "valid_until"]),
    ("infrastructure", &["first_seen", "last_seen"]),
    ("intrusion-set", &["first_seen", "last_seen"]),
    ("language-content", &["object_modified"]),
    ("malware", &["first_seen", "last_seen"]),
    ("malware-analysis", &["submitted", "analysis_started", "analysis_ended"]),
    ("observed-data", &["first_observed", "last_observed"]),
    ("report", &["published"]),
    ("relationship", &["start_time", "stop_time"]),
    ("sighting", &["first_seen", "last_seen"]),
    ("threat-actor", &["first_seen", "last_seen"]),
];

/// `(later, earlier, strictly)`: `later` must not precede `earlier` (must follow it if strictly).
const ORDER: &[(&str, &str, &str, bool)] = &[
    ("campaign", "last_seen", "first_seen", false),
    ("indicator", "valid_until", "valid_from", true),
    ("infrastructure", "last_seen", "first_seen", false),
    ("intrusion-set", "last_seen", "first_seen", false),
    ("malware", "last_seen", "first_seen", false),
    ("observed-data", "last_observed", "first_observed", false),
    ("relationship", "stop_time", "start_time", true),
    ("sighting", "last_seen", "first_seen", false),
    ("threat-actor", "last_seen", "first_seen", false),
];

pub(super) fn check_type_specific(map: &Map<String, Value>, ty: &str, kind: Kind, problems: &mut Vec<String>) {
    let table = if kind == Kind::Observable {
        OBSERVABLES
    } else {
        REQUIRED
    };
    let required = table.iter().find(|(t, _)| *t == ty).map_or(&[][..], |(_, r)| r);
    for key in required.iter().filter(|k| !map.contains_key(**k)) {
        problems.push(format!("`{key}` is required (type `{ty}`)"));
    }
    let any_of = |keys: &[&str]| keys.iter().any(|k| map.contains_key(*k));
    let alternatives: &[&[&str]] = match ty {
        "malware-analysis" => &[&["result", "analysis_sco_refs"]],
        "observed-data" => &[&["object_refs", "objects"]],
        "location" => &[&["region", "country", "latitude"]],
        "file" if kind == Kind::Observable => &[&["hashes", "name"]],
        "marking-definition" => &[&["definition", "extensions"]],
        _ => &[],
    };
    for keys in alternatives.iter().filter(|k| !any_of(k)) {
        problems.push(format!("one of {} is required (type `{ty}`)", keys.join(", ")));
    }
    if let Some((_, keys)) = TIMESTAMPS.iter().find(|(t, _)| *t == ty) {
        for key in keys.iter() {
            if let Some(Err(why)) = map.get(*key).map(|v| timestamp_of(v, false)) {
                problems.push(format!("`{key}` {why}"));
            }
        }
    }
    for (_, later, earlier, strictly) in ORDER.iter().filter(|(t, ..)| *t == ty) {
        let at = |k: &str| map.get(k).and_then(|v| timestamp_of(v, false).ok());
        if let (Some(l), Some(e)) = (at(later), at(earlier))
            && (l < e || (*strictly && l == e))
        {
            let relation = if *strictly { "come after" } else { "not precede" };
            problems.push(format!("`{later}` must {relation} `{earlier}`"));
        }
    }
    for (t, key, ok, what) in SHAPES {
        if *t == ty && map.get(*key).is_some_and(|v| !ok(v)) {
            problems.push(format!("`{key}` must be {what}"));
        }
    }
    for (t, key, refused) in NOT_REFERENCING {
        let target = map.get(*key).and_then(Value::as_str).map(id_type);
        if *t == ty && target.is_some_and(|target| refused.contains(&target)) {
            problems.push(format!("`{key}` may not reference a `{}`", target.unwrap_or_default()));
        }
    }
    if ty == "malware" && map.get("is_family") == Some(&Value::Bool(true)) && !map.contains_key("name") {
        problems.push("a malware family needs a `name`".into());
    }
    if ty == "marking-definition" {
        if map.contains_key("definition") != map.contains_key("definition_type") {
            problems.push("`definition` and `definition_type` go together".into());
        }
        if let Err(why) = crate::stix::tlp::check_published(map) {
            problems.push(why);
        }
    }
    if ty == "indicator"
        && map.get("pattern_type").and_then(Value::as_str) == Some("stix")
        && let Some(Err(why)) = map.get("pattern").and_then(Value::as_str).map(stix_pattern_shape)
    {
        problems.push(format!("`pattern` {why}"));
    }
}

/// Value shapes of type-specific properties: `(type, property, check, what it must be)`.
type Shape = (&'static str, &'static str, fn(&Value) -> bool, &'static str);

const SHAPES: &[Shape] = &[
    ("indicator", "pattern", Value::is_string, "a string"),
    ("indicator", "pattern_type", Value::is_string, "a string"),
    (
        "relationship",
        "relationship_type",
        relationship_type,
        "lower-case letters, digits and hyphens",
    ),
    ("sighting", "count", sighting_count, "an integer from 0 to 999,999,999"),
    (
        "observed-data",
        "number_observed",
        observed_count,
        "an integer from 1 to 999,999,999",
    ),
    ("malware", "is_family", Value::is_boolean, "true or false"),
    ("marking-definition", "definition", Value::is_object, "an object"),
];

/// Object types a relationship or sighting may not point at.
const NOT_REFERENCING: &[(&str, &str, &[&str])] = &[
    ("relationship", "source_ref", EMBEDDED_ONLY),
    ("relationship", "target_ref", EMBEDDED_ONLY),
    ("sighting", "sighting_of_ref", EMBEDDED_ONLY),
];
const EMBEDDED_ONLY: &[&str] = &[
    "relationship",
    "sighting",
    "bundle",
    "marking-definition",
    "language-content",
];

fn sighting_count(v: &Value) -> bool {
    v.as_u64().is_some_and(|c| c <= 999_999_999)
}

fn observed_count(v: &Value) -> bool {
    v.as_u64().is_some_and(|c| (1..=999_999_999).contains(&c))
}

fn relationship_type(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// Whether a STIX pattern has the shape of one: observation expressions in square brackets,
/// balanced brackets and parentheses outside string literals, and closed string literals.
pub(super) fn stix_pattern_shape(pattern: &str) -> Result<(), &'static str> {
    let mut stack = Vec::new();
    let mut chars = pattern.chars();
    let mut comparisons = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\\') => {
                        chars.next();
                    }
                    Some('\'') => break,
                    Some(_) => {}
                    None => return Err("has an unclosed string literal"),
                }
            },
            '[' | '(' => stack.push(c),
            ']' | ')' => {
                let open = if c == ']' { '[' } else { '(' };
                if stack.pop() != Some(open) {
                    return Err("has unbalanced brackets");
                }
                if c == ']' {
                    comparisons += 1;
                }
            }
            c if stack.is_empty() && c.is_ascii_alphanumeric() && comparisons == 0 => {
                return Err("must start with an observation expression in square brackets");
            }
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("has unbalanced brackets");
    }
    if comparisons == 0 {
        return Err("has no observation expression in square brackets");
    }
    Ok(())
}
