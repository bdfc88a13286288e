//! Client side of the calls to attribution and siem-export: endpoint discovery with client-side
//! balancing and long-lived pipelined streams ([`link`]). Endpoint parsing, client TLS and the
//! bearer token come from the runtime's [`attackmesh_runtime::client`].
//!
//! gRPC keeps one HTTP/2 connection open for a long time, so a Kubernetes Service (L4) pins all
//! of a client's streams to one pod. Endpoints written `dns:///name:port` are therefore resolved
//! here every `dns_refresh` (A and AAAA records of a headless Service), and each address becomes
//! one member of a `balance_channel`; addresses that disappear are removed. Static endpoints are
//! inserted once. This module never retries calls itself; [`link`] does.

pub(crate) mod link;
pub(crate) mod wire;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

pub use attackmesh_runtime::client::Target;
use attackmesh_runtime::{
    client::{BearerToken, uri},
    tls::TlsConfig,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{
    metadata::MetadataMap,
    transport::{Channel, Endpoint, channel::Change},
};

use crate::{config::UpstreamConfig, error::Error};

/// A balanced channel to one service and the credentials to present to it.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// Service name for logs and metrics (`attribution`, `export`).
    pub(crate) name: &'static str,
    /// Balanced over every known replica.
    pub(crate) channel: Channel,
    token: BearerToken,
}

impl Upstream {
    /// Builds the channel, resolves the endpoints once, and keeps them (and the token) fresh
    /// every `refresh` until `stop`.
    pub(crate) async fn start(
        name: &'static str,
        config: &UpstreamConfig,
        tls: &TlsConfig,
        refresh: Duration,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Config(format!("{name}.endpoints: no endpoint configured")));
        }
        let targets = config
            .endpoints
            .iter()
            .map(|e| Target::parse(e).map_err(|why| Error::Config(format!("{name}.endpoints: `{e}`: {why}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let (channel, changes) = Channel::balance_channel::<String>(64);
        let token = BearerToken::new(config.token_file.clone(), config.internal_token.clone());
        let mut resolver = Resolver {
            name,
            targets,
            tls: tls.clone(),
            config: config.clone(),
            changes,
            current: BTreeSet::new(),
            token: token.clone(),
        };
        resolver.refresh().await?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(refresh) => {}
                }
                if let Err(error) = resolver.refresh().await {
                    tracing::warn!(upstream = name, %error, "endpoint refresh failed; keeping the known endpoints");
                }
            }
        });
        Ok(Self { name, channel, token })
    }

    /// Adds `authorization: Bearer …` when a token is configured.
    pub(crate) fn authorize(&self, metadata: &mut MetadataMap) {
        self.token.authorize(metadata);
    }
}

struct Resolver {
    name: &'static str,
    targets: Vec<Target>,
    tls: TlsConfig,
    config: UpstreamConfig,
    changes: mpsc::Sender<Change<String, Endpoint>>,
    current: BTreeSet<String>,
    token: BearerToken,
}

impl Resolver {
    async fn refresh(&mut self) -> Result<(), Error> {
        self.token.reload().await?;
        let wanted = self.wanted().await?;
        for gone in self
            .current
            .iter()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect::<Vec<_>>()
        {
            tracing::info!(upstream = self.name, endpoint = %gone, "endpoint removed");
            self.current.remove(&gone);
            let _ = self.changes.send(Change::Remove(gone)).await;
        }
        for (key, endpoint) in wanted {
            if self.current.insert(key.clone()) {
                tracing::info!(upstream = self.name, endpoint = %key, "endpoint added");
                let _ = self.changes.send(Change::Insert(key, endpoint)).await;
            }
        }
        Ok(())
    }

    /// Every replica the targets name right now, by URI.
    async fn wanted(&self) -> Result<BTreeMap<String, Endpoint>, Error> {
        let mut wanted: BTreeMap<String, Endpoint> = BTreeMap::new();
        for target in &self.targets {
            match target {
                Target::Static { host, port, https } => {
                    let uri = uri(host, *port, *https || self.tls.ca_file.is_some());
                    let endpoint = self.endpoint(&uri, host, *https)?;
                    wanted.insert(uri, endpoint);
                }
                Target::Dns { host, port } => match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(addrs) => {
                        let mut found = 0usize;
                        for addr in addrs {
                            found += 1;
                            let uri = uri(&addr.ip().to_string(), addr.port(), self.tls.ca_file.is_some());
                            let endpoint = self.endpoint(&uri, host, false)?;
                            wanted.insert(uri, endpoint);
                        }
                        if found == 0 {
                            self.keep_known(&mut wanted, *port);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(upstream = self.name, %host, %error, "dns lookup failed; keeping the known addresses");
                        self.keep_known(&mut wanted, *port);
                    }
                },
            }
        }
        Ok(wanted)
    }

    /// Keeps the addresses already known for a name that did not resolve this time.
    fn keep_known(&self, wanted: &mut BTreeMap<String, Endpoint>, port: u16) {
        let suffix = format!(":{port}");
        for key in self.current.iter().filter(|k| k.ends_with(&suffix)) {
            if let Ok(endpoint) = Endpoint::from_shared(key.clone()) {
                wanted.entry(key.clone()).or_insert(endpoint);
            }
        }
    }

    fn endpoint(&self, uri: &str, host: &str, https: bool) -> Result<Endpoint, Error> {
        attackmesh_runtime::client::endpoint(uri, host, https, &self.tls, self.config.connect_timeout).map_err(|e| {
            match e {
                attackmesh_runtime::Error::ConfigInvalid(why) => {
                    Error::Config(format!("{}.endpoints: {why}", self.name))
                }
                other => other.into(),
            }
        })
    }
}

/// Exponential backoff step with ±20 % jitter, capped at `max`.
pub(crate) fn backoff(current: Duration, max: Duration) -> Duration {
    let next = (current * 2).min(max);
    jitter(next)
}

/// `d` ± 20 %, so reconnecting clients do not move in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let unit = (h.finish() % 10_000) as f64 / 10_000.0; // [0, 1)
    d.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let d = backoff(Duration::from_millis(100), Duration::from_secs(5));
        assert!(
            d >= Duration::from_millis(160) && d <= Duration::from_millis(240),
            "{d:?}"
        );
        let d = backoff(Duration::from_secs(4), Duration::from_secs(5));
        assert!(d <= Duration::from_secs(6), "{d:?}");
    }

    #[tokio::test]
    async fn dns_targets_become_one_endpoint_per_address() {
        let (_channel, changes) = Channel::balance_channel::<String>(8);
        let mut resolver = Resolver {
            name: "test",
            targets: vec![
                Target::parse("dns:///localhost:50999").unwrap(),
                Target::parse("127.0.0.2:7").unwrap(),
            ],
            tls: TlsConfig::default(),
            config: UpstreamConfig::default(),
            changes,
            current: BTreeSet::new(),
            token: BearerToken::default(),
        };
        let wanted = resolver.wanted().await.unwrap();
        assert!(wanted.contains_key("http://127.0.0.1:50999"), "{:?}", wanted.keys());
        assert!(wanted.contains_key("http://127.0.0.2:7"));
        resolver.refresh().await.unwrap();
        assert_eq!(resolver.current.len(), wanted.len());
        // A name that stops resolving keeps its last known addresses.
        resolver.targets[0] = Target::Dns {
            host: "does-not-exist.invalid".into(),
            port: 50999,
        };
        resolver.refresh().await.unwrap();
        assert!(resolver.current.contains("http://127.0.0.1:50999"));
    }
}
