//! The event builder: collects what a parser found and keeps every event inside
//! [`crate::limits`] and the value rules of validation, so a parsed event is never rejected for
//! its shape.

use std::collections::{BTreeMap, HashSet, btree_map::Entry};
use std::net::IpAddr;

use pbjson_types::Timestamp;
use uuid::Uuid;

use super::common::{canonical_ip, truncate, truncated};
use super::{EVENT_ID_NAMESPACE, Format};
use crate::limits::{
    MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_COMMAND_LINE_BYTES, MAX_DESCRIPTION_BYTES,
    MAX_EVENT_TYPE_BYTES, MAX_HOSTNAME_BYTES, MAX_INDICATOR_BYTES, MAX_INDICATORS, MAX_ORIGINAL_BYTES, MAX_SHORT_BYTES,
    MAX_SOURCE_SERVICE_BYTES, MAX_TECHNIQUE_HINTS, MAX_USER_BYTES,
};
use crate::proto::{DetectionEvent, DetectorKind, Endpoint, Indicator, IndicatorType, Severity};
use crate::text::is_domain;
use crate::validate::is_technique_id;

/// Attribute set when `original` had to be cut to [`MAX_ORIGINAL_BYTES`].
pub(crate) const ORIGINAL_TRUNCATED: &str = "original_truncated";
/// Attribute holding how many attributes were left out to respect [`MAX_ATTRIBUTES`].
pub const ATTRIBUTES_DROPPED: &str = "attributes_dropped";

/// Longest attribute buffer handed on to the next record of a thread; a giant record's is let go.
const KEPT_PAIRS: usize = 512;

/// Most attribute texts a thread keeps for its next records (see [`recycle`]).
pub(crate) const KEPT_STRINGS: usize = 512;
/// Largest buffer [`recycle`] keeps: a rare long value's room is let go.
const KEPT_STRING_BYTES: usize = 1024;

