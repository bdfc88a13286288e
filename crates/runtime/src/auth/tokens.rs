//! Accepted tokens: their config (inline digests and token files) and the table of digests the
//! [`Authenticator`](super::Authenticator) checks against. Tokens themselves are never stored.

use std::{collections::HashMap, fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Caller, Role};
use crate::error::Error;

/// One accepted token, by digest.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Caller identity, e.g. `suricata-edge-01`; appears in logs and metrics.
    pub name: String,
    /// What the caller may do.
    pub role: Role,
    /// Hex SHA-256 of the token (`attackmesh token hash` prints it).
    pub sha256: String,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tokens listed inline (digests only).
    pub tokens: Vec<TokenEntry>,
    /// YAML files each holding a list of token entries (e.g. a mounted Kubernetes Secret); re-read on reload.
    pub token_files: Vec<PathBuf>,
    /// Role given to calls without a token. Unset (the default) refuses them; set it only on a
    /// trusted loopback-only deployment.
    pub anonymous_role: Option<Role>,
    /// How often serving processes re-read `token_files` (a changed file takes effect within
    /// this interval, without a restart).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            token_files: Vec::new(),
            anonymous_role: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

impl AuthConfig {
    /// Checks digests, names and files.
    pub fn validate(&self) -> Result<(), Error> {
        let table = TokenTable::build(self)?;
        if self.reload_interval < Duration::from_millis(100) || self.reload_interval > Duration::from_secs(3600) {
            return Err(Error::ConfigInvalid(
                "auth.reload_interval: must be between 100ms and 1h".into(),
            ));
        }
        if table.by_digest.is_empty() && self.anonymous_role.is_none() {
            return Err(Error::ConfigInvalid(
                "auth: no tokens configured (auth.tokens or auth.token_files) and no auth.anonymous_role: nobody could call"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Hex SHA-256 of a token, as stored in config.
pub fn hash_token(token: &str) -> String {
    hex::encode(digest(token))
}

/// SHA-256 of a token as presented (surrounding whitespace ignored).
pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The accepted tokens by digest, and the role of calls without one.
#[derive(Default)]
pub(super) struct TokenTable {
    pub(super) by_digest: HashMap<[u8; 32], Caller>,
    pub(super) anonymous: Option<Role>,
}

impl TokenTable {
    /// Reads the inline tokens and every token file of `config`.
    pub(super) fn build(config: &AuthConfig) -> Result<Self, Error> {
        let mut entries = config.tokens.clone();
        for path in &config.token_files {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Secret {
                what: "tokens",
                path: path.clone(),
                reason: e.kind().to_string(),
            })?;
            let more: Vec<TokenEntry> = serde_yaml::from_str(&text).map_err(|e| Error::Secret {
                what: "tokens",
                path: path.clone(),
                reason: format!(
                    "not a list of {{name, role, sha256}} entries ({})",
                    e.location().map_or_else(String::new, |l| format!("line {}", l.line()))
                ),
            })?;
            entries.extend(more);
        }
        let mut by_digest = HashMap::new();
        for entry in entries {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(entry.sha256.trim(), &mut digest).map_err(|_| {
                Error::ConfigInvalid(format!("auth: token `{}`: sha256 must be 64 hex digits", entry.name))
            })?;
            if entry.name.trim().is_empty() {
                return Err(Error::ConfigInvalid("auth: every token needs a name".into()));
            }
            let caller = Caller {
                name: entry.name.as_str().into(),
                role: entry.role,
            };
            if by_digest.insert(digest, caller).is_some() {
                return Err(Error::ConfigInvalid(format!(
                    "auth: token `{}` is listed twice",
                    entry.name
                )));
            }
        }
        Ok(Self {
            by_digest,
            anonymous: config.anonymous_role,
        })
    }
}
