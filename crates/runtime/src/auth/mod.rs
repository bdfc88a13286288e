//! Authentication and authorisation of every gRPC call and HTTP request.
//!
//! Callers present `authorization: Bearer <token>` (HTTP surfaces that TAXII clients use also
//! take Basic with the token as password). Tokens are never stored: the config and token files
//! hold their SHA-256 digests, each with a name (the caller's identity, e.g. one per detector) and
//! a role ([`TokenEntry`]). The [`Authenticator`] checks the digest and looks the RPC or HTTP surface
//! up in the one RBAC table ([`rbac`]); [`AuthLayer`] applies it to every gRPC request and
//! [`Authenticator::check_http`] to HTTP routes, so no service parses credentials itself. A
//! refusal is a [`Denied`], answered through the error policy. gRPC health is open (kubelet
//! probes carry no token). Token files are re-read by [`Authenticator::reload`], so tokens
//! rotate without a restart.

mod authenticator;
mod credentials;
mod layer;
pub mod rbac;
mod tokens;

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

pub use authenticator::{Authenticator, Denied, WatchGuard};
pub use layer::{AuthLayer, AuthService, caller};
pub use rbac::{Allowed, HttpEndpoint};
pub use tokens::{AuthConfig, TokenEntry, hash_token};

/// What a caller may do. Roles are not ordered: each RPC lists the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A detector: may only ingest detections.
    Detector,
    /// A SOC analyst: manual enrichment, lookups, intel.
    Analyst,
    /// Operators and attackmesh's own services: everything.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Detector => "detector",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        })
    }
}

/// The authenticated identity of a request, found in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name (or `anonymous`).
    pub name: Arc<str>,
    /// Role of the token.
    pub role: Role,
}

#[cfg(test)]
mod tests;