thread_local! {
    /// The attribute buffer of the last record finished on this thread, empty, for the next one:
    /// a record's few dozen pairs then cost no buffer of their own, whose size would send the
    /// allocator to its slow path (consolidating the small blocks freed since) record after
    /// record.
    static PAIRS: std::cell::Cell<Vec<(String, String)>> = const { std::cell::Cell::new(Vec::new()) };
    /// Emptied attribute texts of events handed back with [`recycle`] on this thread.
    static STRINGS: std::cell::Cell<Vec<String>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Hands back an event parsed on this thread once its holder is done with it (a shipper, once
/// the event is encoded): its attribute keys and values are emptied and kept, and the next
/// records parsed on this thread write their attributes into them. A record's few dozen
/// attributes then cost no allocation and no free each, which glibc's per-thread cache (seven
/// blocks a size) cannot absorb. Dropping an event instead is always correct; this only saves
/// work, and keeps at most 512 buffers of at most 1 KiB each.
pub fn recycle(event: DetectionEvent) {
    let mut kept = KeptStrings::take();
    for (key, value) in event.attributes {
        for mut text in [key, value] {
            if kept.0.len() < KEPT_STRINGS && text.capacity() <= KEPT_STRING_BYTES {
                text.clear();
                kept.0.push(text);
            }
        }
    }
}

/// This thread's emptied strings (see [`recycle`]), taken for one record and given back when
/// dropped.
pub(crate) struct KeptStrings(Vec<String>);

impl KeptStrings {
    pub(crate) fn take() -> Self {
        Self(STRINGS.take())
    }

    /// An empty string, in a kept buffer when there is one.
    pub(crate) fn empty(&mut self) -> String {
        self.0.pop().unwrap_or_default()
    }

    /// `text` as an owned string, in a kept buffer when there is one.
    pub(crate) fn copy(&mut self, text: &str) -> String {
        match self.0.pop() {
            Some(mut owned) => {
                owned.push_str(text);
                owned
            }
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
impl KeptStrings {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn all_empty_and_small(&self) -> bool {
        self.0.iter().all(|s| s.is_empty() && s.capacity() <= KEPT_STRING_BYTES)
    }
}

impl Drop for KeptStrings {
    fn drop(&mut self) {
        STRINGS.set(std::mem::take(&mut self.0));
    }
}

/// Collects the parts of one event and enforces [`crate::limits`] when finished.
pub(crate) struct EventBuilder<'a> {
    /// The event under construction; parsers set plain fields directly.
    pub(crate) event: DetectionEvent,
    format: &'static str,
    /// The whole record, borrowed: the id is derived from it even when `original` is cut.
    line: &'a str,
    attributes: Vec<(String, String)>,
    priority: &'static [&'static str],
    original_truncated: bool,
}

impl<'a> EventBuilder<'a> {
    /// Starts an event for `line` (without its line terminator) of `format`.
    pub(crate) fn new(format: Format, line: &'a str, kind: DetectorKind) -> Self {
        Self::named(format.name(), line, kind)
    }

    /// Starts an event for `record` of a format that is not read line by line (OTLP), named
    /// `format` in `original_format` and in the event id.
    pub(crate) fn named(format: &'static str, line: &'a str, kind: DetectorKind) -> Self {
        let mut original = line.to_owned();
        let original_truncated = original.len() > MAX_ORIGINAL_BYTES;
        truncate(&mut original, MAX_ORIGINAL_BYTES);
        let event = DetectionEvent {
            detector_kind: kind as i32,
            original,
            original_format: format.to_owned(),
            ..DetectionEvent::default()
        };
        Self {
            event,
            format,
            line,
            attributes: PAIRS.take(),
            priority: &[],
            original_truncated,
        }
    }

    /// Attribute keys (exact, or prefixes ending in `.`) kept first when the cap bites.
    pub(crate) fn priority(&mut self, keys: &'static [&'static str]) {
        self.priority = keys;
    }

    /// Adds attributes; order and caps are settled in [`EventBuilder::finish`].
    pub(crate) fn attributes(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        self.attributes.extend(pairs);
    }

    /// The attributes added so far, to add more in place (as [`super::tree::flatten`] does).
    pub(crate) fn attributes_mut(&mut self) -> &mut Vec<(String, String)> {
        &mut self.attributes
    }

    pub(crate) fn event_type(&mut self, event_type: &str) {
        self.event.event_type = truncated(event_type.trim(), MAX_EVENT_TYPE_BYTES);
    }

    /// [`EventBuilder::event_type`] for a text the parser built: kept without a copy.
    pub(crate) fn event_type_owned(&mut self, event_type: String) {
        self.event.event_type = trimmed(event_type, MAX_EVENT_TYPE_BYTES);
    }

    pub(crate) fn source_service(&mut self, name: &str) {
        self.event.source_service = truncated(name.trim(), MAX_SOURCE_SERVICE_BYTES);
    }

    pub(crate) fn severity(&mut self, severity: Severity) {
        self.event.severity = severity as i32;
    }

    pub(crate) fn timestamp(&mut self, timestamp: Timestamp) {
        self.event.timestamp = Some(timestamp);
    }

    pub(crate) fn description(&mut self, text: &str) {
        self.event.description = truncated(text.trim(), MAX_DESCRIPTION_BYTES);
    }

    /// [`EventBuilder::description`] for a text the parser built: kept without a copy.
    pub(crate) fn description_owned(&mut self, text: String) {
        self.event.description = trimmed(text, MAX_DESCRIPTION_BYTES);
    }

    /// Sets the initiator; its address also becomes an indicator.
    pub(crate) fn source(&mut self, endpoint: Endpoint) {
        self.ip_indicator(&endpoint.ip);
        self.event.source = bounded(endpoint);
    }

    /// Sets the target; its address also becomes an indicator.
    pub(crate) fn destination(&mut self, endpoint: Endpoint) {
        self.ip_indicator(&endpoint.ip);
        self.event.destination = bounded(endpoint);
    }

    /// Adds a detector-supplied technique id, trimmed and uppercased. Anything that is not
    /// shaped like a technique id (`T1234`, `T1234.567`) is left out: validation would reject
    /// the whole event for it. The detector's value stays in the attributes either way.
    pub(crate) fn hint(&mut self, id: &str) {
        let id = id.trim().to_ascii_uppercase();
        let hints = &mut self.event.technique_hints;
        if is_technique_id(&id) && hints.len() < MAX_TECHNIQUE_HINTS && !hints.contains(&id) {
            hints.push(id);
        }
    }

    /// Adds an IPv4 or IPv6 indicator; anything that is not an address is skipped.
    pub(crate) fn ip_indicator(&mut self, text: &str) {
        match canonical_ip(text) {
            Some((IpAddr::V4(_), text)) => self.push_indicator(IndicatorType::Ipv4, text),
            Some((IpAddr::V6(_), text)) => self.push_indicator(IndicatorType::Ipv6, text),
            None => {}
        }
    }

    /// Adds a domain indicator; an address given as host name becomes an IP indicator.
    pub(crate) fn domain_indicator(&mut self, text: &str) {
        let host = text.trim().trim_end_matches('.');
        if host.parse::<IpAddr>().is_ok() {
            self.ip_indicator(host);
        } else if is_domain(host) {
            self.push_indicator(IndicatorType::Domain, host.to_ascii_lowercase());
        }
    }

    /// Adds a file hash indicator when `text` has the hex length of `kind`.
    pub(crate) fn hash_indicator(&mut self, kind: IndicatorType, text: &str) {
        let hex = text.trim().to_ascii_lowercase();
        let expected = match kind {
            IndicatorType::FileMd5 => 32,
            IndicatorType::FileSha1 | IndicatorType::X509Sha1 => 40,
            IndicatorType::FileSha256 => 64,
            _ => return,
        };
        if hex.len() == expected && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.push_indicator(kind, hex);
        }
    }

    /// Adds a URL, e-mail address, file name, account or command line indicator, trimmed.
    /// Values validation would reject (malformed URL or address, NUL bytes) are skipped.
    pub(crate) fn indicator(&mut self, kind: IndicatorType, text: &str) {
        let value = text.trim();
        let valid = match kind {
            IndicatorType::Url => value
                .split_once("://")
                .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty()),
            IndicatorType::Email => value
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && is_domain(domain)),
            _ => !value.is_empty(),
        };
        if valid && !value.contains('\0') {
            self.push_indicator(kind, value.to_owned());
        }
    }

    /// Too long an observable is left out rather than cut: a cut one would be a different value.
    fn push_indicator(&mut self, kind: IndicatorType, value: String) {
        if self.event.indicators.len() >= MAX_INDICATORS || value.len() > MAX_INDICATOR_BYTES {
            return;
        }
        // At most MAX_INDICATORS to look through, usually a handful: a scan beats hashing.
        let r#type = kind as i32;
        if !self
            .event
            .indicators
            .iter()
            .any(|seen| seen.r#type == r#type && seen.value == value)
        {
            self.event.indicators.push(Indicator { r#type, value });
        }
    }

    /// Settles attributes and derives the event id.
    pub(crate) fn finish(mut self) -> DetectionEvent {
        let mut fixed = Vec::new();
        if self.original_truncated {
            fixed.push((ORIGINAL_TRUNCATED.to_owned(), "true".to_owned()));
        }
        let mut pairs = std::mem::take(&mut self.attributes);
        self.event.attributes = if fixed.len() + pairs.len() <= MAX_ATTRIBUTES {
            let attributes = uncapped_attributes(fixed, &mut pairs);
            if pairs.capacity() <= KEPT_PAIRS {
                PAIRS.set(pairs);
            }
            attributes
        } else {
            cap_attributes(fixed, pairs, self.priority).into_iter().collect()
        };
        self.event.event_id = event_id(self.format, &self.event.event_type, self.line);
        self.event
    }
}

/// The deterministic id of a record, see [`super::EVENT_ID_NAMESPACE`].
///
/// This is `Uuid::new_v5(&EVENT_ID_NAMESPACE, name)` for the name `format\nevent_type\nline`,
/// with the name hashed in parts, so the record is not copied once more just to be hashed, by
/// a SHA-1 that uses the CPU's SHA extensions where it has them (the same digest either way).
pub(crate) fn event_id(format: &str, event_type: &str, line: &str) -> String {
    use sha1::Digest as _;
    let mut sha1 = sha1::Sha1::new();
    for part in [
        EVENT_ID_NAMESPACE.as_bytes().as_slice(),
        format.as_bytes(),
        b"\n",
        event_type.as_bytes(),
        b"\n",
        line.as_bytes(),
    ] {
        sha1.update(part);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&sha1.finalize()[..16]);
    let id = uuid::Builder::from_sha1_bytes(bytes).into_uuid();
    id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).to_owned()
}

/// `text` trimmed and cut to `max` bytes, reusing its buffer when nothing had to be trimmed.
fn trimmed(mut text: String, max: usize) -> String {
    let trimmed = text.trim();
    if trimmed.len() != text.len() {
        return truncated(trimmed, max);
    }
    truncate(&mut text, max);
    text
}

/// `None` for an endpoint nothing is known about; otherwise its texts cut to the limits.
fn bounded(mut endpoint: Endpoint) -> Option<Endpoint> {
    if endpoint == Endpoint::default() {
        return None;
    }
    truncate(&mut endpoint.hostname, MAX_HOSTNAME_BYTES);
    truncate(&mut endpoint.user, MAX_USER_BYTES);
    if let Some(process) = endpoint.process.as_mut() {
        truncate(&mut process.name, MAX_SHORT_BYTES);
        truncate(&mut process.executable, MAX_SHORT_BYTES);
        truncate(&mut process.parent_name, MAX_SHORT_BYTES);
        truncate(&mut process.command_line, MAX_COMMAND_LINE_BYTES);
    }
    Some(endpoint)
}

fn rank(key: &str, priority: &[&str]) -> usize {
    priority
        .iter()
        .position(|p| key == *p || (p.ends_with('.') && key.starts_with(p)))
        .unwrap_or(priority.len())
}

/// What [`cap_attributes`] gives when there are no more attributes than the cap allows, moved
/// out of `pairs` (left empty, its room kept) straight into the event's map: priority only decides which attributes stay when there are
/// too many, and a key's first occurrence is the one kept either way.
fn uncapped_attributes(fixed: Vec<(String, String)>, pairs: &mut Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    kept.extend(fixed);
    let mut dropped = 0usize;
    for (key, mut value) in pairs.drain(..) {
        if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            dropped += 1;
            continue;
        }
        if let Entry::Vacant(slot) = kept.entry(key) {
            truncate(&mut value, MAX_ATTRIBUTE_VALUE_BYTES);
            slot.insert(value);
        }
    }
    if dropped > 0 {
        kept.insert(ATTRIBUTES_DROPPED.to_owned(), dropped.to_string());
    }
    kept
}

