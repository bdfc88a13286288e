//! Bearer tokens for tests: callers of given roles, as the runtime's auth config lists them
//! (SHA-256 digests) and as clients present them.

use std::time::Duration;

use attackmesh_runtime::{
    auth::{AuthConfig, Role, TokenEntry, hash_token},
    config::RuntimeConfig,
    server::{GrpcServer, ServeOptions},
};

/// Callers a test admits, each with a role and the token it presents: `<name>-token`.
#[derive(Debug, Clone)]
pub struct Tokens {
    callers: Vec<(String, Role)>,
}

impl Tokens {
    /// Callers named `name` with `role`.
    pub fn new(callers: &[(&str, Role)]) -> Self {
        Self {
            callers: callers.iter().map(|(name, role)| ((*name).to_owned(), *role)).collect(),
        }
    }

    /// The token caller `name` presents; panics when the table has no such caller.
    pub fn bearer(&self, name: &str) -> String {
        assert!(
            self.callers.iter().any(|(n, _)| n == name),
            "no caller `{name}` in the token table"
        );
        token_of(name)
    }

    /// The runtime's token entries: names, roles and SHA-256 digests, never the tokens.
    pub fn entries(&self) -> Vec<TokenEntry> {
        self.callers
            .iter()
            .map(|(name, role)| TokenEntry {
                name: name.clone(),
                role: *role,
                sha256: hash_token(&token_of(name)),
            })
            .collect()
    }

    /// Auth that admits these callers and nobody else.
    pub fn auth(&self) -> AuthConfig {
        AuthConfig {
            tokens: self.entries(),
            ..Default::default()
        }
    }

    /// A runtime config with this auth and a 2 s shutdown grace.
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            auth: self.auth(),
            shutdown_grace: Duration::from_secs(2),
            ..Default::default()
        }
    }

    /// A runtime gRPC server built from [`Tokens::runtime`].
    pub async fn server(&self) -> GrpcServer {
        server(&self.runtime()).await
    }
}

/// A runtime gRPC server built from `runtime` (auth, TLS, grace).
pub async fn server(runtime: &RuntimeConfig) -> GrpcServer {
    GrpcServer::new(ServeOptions::from_config(runtime).unwrap())
        .await
        .unwrap()
}

fn token_of(name: &str) -> String {
    format!("{name}-token")
}
