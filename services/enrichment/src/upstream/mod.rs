//! Client side of the calls to attribution and siem-export: the runtime's peer link (endpoint
//! discovery with client-side balancing over `dns:///` names, client TLS with this process's
//! identity, the bearer token; see [`attackmesh_runtime::peer`]) under long-lived pipelined
//! streams ([`link`]). This module never retries calls itself; [`link`] does.

pub(crate) mod link;
mod streams;
pub(crate) mod wire;

use std::time::Duration;

use attackmesh_runtime::peer::Peer;
use tonic::{metadata::MetadataMap, transport::Channel};

use crate::{config::UpstreamConfig, error::Error};

/// A balanced channel to one service and the credentials to present to it.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// Service name for logs and metrics (`attribution`, `export`).
    pub(crate) name: &'static str,
    peer: Peer,
}

impl Upstream {
    /// Connects the link: resolves the endpoints and loads the token once, then keeps both
    /// fresh every `refresh` while the link is in use.
    pub(crate) async fn start(name: &'static str, config: &UpstreamConfig, refresh: Duration) -> Result<Self, Error> {
        let peer = config.peer.connect(name, refresh).await.map_err(|e| match e {
            attackmesh_runtime::Error::ConfigInvalid(why) => Error::Config(format!("{name}.{why}")),
            other => other.into(),
        })?;
        Ok(Self { name, peer })
    }

    /// The balanced channel.
    pub(crate) fn channel(&self) -> Channel {
        self.peer.channel()
    }

    /// Adds `authorization: Bearer …` when a token is configured.
    pub(crate) fn authorize(&self, metadata: &mut MetadataMap) {
        self.peer.authorize(metadata);
    }
}
