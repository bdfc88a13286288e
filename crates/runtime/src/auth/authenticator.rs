//! [`Authenticator`]: checks presented tokens against the digests of [`super::tokens`] and what
//! they may do against the [`super::rbac`] table, for gRPC calls ([`Authenticator::check`]) and
//! HTTP requests ([`Authenticator::check_http`]) alike. A refusal is a [`Denied`], which the
//! error policy answers (401 with a challenge, 403).

use std::sync::Arc;

use arc_swap::ArcSwap;
use attackmesh::error::{ServiceError, ServiceErrorCode};
use sha2::{Digest, Sha256};

use super::{
    AuthConfig, Caller,
    credentials::Credentials,
    rbac::{self, Allowed, HttpEndpoint},
    tokens::{self, TokenTable},
};
use crate::error::Error;

/// The `WWW-Authenticate` challenge of gRPC refusals (gRPC takes bearer tokens only).
const BEARER: &str = "Bearer";

/// Checks tokens; cheap to clone, reloadable in place.
#[derive(Clone)]
pub struct Authenticator {
    config: Arc<AuthConfig>,
    table: Arc<ArcSwap<TokenTable>>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No usable credentials.
    #[error("{reason}")]
    Unauthenticated {
        /// What was wrong with them (never the token itself).
        reason: &'static str,
        /// The `WWW-Authenticate` challenge naming the schemes accepted.
        challenge: &'static str,
    },
    /// Authenticated, but the role may not call this RPC or use this surface.
    #[error("role `{role}` may not {action}")]
    PermissionDenied {
        /// Who called.
        caller: Arc<str>,
        /// With which role.
        role: super::Role,
        /// What was refused, e.g. `call /attackmesh.v1.ExportService/Export`.
        action: String,
    },
}

impl ServiceError for Denied {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Denied::Unauthenticated { .. } => ServiceErrorCode::Unauthenticated,
            Denied::PermissionDenied { .. } => ServiceErrorCode::PermissionDenied,
        }
    }

    fn auth_challenge(&self) -> Option<&'static str> {
        match self {
            Denied::Unauthenticated { challenge, .. } => Some(challenge),
            Denied::PermissionDenied { .. } => None,
        }
    }
}

impl Authenticator {
    /// Builds the token table from config (reads token files).
    pub fn new(config: &AuthConfig) -> Result<Self, Error> {
        let table = TokenTable::build(config)?;
        Ok(Self {
            config: Arc::new(config.clone()),
            table: Arc::new(ArcSwap::from_pointee(table)),
        })
    }

    /// Re-reads token files; on error the current tokens stay in force.
    pub fn reload(&self) -> Result<(), Error> {
        let table = TokenTable::build(&self.config)?;
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Re-reads the token files every `reload_interval` until the returned guard is dropped, and
    /// swaps the new tokens in when a file's contents changed. A file that cannot be read or
    /// parsed leaves the current tokens in force (logged once per distinct content). `None`
    /// when no token files are configured.
    pub fn watch(&self) -> Option<WatchGuard> {
        if self.config.token_files.is_empty() {
            return None;
        }
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut seen = this.fingerprint();
            let mut ticker = tokio::time::interval(this.config.reload_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let now = this.fingerprint();
                if now == seen {
                    continue;
                }
                seen = now;
                match this.reload() {
                    Ok(()) => tracing::info!(tokens = this.table.load().by_digest.len(), "token files reloaded"),
                    Err(error) => tracing::warn!(%error, "token files not reloaded; current tokens stay in force"),
                }
            }
        });
        Some(WatchGuard(task))
    }

    /// Digest of the token files' current contents (unreadable files count as empty).
    fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for path in &self.config.token_files {
            let bytes = std::fs::read(path).unwrap_or_default();
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        hasher.finalize().into()
    }

    /// Authenticates an `authorization` value (`Bearer <token>` only) and authorises `path`, a
    /// gRPC method path. `None` for open RPCs (health).
    pub fn check(&self, path: &str, authorization: Option<&str>) -> Result<Option<Caller>, Denied> {
        let allowed = rbac::for_rpc(path);
        if allowed == Allowed::Anyone {
            return Ok(None);
        }
        let caller = self
            .identify(authorization, false)
            .map_err(|reason| Denied::Unauthenticated {
                reason,
                challenge: BEARER,
            })?;
        admit(allowed, caller, || format!("call {path}")).map(Some)
    }

    /// Authenticates an HTTP request's `Authorization` header and authorises `endpoint`:
    /// `Bearer <token>`, or where the endpoint takes it, HTTP Basic with the token as password
    /// and (when given) the token's name as user. The one credential check of every HTTP route.
    pub fn check_http(&self, endpoint: HttpEndpoint, headers: &http::HeaderMap) -> Result<Caller, Denied> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let caller = self
            .identify(authorization, endpoint.accepts_basic())
            .map_err(|reason| Denied::Unauthenticated {
                reason,
                challenge: endpoint.challenge(),
            })?;
        admit(rbac::for_http(endpoint), caller, || endpoint.action().to_owned())
    }

    /// The caller an `Authorization` value identifies (the anonymous role when there is none and
    /// one is configured), or why there is none.
    fn identify(&self, authorization: Option<&str>, basic: bool) -> Result<Caller, &'static str> {
        let table = self.table.load();
        let Some(value) = authorization else {
            return match table.anonymous {
                Some(role) => Ok(Caller {
                    name: "anonymous".into(),
                    role,
                }),
                None if basic => Err("missing credentials"),
                None => Err("missing bearer token"),
            };
        };
        let (token, user) = match Credentials::parse(value)? {
            Credentials::Bearer(token) => (token, None),
            Credentials::Basic { user, password } if basic => (password, Some(user)),
            _ if basic => return Err("use HTTP Basic (the token as password) or a Bearer token"),
            _ => return Err("authorization must be `Bearer <token>`"),
        };
        let caller = table
            .by_digest
            .get(&tokens::digest(&token))
            .cloned()
            .ok_or("unknown token")?;
        if user.is_some_and(|user| !user.is_empty() && user != *caller.name) {
            return Err("user name does not match the token");
        }
        Ok(caller)
    }
}

/// `caller` if `allowed` admits its role; `action` names what was refused otherwise.
fn admit(allowed: Allowed, caller: Caller, action: impl FnOnce() -> String) -> Result<Caller, Denied> {
    if allowed.admits(caller.role) {
        Ok(caller)
    } else {
        Err(Denied::PermissionDenied {
            caller: caller.name,
            role: caller.role,
            action: action(),
        })
    }
}

/// Stops the token file watcher of [`Authenticator::watch`] when dropped.
#[derive(Debug)]
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
