//! TAXII query parameters: `added_after`, `limit`, `next` and `match[…]`, parsed strictly
//! (a malformed value is a 400, never silently ignored).

use crate::{
    stix::parse_micros,
    store::{Query, VersionMatch},
};

/// Parses the query string pairs of a TAXII request into a store query. `limit` defaults to
/// `page_size` and is capped at `max_page_size`; `allowed` lists the `match[…]` fields the
/// endpoint supports (others are refused). `next` is redeemed by `next` (see
/// [`super::cursor::Cursors::redeem`]) for the `date_added` the page continues after, which
/// becomes the query's lower bound together with `added_after`.
pub fn parse(
    pairs: &[(String, String)],
    page_size: usize,
    max_page_size: usize,
    allowed: &[&str],
    next: impl Fn(&str) -> Result<i64, String>,
) -> Result<Query, String> {
    let mut q = Query {
        limit: page_size,
        ..Default::default()
    };
    for (key, value) in pairs {
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match key.as_str() {
            "added_after" => {
                let us = parse_micros(value).ok_or("added_after must be an RFC 3339 timestamp")?;
                q.added_after_us = Some(q.added_after_us.map_or(us, |after| after.max(us)));
            }
            "limit" => {
                let n: usize = value.parse().map_err(|_| "limit must be a positive integer")?;
                if n == 0 {
                    return Err("limit must be a positive integer".into());
                }
                q.limit = n.min(max_page_size);
            }
            "next" => {
                let us = next(value)?;
                q.added_after_us = Some(q.added_after_us.map_or(us, |after| after.max(us)));
            }
            k if k.starts_with("match[") && k.ends_with(']') => {
                let field = &k[6..k.len() - 1];
                if !allowed.contains(&field) {
                    return Err(format!("match[{field}] is not supported here"));
                }
                match field {
                    "id" => q.ids.extend(list()),
                    "type" => q.types.extend(list()),
                    "spec_version" => q.spec_versions.extend(list()),
                    "version" => {
                        for v in list() {
                            q.versions.push(match v.as_str() {
                                "last" => VersionMatch::Last,
                                "first" => VersionMatch::First,
                                "all" => VersionMatch::All,
                                ts => VersionMatch::At(
                                    parse_micros(ts).ok_or("match[version] takes last, first, all or timestamps")?,
                                ),
                            });
                        }
                    }
                    _ => return Err(format!("match[{field}] is not supported")),
                }
            }
            // Unknown parameters are ignored, as TAXII allows.
            _ => {}
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const ALL: &[&str] = &["id", "type", "version", "spec_version"];

    /// A `next` redeemer that takes `n<digits>` as the date and refuses anything else.
    fn next(value: &str) -> Result<i64, String> {
        value
            .strip_prefix('n')
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "next is not a value this server returned".into())
    }

    fn parse(pairs: &[(String, String)], page_size: usize, max: usize, allowed: &[&str]) -> Result<Query, String> {
        super::parse(pairs, page_size, max, allowed, next)
    }

    #[test]
    fn filters_are_parsed() {
        let q = parse(
            &pairs(&[
                ("added_after", "2026-01-01T00:00:00.5Z"),
                ("limit", "5000"),
                ("next", "n1767225600600000"),
                ("match[type]", "indicator,sighting"),
                ("match[version]", "first,2026-01-01T00:00:00Z"),
                ("match[spec_version]", "2.1"),
            ]),
            100,
            1000,
            ALL,
        )
        .unwrap();
        assert_eq!(
            q.added_after_us,
            Some(1_767_225_600_600_000),
            "the later of added_after and next"
        );
        assert_eq!(q.limit, 1000);
        assert_eq!(q.after_seq, 0);
        assert_eq!(q.types, vec!["indicator", "sighting"]);
        assert_eq!(
            q.versions,
            vec![VersionMatch::First, VersionMatch::At(1_767_225_600_000_000)]
        );
        assert_eq!(parse(&[], 100, 1000, ALL).unwrap().limit, 100);
        let q = parse(
            &pairs(&[("next", "n5"), ("added_after", "2026-01-01T00:00:00.5Z")]),
            100,
            1000,
            ALL,
        )
        .unwrap();
        assert_eq!(q.added_after_us, Some(1_767_225_600_500_000), "in either order");
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            ("added_after", "yesterday"),
            ("limit", "0"),
            ("limit", "-1"),
            ("next", "abc"),
            ("next", "42"),
            ("match[version]", "newest"),
            ("match[colour]", "red"),
        ] {
            assert!(parse(&pairs(&[bad]), 100, 1000, ALL).is_err(), "{bad:?}");
        }
        assert!(parse(&pairs(&[("match[id]", "x")]), 100, 1000, &["version"]).is_err());
    }
}
