//! [`PeerConfig`]: the one description of a link from one attackmesh service to another —
//! `enrichment.attribution`, `enrichment.export`, `siem_export.intel`, `intel.attribution` — and
//! [`PeerConfig::connect`], which turns it into a [`Peer`]: a tonic channel balanced over the
//! peer's replicas, with the link's client TLS, and the bearer token to present.
//!
//! gRPC keeps one HTTP/2 connection open for a long time, so a Kubernetes Service (L4) pins all
//! of a client's calls to one pod. Endpoints written `dns:///name:port` are therefore resolved
//! here, again every `refresh` (A and AAAA records of a headless Service), and each address
//! becomes one member of a balanced channel; addresses that disappear are removed, and a name
//! that stops resolving keeps its last known addresses. Static endpoints are inserted once. The
//! token file is re-read at the same pace, so tokens rotate without a restart. The refresh task
//! ends when the last clone of the channel is dropped. The link's TLS files (CA, certificate,
//! key) are checked at the same pace: when they changed and are usable, every replica is
//! connected again with them (calls in flight finish on the connections they started on); when
//! they are not, the link keeps the files it has and the failure is logged and counted.
//!
//! Nothing here retries a call: each link decides what a failure means, and pauses with
//! [`crate::backoff`] between tries.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tonic::{
    metadata::MetadataMap,
    transport::{Channel, Endpoint, channel::Change},
};

use crate::{
    backoff::Backoff,
    client::{BearerToken, Target, endpoint, uri},
    error::Error,
    secret::Secret,
    secret_file::Watched,
    tls::{PeerTls, TlsConfig, check_client_files},
};

/// How often names are resolved again and token files re-read, where a link has no setting.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// How to reach another attackmesh service. Embedded in each link's section, next to the link's
/// own settings (a section holding it flattens it and refuses unknown keys itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// Replicas to balance over: `dns:///host:port` (every A/AAAA record of `host`, resolved
    /// again every refresh), `http(s)://host:port` or `host:port`. `http://` speaks TLS too when
    /// the link has a CA; `https://` needs one.
    pub endpoints: Vec<String>,
    /// File holding the bearer token presented to the peer (an `admin` token); re-read every
    /// refresh, so it rotates without a restart.
    pub token_file: Option<PathBuf>,
    /// The bearer token itself, e.g. from a Secret through `ATTACKMESH_…`; `serve all` sets a
    /// token of its own when neither this nor `token_file` is set.
    pub token: Option<Secret>,
    /// Client TLS; unset fields come from the process's `tls` section, so under mutual TLS the
    /// process presents its own certificate to the peer.
    pub tls: PeerTls,
    /// Longest wait for a connection to a replica.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for an answer; unset: the link's default.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    /// Pause between reconnects or retries of the link (exponential, full jitter); unset: the
    /// link's default.
    pub backoff: Option<Backoff>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            token_file: None,
            token: None,
            tls: PeerTls::default(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: None,
            backoff: None,
        }
    }
}

impl PeerConfig {
    /// Checks what serde cannot; the reason names the key within the section.
    pub fn validate(&self) -> Result<(), String> {
        for endpoint in &self.endpoints {
            Target::parse(endpoint).map_err(|why| format!("endpoints: `{endpoint}`: {why}"))?;
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err("set token or token_file, not both".into());
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            return Err("token is empty".into());
        }
        if let Some(path) = &self.token_file
            && let Err(e) = std::fs::metadata(path)
        {
            return Err(format!("token_file {}: {}", path.display(), e.kind()));
        }
        self.tls.validate().map_err(|e| match e {
            Error::ConfigInvalid(why) => why,
            other => format!("tls: {other}"),
        })?;
        let short = |d: Duration| d < Duration::from_millis(10);
        if short(self.connect_timeout) || self.request_timeout.is_some_and(short) {
            return Err("connect_timeout and request_timeout must be at least 10ms".into());
        }
        if let Some(backoff) = &self.backoff {
            backoff.validate().map_err(|why| format!("backoff: {why}"))?;
        }
        Ok(())
    }

    /// Whether any endpoint is configured.
    pub fn has_endpoints(&self) -> bool {
        self.endpoints.iter().any(|e| !e.trim().is_empty())
    }

    /// Whether neither a token nor a token file is configured.
    pub fn has_no_token(&self) -> bool {
        self.token.is_none() && self.token_file.is_none()
    }

    /// Fills the unset TLS fields from the process's `tls` section (see [`PeerTls::inherit`]).
    pub fn inherit_tls(&mut self, process: &TlsConfig) {
        self.tls.inherit(process);
    }

    /// `request_timeout`, or the link's `default`.
    pub fn request_timeout_or(&self, default: Duration) -> Duration {
        self.request_timeout.unwrap_or(default)
    }

    /// `backoff`, or the link's `default`.
    pub fn backoff_or(&self, default: Backoff) -> Backoff {
        self.backoff.unwrap_or(default)
    }

    /// The endpoints, parsed; an `https://` endpoint needs a CA. Errors name the key.
    pub fn targets(&self) -> Result<Vec<Target>, Error> {
        if !self.has_endpoints() {
            return Err(Error::ConfigInvalid("endpoints: no endpoint configured".into()));
        }
        self.endpoints
            .iter()
            .map(|e| {
                let target =
                    Target::parse(e).map_err(|why| Error::ConfigInvalid(format!("endpoints: `{e}`: {why}")))?;
                if matches!(target, Target::Static { https: true, .. }) && !self.tls.enabled() {
                    return Err(Error::ConfigInvalid(format!(
                        "endpoints: `{e}` asks for https but tls.ca_file is not set"
                    )));
                }
                Ok(target)
            })
            .collect()
    }

