//! A hostile TAXII request: the first line is the `Authorization` header, the rest the query
//! string (and, read as JSON, a POSTed envelope). Authentication admits only the real token,
//! query parameters become a store query whose SQL binds every value (nothing is spliced), and
//! envelope objects are accepted or refused without panicking.

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use attackmesh_intel::{
    StixObject,
    taxii::{auth::authenticate, params},
};
use attackmesh_runtime::auth::{AuthConfig, Authenticator, Role, TokenEntry, hash_token};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-analyst-token";
const ALL: &[&str] = &["id", "type", "version", "spec_version"];

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
        if authenticate(&AUTH, &headers).is_ok() {
            assert!(carries_token(header), "admitted without the token: {header:?}");
        }
    }

    let pairs: Vec<(String, String)> = form_urlencoded::parse(rest).into_owned().collect();
    if let Ok(q) = params::parse(&pairs, 100, 1000, ALL) {
        assert!((1..=1000).contains(&q.limit), "limit out of bounds: {}", q.limit);
        assert!(q.after_seq >= 0);
        let (sql, binds) = q.to_sql("fuzz-collection", |n| format!("?{n}"));
        // The statement is built from fixed text only: a quote, comment, dash, slash, percent
        // or non-ASCII character in it could only come from a spliced value.
        assert!(
            sql.is_ascii() && !sql.contains(['\'', '"', ';', '-', '/', '\\', '%']),
            "a value reached the SQL text: {sql}"
        );
        let placeholders = sql.matches('?').count();
        assert_eq!(placeholders, binds.len(), "placeholders and bound values differ: {sql}");
    }

    if let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(rest)
        && let Some(serde_json::Value::Array(items)) = envelope.get("objects")
    {
        for item in items {
            if let Ok(object) = StixObject::from_value(item.clone()) {
                let _ = object.spec_version();
            }
        }
    }
});
