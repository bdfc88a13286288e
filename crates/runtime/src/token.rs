//! The one generator of bearer tokens: `attackmesh token new`, the run token `serve all` gives
//! its own services, the demo's and the benchmark's tokens, and tests all make them here.
//!
//! A token is `amt_` and 64 hex digits: 256 bits from the operating system's CSPRNG. The prefix
//! lets secret scanners and people recognise an attackmesh token; only its SHA-256 digest is
//! ever stored in configuration ([`crate::auth::hash_token`]).

use crate::{error::Error, secret::Secret};

/// Prefix of every token attackmesh makes.
pub const TOKEN_PREFIX: &str = "amt_";

/// A new random bearer token (`amt_` + 64 hex digits).
pub fn new_token() -> Result<Secret, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Io(std::io::Error::other(format!("no randomness for a token: {e}"))))?;
    Ok(Secret::new(format!("{TOKEN_PREFIX}{}", hex::encode(bytes))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_are_prefixed_hex_and_never_repeat() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        let hex = a.expose().strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(!format!("{a:?}").contains(hex), "a token is a Secret");
    }
}
