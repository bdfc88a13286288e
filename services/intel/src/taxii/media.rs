//! TAXII 2.1 media type matching of `Accept` and `Content-Type` headers: the media type by name,
//! and its `version` parameter, if any, must be 2.1.

use axum::http::HeaderValue;

/// True when `value` (an Accept or Content-Type list) names TAXII 2.1 (`*/*` counts for Accept).
pub(super) fn names_taxii(value: Option<&HeaderValue>, wildcard: bool) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let version_ok = parts
            .filter_map(|p| p.split_once('='))
            .all(|(k, v)| !k.trim().eq_ignore_ascii_case("version") || v.trim().trim_matches('"') == "2.1");
        match media.as_str() {
            "application/taxii+json" => version_ok,
            "*/*" | "application/*" => wildcard,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_matched_by_name_and_version() {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(names_taxii(Some(&hv("application/taxii+json;version=2.1")), true));
        assert!(names_taxii(Some(&hv("application/taxii+json; version=2.1")), false));
        assert!(names_taxii(Some(&hv("application/taxii+json")), false));
        assert!(names_taxii(Some(&hv("text/html, */*")), true));
        assert!(!names_taxii(Some(&hv("*/*")), false));
        assert!(!names_taxii(Some(&hv("application/json")), true));
        assert!(!names_taxii(Some(&hv("application/taxii+json;version=2.0")), true));
        assert!(!names_taxii(None, true));
    }
}