    /// Connects the link `name` (for logs): builds the balanced channel, resolves the endpoints
    /// and loads the token once (errors stop here), then keeps both fresh every `refresh` until
    /// the channel is dropped. Replicas are connected lazily, on the first call.
    pub async fn connect(&self, name: &'static str, refresh: Duration) -> Result<Peer, Error> {
        let targets = self.targets()?;
        let (channel, changes) = Channel::balance_channel::<String>(64);
        let token = BearerToken::new(self.token_file.clone(), self.token.clone());
        let mut resolver = Resolver {
            name,
            targets,
            tls: self.tls.clone(),
            connect_timeout: self.connect_timeout,
            changes,
            current: BTreeSet::new(),
            token: token.clone(),
            tls_files: self.tls.ca_file.clone().map(|ca| {
                let mut paths = vec![ca];
                if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
                    paths.extend([cert.clone(), key.clone()]);
                }
                Watched::new(paths)
            }),
        };
        resolver.refresh().await?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = resolver.changes.closed() => return,
                    () = tokio::time::sleep(refresh) => {}
                }
                if let Err(error) = resolver.refresh().await {
                    tracing::warn!(peer = name, %error, "endpoint or token refresh failed; keeping the known ones");
                }
            }
        });
        Ok(Peer { channel, token })
    }
}

/// A connected link: a channel balanced over the peer's replicas and the token to present.
/// Cheap to clone; clones share the channel and the token.
#[derive(Debug, Clone)]
pub struct Peer {
    channel: Channel,
    token: BearerToken,
}

impl Peer {
    /// The balanced channel (a clone; every clone uses the same connections).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The bearer token presented to the peer.
    pub fn token(&self) -> &BearerToken {
        &self.token
    }

    /// Adds `authorization: Bearer …` when a token is configured.
    pub fn authorize(&self, metadata: &mut MetadataMap) {
        self.token.authorize(metadata);
    }
}

/// Keeps the balanced channel's replicas and the token up to date.
struct Resolver {
    name: &'static str,
    targets: Vec<Target>,
    tls: PeerTls,
    connect_timeout: Duration,
    changes: mpsc::Sender<Change<String, Endpoint>>,
    current: BTreeSet<String>,
    token: BearerToken,
    /// The link's TLS files (CA, then certificate and key), when it speaks TLS.
    tls_files: Option<Watched>,
}

impl Resolver {
    /// Re-reads the token and applies the replicas the targets name now; a token error is
    /// reported after the replicas are refreshed.
    async fn refresh(&mut self) -> Result<(), Error> {
        let token = self.token.reload().await;
        let reconnect = self.tls_changed() && !self.current.is_empty();
        if reconnect {
            tracing::info!(
                peer = self.name,
                "tls files changed; connecting every replica again with them"
            );
        }
        let wanted = self.wanted().await?;
        for gone in self
            .current
            .iter()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect::<Vec<_>>()
        {
            tracing::info!(peer = self.name, endpoint = %gone, "endpoint removed");
            self.current.remove(&gone);
            let _ = self.changes.send(Change::Remove(gone)).await;
        }
        for (key, endpoint) in wanted {
            if self.current.insert(key.clone()) {
                tracing::info!(peer = self.name, endpoint = %key, "endpoint added");
                let _ = self.changes.send(Change::Insert(key, endpoint)).await;
            } else if reconnect {
                // Inserting a replica under a key it already has replaces it.
                let _ = self.changes.send(Change::Insert(key, endpoint)).await;
            }
        }
        token
    }

    /// Whether the link's TLS files changed since the last check and are usable.
    fn tls_changed(&mut self) -> bool {
        let Some(watched) = &mut self.tls_files else {
            return false;
        };
        let failed = match watched.changed() {
            Ok(None) => return false,
            Ok(Some(contents)) => match check_client_files(watched.paths(), &contents) {
                Ok(()) => return true,
                Err(error) => error,
            },
            Err((path, e)) => Error::Secret {
                what: "link tls file",
                path,
                reason: e.kind().to_string(),
            },
        };
        crate::secret_file::reload_failed(self.name, &failed);
        false
    }

    /// Every replica the targets name right now, by URI.
    async fn wanted(&self) -> Result<BTreeMap<String, Endpoint>, Error> {
        let tls = self.tls.enabled();
        let mut wanted: BTreeMap<String, Endpoint> = BTreeMap::new();
        for target in &self.targets {
            match target {
                Target::Static { host, port, https } => {
                    let uri = uri(host, *port, *https || tls);
                    let endpoint = endpoint(&uri, host, *https, &self.tls, self.connect_timeout)?;
                    wanted.insert(uri, endpoint);
                }
                Target::Dns { host, port } => match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(addrs) => {
                        let mut found = 0usize;
                        for addr in addrs {
                            found += 1;
                            let uri = uri(&addr.ip().to_string(), addr.port(), tls);
                            let endpoint = endpoint(&uri, host, false, &self.tls, self.connect_timeout)?;
                            wanted.insert(uri, endpoint);
                        }
                        if found == 0 {
                            self.keep_known(&mut wanted, host, *port)?;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(peer = self.name, %host, %error, "dns lookup failed; keeping the known addresses");
                        self.keep_known(&mut wanted, host, *port)?;
                    }
                },
            }
        }
        Ok(wanted)
    }

    /// Keeps the addresses already known for a name that did not resolve this time.
    fn keep_known(&self, wanted: &mut BTreeMap<String, Endpoint>, host: &str, port: u16) -> Result<(), Error> {
        let suffix = format!(":{port}");
        for key in self.current.iter().filter(|k| k.ends_with(&suffix)) {
            if !wanted.contains_key(key) {
                let endpoint = endpoint(key, host, false, &self.tls, self.connect_timeout)?;
                wanted.insert(key.clone(), endpoint);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
