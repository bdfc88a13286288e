//! Authentication and per-RPC authorisation for every gRPC listener.
//!
//! Callers present `authorization: Bearer <token>`. Tokens are never stored: the config and
//! token files hold their SHA-256 digests, each with a name (the caller's identity, e.g. one per
//! detector) and a role. [`AuthLayer`] checks the digest, looks the RPC up in [`rbac`] and either
//! answers `Unauthenticated`/`PermissionDenied` itself or passes the request on with a [`Caller`]
//! in its extensions. gRPC health is open (kubelet probes carry no token). Token files are
//! re-read by [`Authenticator::reload`], so tokens rotate without a restart.

use std::{
    collections::HashMap,
    fmt,
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

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
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// The authenticated identity of a request, found in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name (or `anonymous`).
    pub name: Arc<str>,
    /// Role of the token.
    pub role: Role,
}

#[derive(Default)]
struct TokenTable {
    by_digest: HashMap<[u8; 32], Caller>,
    anonymous: Option<Role>,
}

impl TokenTable {
    fn build(config: &AuthConfig) -> Result<Self, Error> {
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

/// Checks tokens; cheap to clone, reloadable in place.
#[derive(Clone)]
pub struct Authenticator {
    config: Arc<AuthConfig>,
    table: Arc<ArcSwap<TokenTable>>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No usable credentials.
    Unauthenticated(&'static str),
    /// Authenticated, but the role may not call this RPC.
    PermissionDenied {
        /// Who called.
        caller: Arc<str>,
        /// With which role.
        role: Role,
    },
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

    /// Authenticates an `authorization` header value and authorises `path` (a gRPC method path).
    pub fn check(&self, path: &str, authorization: Option<&str>) -> Result<Option<Caller>, Denied> {
        let allowed = rbac(path);
        if allowed == Allowed::Anyone {
            return Ok(None);
        }
        let table = self.table.load();
        let caller = match authorization {
            Some(value) => {
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or(Denied::Unauthenticated("authorization must be `Bearer <token>`"))?;
                let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
                table
                    .by_digest
                    .get(&digest)
                    .cloned()
                    .ok_or(Denied::Unauthenticated("unknown token"))?
            }
            None => match table.anonymous {
                Some(role) => Caller {
                    name: "anonymous".into(),
                    role,
                },
                None => return Err(Denied::Unauthenticated("missing bearer token")),
            },
        };
        if allowed.admits(caller.role) {
            Ok(Some(caller))
        } else {
            Err(Denied::PermissionDenied {
                caller: caller.name.clone(),
                role: caller.role,
            })
        }
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

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// No authentication (health checks).
    Anyone,
    /// Any authenticated caller.
    Authenticated,
    /// Only these roles.
    Roles(&'static [Role]),
}

impl Allowed {
    fn admits(self, role: Role) -> bool {
        match self {
            Allowed::Anyone | Allowed::Authenticated => true,
            Allowed::Roles(roles) => roles.contains(&role),
        }
    }
}

const DETECTOR: &[Role] = &[Role::Detector, Role::Admin];
const ANALYST: &[Role] = &[Role::Analyst, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

/// The one RBAC table: who may call each gRPC method. Unknown methods are admin-only.
pub fn rbac(path: &str) -> Allowed {
    let Some((service, _method)) = path.trim_start_matches('/').split_once('/') else {
        return Allowed::Roles(ADMIN);
    };
    match (service, _method) {
        ("grpc.health.v1.Health", _) => Allowed::Anyone,
        ("grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection", _) => {
            Allowed::Authenticated
        }
        ("attackmesh.v1.IngestService", "Ingest") => Allowed::Roles(DETECTOR),
        ("attackmesh.v1.IngestService", "Enrich") => Allowed::Roles(ANALYST),
        ("attackmesh.v1.AttributionService", "Attribute") => Allowed::Roles(ADMIN),
        ("attackmesh.v1.AttributionService", "GetKnowledgeBaseInfo") => Allowed::Authenticated,
        ("attackmesh.v1.AttributionService", "MapPatterns" | "GetTechnique" | "GetGroup") => Allowed::Roles(ANALYST),
        ("attackmesh.v1.ExportService", "Export") => Allowed::Roles(ADMIN),
        ("attackmesh.v1.ExportService", "GetSinkStatus") => Allowed::Roles(ANALYST),
        ("attackmesh.v1.IntelService", "ShareIndicators" | "ListCollections") => Allowed::Roles(ANALYST),
        ("attackmesh.v1.IntelService", "ShareEvents") => Allowed::Roles(ADMIN),
        // HTTP endpoints are checked under `/http/<route>`: detectors post Falco alerts.
        ("http", "falco") => Allowed::Roles(DETECTOR),
        _ => Allowed::Roles(ADMIN),
    }
}

/// Tower layer applying an [`Authenticator`] to every request of a gRPC server.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    /// Wraps a server's services with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.auth.check(req.uri().path(), header) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    req.extensions_mut().insert(caller);
                }
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(denied) => {
                let status = match denied {
                    Denied::Unauthenticated(why) => {
                        tracing::info!(path = %req.uri().path(), reason = why, "call refused: unauthenticated");
                        tonic::Status::unauthenticated(why)
                    }
                    Denied::PermissionDenied { caller, role } => {
                        tracing::info!(path = %req.uri().path(), %caller, %role, "call refused: permission denied");
                        tonic::Status::permission_denied(format!("role `{role}` may not call {}", req.uri().path()))
                    }
                };
                futures::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The caller recorded by [`AuthLayer`] (None only for open RPCs or when no layer ran).
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authn() -> Authenticator {
        Authenticator::new(&AuthConfig {
            tokens: vec![
                TokenEntry {
                    name: "det".into(),
                    role: Role::Detector,
                    sha256: hash_token("d-token"),
                },
                TokenEntry {
                    name: "ana".into(),
                    role: Role::Analyst,
                    sha256: hash_token("a-token"),
                },
            ],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn health_is_open_and_everything_else_needs_a_token() {
        let a = authn();
        assert_eq!(a.check("/grpc.health.v1.Health/Check", None), Ok(None));
        assert!(matches!(
            a.check("/attackmesh.v1.IngestService/Ingest", None),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer wrong")),
            Err(Denied::Unauthenticated("unknown token"))
        ));
        assert!(matches!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some("Basic abc")),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn roles_are_enforced_per_rpc() {
        let a = authn();
        let ok = a
            .check("/attackmesh.v1.IngestService/Ingest", Some("Bearer d-token"))
            .unwrap()
            .unwrap();
        assert_eq!(ok.role, Role::Detector);
        assert!(matches!(
            a.check("/attackmesh.v1.IngestService/Enrich", Some("Bearer d-token")),
            Err(Denied::PermissionDenied { .. })
        ));
        assert!(
            a.check("/attackmesh.v1.IngestService/Enrich", Some("Bearer a-token"))
                .is_ok()
        );
        assert!(matches!(
            a.check("/attackmesh.v1.NoSuch/Thing", Some("Bearer a-token")),
            Err(Denied::PermissionDenied { .. })
        ));
    }

    #[test]
    fn token_files_rotate_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.yaml");
        let write = |tok: &str| {
            std::fs::write(
                &file,
                format!("- name: det\n  role: detector\n  sha256: {}\n", hash_token(tok)),
            )
            .unwrap()
        };
        write("old");
        let a = Authenticator::new(&AuthConfig {
            token_files: vec![file.clone()],
            ..Default::default()
        })
        .unwrap();
        assert!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer old"))
                .is_ok()
        );
        write("new");
        a.reload().unwrap();
        assert!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer old"))
                .is_err()
        );
        assert!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer new"))
                .is_ok()
        );
        std::fs::write(&file, "not: [a list").unwrap();
        assert!(a.reload().is_err());
        assert!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer new"))
                .is_ok(),
            "old tokens stay"
        );
    }

    #[test]
    fn debug_never_shows_digests() {
        let e = TokenEntry {
            name: "x".into(),
            role: Role::Admin,
            sha256: hash_token("secret"),
        };
        assert!(!format!("{e:?}").contains(&hash_token("secret")));
    }

    #[test]
    fn config_without_any_way_in_is_rejected() {
        assert!(AuthConfig::default().validate().is_err());
        assert!(
            AuthConfig {
                anonymous_role: Some(Role::Admin),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }
}
