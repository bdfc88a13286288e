//! [`Secret`]: the one type every credential of the product is held in — bearer tokens, API keys,
//! passwords, HEC tokens, database URLs with a password.
//!
//! A secret prints as [`REDACTED`] in `Debug`, `Display` and serialised config, so deriving
//! `Debug` on a config struct that holds one is safe, and a secret cannot reach a log line, an
//! error or a metric label by accident. Only [`Secret::expose`] yields the value, and only code
//! that builds an outgoing request (or stores a digest) should call it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Text shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A credential. Deserialises from a string (kept exactly as written, whitespace included) or
/// from a number or boolean (an environment value that looks like one); prints as [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself; use it only to build an outgoing request or a digest.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no credential was given (empty or only whitespace).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::config::scalar_string(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Holder {
        token: Secret,
    }

    #[test]
    fn a_secret_keeps_its_value_and_shows_only_redacted() {
        let held: Holder = serde_json::from_str(r#"{"token": "  s3cr3t value\n"}"#).unwrap();
        assert_eq!(held.token.expose(), "  s3cr3t value\n", "kept exactly as written");
        for shown in [
            format!("{held:?}"),
            format!("{held:#?}"),
            held.token.to_string(),
            serde_json::to_string(&held).unwrap(),
        ] {
            assert!(!shown.contains("s3cr3t") && shown.contains(REDACTED), "{shown}");
        }
        let numeric: Holder = serde_json::from_str(r#"{"token": 123456}"#).unwrap();
        assert_eq!(numeric.token.expose(), "123456");
        assert!(Secret::new(" \n").is_empty() && !Secret::from("x").is_empty());
    }
}
