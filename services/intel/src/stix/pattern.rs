//! STIX 2.1 patterns for attackmesh indicators: one comparison per observable, with the object
//! path STIX defines for that observable type, values normalised the way STIX requires
//! (lower-case hashes and MAC addresses), and string literals escaped (`\` and `'`).

use attackmesh::proto::{Indicator, IndicatorType};
use attackmesh::text::clip;

/// Why an indicator has no pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Escapes a value for a STIX pattern string literal.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The STIX pattern of one indicator, e.g. `[file:hashes.'SHA-256' = '…']`.
pub fn pattern_for(indicator: &Indicator) -> Result<String, PatternError> {
    let kind = IndicatorType::try_from(indicator.r#type)
        .map_err(|_| PatternError(format!("unknown indicator type {}", indicator.r#type)))?;
    let value = indicator.value.trim();
    if value.is_empty() {
        return Err(PatternError("empty indicator value".into()));
    }
    if attackmesh::validate::enriched_event(&probe(indicator)).is_err() {
        return Err(PatternError(format!(
            "`{}` is not a valid {}",
            clip(value, 120),
            kind.as_str_name()
        )));
    }
    let (path, op, value) = match kind {
        IndicatorType::Ipv4 => ("ipv4-addr:value", ip_op(value), value.to_owned()),
        IndicatorType::Ipv6 => ("ipv6-addr:value", ip_op(value), value.to_ascii_lowercase()),
        IndicatorType::Domain => (
            "domain-name:value",
            "=",
            value.trim_end_matches('.').to_ascii_lowercase(),
        ),
        IndicatorType::Url => ("url:value", "=", value.to_owned()),
        IndicatorType::FileMd5 => ("file:hashes.MD5", "=", value.to_ascii_lowercase()),
        IndicatorType::FileSha1 => ("file:hashes.'SHA-1'", "=", value.to_ascii_lowercase()),
        IndicatorType::FileSha256 => ("file:hashes.'SHA-256'", "=", value.to_ascii_lowercase()),
        IndicatorType::FileName => ("file:name", "=", value.to_owned()),
        IndicatorType::Email => ("email-addr:value", "=", value.to_owned()),
        IndicatorType::UserAccount => ("user-account:account_login", "=", value.to_owned()),
        IndicatorType::ProcessCommandLine => ("process:command_line", "=", value.to_owned()),
        IndicatorType::Mac => ("mac-addr:value", "=", value.replace('-', ":").to_ascii_lowercase()),
        IndicatorType::X509Sha1 => ("x509-certificate:hashes.'SHA-1'", "=", value.to_ascii_lowercase()),
        IndicatorType::Unspecified => return Err(PatternError("indicator type is unspecified".into())),
    };
    Ok(format!("[{path} {op} '{}']", escape(&value)))
}

/// A short human name for an indicator object, e.g. `ipv4-addr 203.0.113.5`.
pub fn display_name(indicator: &Indicator) -> String {
    let kind = match IndicatorType::try_from(indicator.r#type) {
        Ok(IndicatorType::Ipv4) => "ipv4-addr",
        Ok(IndicatorType::Ipv6) => "ipv6-addr",
        Ok(IndicatorType::Domain) => "domain-name",
        Ok(IndicatorType::Url) => "url",
        Ok(IndicatorType::FileMd5) => "file MD5",
        Ok(IndicatorType::FileSha1) => "file SHA-1",
        Ok(IndicatorType::FileSha256) => "file SHA-256",
        Ok(IndicatorType::FileName) => "file name",
        Ok(IndicatorType::Email) => "email-addr",
        Ok(IndicatorType::UserAccount) => "user-account",
        Ok(IndicatorType::ProcessCommandLine) => "command line",
        Ok(IndicatorType::Mac) => "mac-addr",
        Ok(IndicatorType::X509Sha1) => "x509 SHA-1",
        _ => "observable",
    };
    format!("{kind} {}", clip(indicator.value.trim(), 120))
}

/// CIDR blocks match by containment, single addresses by equality.
fn ip_op(value: &str) -> &'static str {
    if value.contains('/') { "ISSUBSET" } else { "=" }
}

/// An event carrying only this indicator, so the contract's own indicator validation decides.
fn probe(indicator: &Indicator) -> attackmesh::proto::EnrichedEvent {
    attackmesh::proto::EnrichedEvent {
        event_id: "probe".into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        source_service: "intel".into(),
        event_type: "probe".into(),
        related_indicators: vec![indicator.clone()],
        revision: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind(kind: IndicatorType, value: &str) -> Indicator {
        Indicator {
            r#type: kind as i32,
            value: value.into(),
        }
    }

    #[test]
    fn patterns_use_the_stix_object_paths() {
        let cases = [
            (IndicatorType::Ipv4, "203.0.113.5", "[ipv4-addr:value = '203.0.113.5']"),
            (
                IndicatorType::Ipv4,
                "10.0.0.0/8",
                "[ipv4-addr:value ISSUBSET '10.0.0.0/8']",
            ),
            (IndicatorType::Ipv6, "2001:DB8::1", "[ipv6-addr:value = '2001:db8::1']"),
            (
                IndicatorType::Ipv6,
                "2001:db8::/32",
                "[ipv6-addr:value ISSUBSET '2001:db8::/32']",
            ),
            (
                IndicatorType::Domain,
                "Evil.Example.",
                "[domain-name:value = 'evil.example']",
            ),
            (
                IndicatorType::Url,
                "http://x.example/a?b=1",
                "[url:value = 'http://x.example/a?b=1']",
            ),
            (
                IndicatorType::FileMd5,
                "D41D8CD98F00B204E9800998ECF8427E",
                "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
            ),
            (
                IndicatorType::FileSha1,
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']",
            ),
            (
                IndicatorType::FileSha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
            ),
            (IndicatorType::FileName, "a.exe", "[file:name = 'a.exe']"),
            (
                IndicatorType::Email,
                "x@evil.example",
                "[email-addr:value = 'x@evil.example']",
            ),
            (
                IndicatorType::UserAccount,
                "root",
                "[user-account:account_login = 'root']",
            ),
            (
                IndicatorType::Mac,
                "AA-BB-CC-DD-EE-FF",
                "[mac-addr:value = 'aa:bb:cc:dd:ee:ff']",
            ),
            (
                IndicatorType::X509Sha1,
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "[x509-certificate:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']",
            ),
        ];
        for (kind, value, want) in cases {
            assert_eq!(pattern_for(&ind(kind, value)).unwrap(), want, "{kind:?}");
        }
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let got = pattern_for(&ind(IndicatorType::ProcessCommandLine, r"cmd /c echo 'a\b'")).unwrap();
        assert_eq!(got, r"[process:command_line = 'cmd /c echo \'a\\b\'']");
    }

    #[test]
    fn invalid_values_have_no_pattern() {
        assert!(pattern_for(&ind(IndicatorType::Ipv4, "999.1.1.1")).is_err());
        assert!(pattern_for(&ind(IndicatorType::FileSha256, "abc")).is_err());
        assert!(pattern_for(&ind(IndicatorType::Unspecified, "x")).is_err());
        assert!(
            pattern_for(&Indicator {
                r#type: 99,
                value: "x".into()
            })
            .is_err()
        );
    }
}
