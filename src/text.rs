//! Small text helpers every crate needs the same way: shortening quoted input, recognising
//! domain names, naming severities. One definition each, so messages and outputs agree.

use crate::proto::Severity;

/// Cuts `text` to at most `max` bytes on a character boundary (values quoted in errors and
/// evidence stay small and never echo huge input).
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A domain name as STIX `domain-name` (and validation) accepts it: dot-separated labels of
/// 1 to 63 letters, digits, `-` or `_`, at most 253 bytes in all (one trailing dot allowed).
pub fn is_domain(value: &str) -> bool {
    let value = value.strip_suffix('.').unwrap_or(value);
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Lower-case name of a severity as the event carries it: `unspecified`, `low` … `critical`
/// (unknown numbers read as `unspecified`). Rule packs match on these names.
pub fn severity_name(severity: i32) -> &'static str {
    match Severity::try_from(severity).unwrap_or(Severity::Unspecified) {
        Severity::Unspecified => "unspecified",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// The severity a SIEM is told: an event without one is reported as `low`, never left blank.
pub fn reported_severity(severity: i32) -> Severity {
    match Severity::try_from(severity).unwrap_or(Severity::Unspecified) {
        Severity::Unspecified => Severity::Low,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_stops_on_a_character_boundary() {
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("ab", 3), "ab");
        assert_eq!(clip("aé", 2), "a");
    }

    #[test]
    fn domains_and_severities() {
        assert!(is_domain("evil.example.com."));
        assert!(!is_domain("a..b"));
        assert!(!is_domain(&"a".repeat(64)));
        assert_eq!(severity_name(0), "unspecified");
        assert_eq!(severity_name(Severity::High as i32), "high");
        assert_eq!(severity_name(99), "unspecified");
        assert_eq!(reported_severity(0), Severity::Low);
        assert_eq!(reported_severity(Severity::Critical as i32), Severity::Critical);
    }
}
