//! A hostile TAXII request: the first line is the `Authorization` header, the rest the query
//! string (and, read as JSON, a POSTed envelope). Authentication admits only the real token,
//! query parameters become a store query whose SQL binds every value (nothing is spliced), a
//! `next` cursor is taken only as this server issued it, and envelopes are read without panicking.

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use attackmesh_intel::taxii::{cursor::Cursors, envelope, params};
use attackmesh_runtime::auth::{AuthConfig, Authenticator, HttpEndpoint, Role, TokenEntry, hash_token};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-analyst-token";
const ALL: &[&str] = &["id", "type", "version", "spec_version"];
const COLLECTION: &str = "fuzz-collection";

static AUTH: LazyLock<Authenticator> = LazyLock::new(|| {
    Authenticator::new(&AuthConfig {
        tokens: vec![TokenEntry {
            name: "reader".into(),
            role: Role::Analyst,
            sha256: hash_token(TOKEN),
        }],
        ..Default::default()
    })
    .expect("token table")
});

/// Whether an `Authorization` value holds the token, as a Bearer token or a Basic password.
fn carries_token(header: &[u8]) -> bool {
    let text = String::from_utf8_lossy(header);
    if text.contains(TOKEN) {
        return true;
    }
    let encoded = text.trim().split_once(' ').map_or("", |(_, rest)| rest.trim());
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .is_ok_and(|plain| String::from_utf8_lossy(&plain).contains(TOKEN))
}

fuzz_target!(|data: &[u8]| {
    let (header, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(value) = http::HeaderValue::from_bytes(header) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        if AUTH.check_http(HttpEndpoint::TaxiiRead, &headers).is_ok() {
            assert!(carries_token(header), "admitted without the token: {header:?}");
        }
    }

    let pairs: Vec<(String, String)> = form_urlencoded::parse(rest).into_owned().collect();
    let cursors = Cursors::new(b"fuzz-cursor-key");
    if let Ok(q) = params::parse(&pairs, 100, 1000, ALL, |c| cursors.redeem(COLLECTION, c)) {
        assert!((1..=1000).contains(&q.limit), "limit out of bounds: {}", q.limit);
        // A `next` is taken only as this server issued it, and pages after its date.
        for (_, cursor) in pairs.iter().filter(|(k, _)| k == "next") {
            let date = cursors.redeem(COLLECTION, cursor).expect("an accepted next redeems");
            assert_eq!(cursors.issue(COLLECTION, date), cursor.trim(), "a next this server never issued");
            assert!(q.added_after_us.is_some_and(|after| after >= date));
        }
        assert!(q.after_seq >= 0);
        let (sql, binds) = q.to_sql(COLLECTION, |n| format!("?{n}"));
        // The statement is built from fixed text only: a quote, comment, dash, slash, percent
        // or non-ASCII character in it could only come from a spliced value.
        assert!(
            sql.is_ascii() && !sql.contains(['\'', '"', ';', '-', '/', '\\', '%']),
            "a value reached the SQL text: {sql}"
        );
        let placeholders = sql.matches('?').count();
        assert_eq!(placeholders, binds.len(), "placeholders and bound values differ: {sql}");
    }

    // Envelopes are the `taxii_envelope` target's; here only that reading one never panics.
    let _ = envelope::read(rest, attackmesh_fuzz::stix_now());
});