/// Orders attributes by priority, drops over-long keys and duplicates, truncates values and
/// keeps at most [`MAX_ATTRIBUTES`], noting how many were left out.
fn cap_attributes(
    fixed: Vec<(String, String)>,
    mut pairs: Vec<(String, String)>,
    priority: &[&str],
) -> Vec<(String, String)> {
    pairs.sort_by_cached_key(|(key, _)| rank(key, priority));
    let mut keys: HashSet<String> = fixed.iter().map(|(key, _)| key.clone()).collect();
    let mut kept = fixed;
    let mut dropped = 0usize;
    for (key, mut value) in pairs {
        if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            dropped += 1;
            continue;
        }
        if keys.contains(&key) {
            continue;
        }
        truncate(&mut value, MAX_ATTRIBUTE_VALUE_BYTES);
        keys.insert(key.clone());
        kept.push((key, value));
    }
    if kept.len() > MAX_ATTRIBUTES {
        dropped += kept.len() - (MAX_ATTRIBUTES - 1);
        kept.truncate(MAX_ATTRIBUTES - 1);
    }
    if dropped > 0 {
        if kept.len() >= MAX_ATTRIBUTES {
            kept.truncate(MAX_ATTRIBUTES - 1);
            dropped += 1;
        }
        kept.push((ATTRIBUTES_DROPPED.to_owned(), dropped.to_string()));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn event_ids_are_uuid_v5_of_the_name(
            format in "[a-z-]{0,12}",
            event_type in "\\PC{0,20}",
            line in proptest::collection::vec(proptest::char::any(), 0..300),
        ) {
            let line: String = line.into_iter().collect();
            let name = format!("{format}\n{event_type}\n{line}");
            let expected = Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string();
            proptest::prop_assert_eq!(event_id(&format, &event_type, &line), expected);
        }
    }

    #[test]
    fn attributes_are_capped_with_priority_kept() {
        let pairs: Vec<(String, String)> = (0..300)
            .map(|i| (format!("k{i:03}"), "v".repeat(2000)))
            .chain([("z.important".to_owned(), "yes".to_owned())])
            .chain([("x".repeat(200), "long key".to_owned())])
            .collect();
        let kept = cap_attributes(Vec::new(), pairs, &["z."]);
        assert_eq!(kept.len(), MAX_ATTRIBUTES);
        assert_eq!(kept[0], ("z.important".to_owned(), "yes".to_owned()));
        assert!(
            kept.iter()
                .all(|(k, v)| k.len() <= MAX_ATTRIBUTE_KEY_BYTES && v.len() <= MAX_ATTRIBUTE_VALUE_BYTES)
        );
        let dropped = kept.iter().find(|(k, _)| k == ATTRIBUTES_DROPPED);
        assert_eq!(dropped.map(|(_, v)| v.as_str()), Some("175"));
    }

    #[test]
    fn under_the_cap_every_attribute_stays_as_the_capped_path_keeps_it() {
        let pairs: Vec<(String, String)> = [("a", "1"), ("z.b", "2"), ("a", "3"), ("", "4")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain([
                ("x".repeat(200), "long key".to_owned()),
                ("v".to_owned(), "w".repeat(5000)),
            ])
            .collect();
        let fixed = vec![(ORIGINAL_TRUNCATED.to_owned(), "true".to_owned())];
        let fast = uncapped_attributes(fixed.clone(), &mut pairs.clone());
        let capped: BTreeMap<String, String> = cap_attributes(fixed, pairs, &["z."]).into_iter().collect();
        assert_eq!(fast, capped);
        assert_eq!(fast["a"], "1", "the first occurrence");
        assert_eq!(fast[ATTRIBUTES_DROPPED], "2");
        assert_eq!(fast["v"].len(), MAX_ATTRIBUTE_VALUE_BYTES);
    }
}
