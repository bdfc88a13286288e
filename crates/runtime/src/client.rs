//! The parts of a call to another attackmesh service: endpoints as written in config, tonic
//! endpoints with a link's client TLS, and the bearer token presented to the callee. Links are
//! described and connected by [`crate::peer`], which builds on these.
//!
//! Nothing here logs, and a token never appears in `Debug` or in an error.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use tonic::{
    metadata::{AsciiMetadataValue, MetadataMap},
    service::Interceptor,
    transport::Endpoint,
};

use crate::{error::Error, secret::Secret, tls::PeerTls};

/// HTTP/2 flow-control window of each stream, both ways: larger than one batch of 500 real
/// detector events (an `Ingest` batch is about 1.2 MB, the `Export` batch it becomes about
/// 2 MB). Under the 1 MiB default a sender stopped inside every such message to wait for the
/// receiver's window update, and on a busy host that wait sometimes became a 30–60 ms stall.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 flow-control window of each connection, shared by its streams.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// One endpoint as written in config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `dns:///host:port`: every A/AAAA record of `host` is a replica.
    Dns {
        /// Name to resolve (also the TLS server name).
        host: String,
        /// Port of every replica.
        port: u16,
    },
    /// `http://host:port`, `https://host:port` or `host:port`: one replica (its name is resolved
    /// by the connector at each connect).
    Static {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// `https://` was written.
        https: bool,
    },
}

impl Target {
    /// Parses an endpoint as written in config.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("dns://") {
            // `dns:///name:port` or `dns://resolver/name:port`; the resolver is the system's.
            let (_authority, name) = rest.split_once('/').ok_or("expected dns:///host:port")?;
            let (host, port) = host_port(name)?;
            return Ok(Target::Dns { host, port });
        }
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if text.contains("://") {
            return Err("scheme must be dns, http or https".into());
        } else {
            (false, text)
        };
        let (host, port) = host_port(rest.trim_end_matches('/'))?;
        Ok(Target::Static { host, port, https })
    }
}

fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text.rsplit_once(':').ok_or("a port is required (host:port)")?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err("a host is required (host:port)".into());
    }
    Ok((host.to_owned(), port))
}

/// The URI of `host:port`, `https` when `tls`.
pub fn uri(host: &str, port: u16, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// A tonic endpoint for `uri` (see [`uri`]) on `host`, with long-lived HTTP/2 settings and, when
/// `tls` has a CA, client TLS (presenting the link's certificate, when set, for mutual TLS).
/// `https` says the endpoint was written `https://`, which needs a CA. Errors name the URI, so
/// callers only add the config field in front.
pub fn endpoint(
    uri: &str,
    host: &str,
    https: bool,
    tls: &PeerTls,
    connect_timeout: Duration,
) -> Result<Endpoint, Error> {
    let mut endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(|e| Error::ConfigInvalid(format!("{uri}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW));
    match tls.client(host)? {
        Some(client) => {
            endpoint = endpoint
                .tls_config(client)
                .map_err(|e| Error::ConfigInvalid(format!("{uri}: tls: {e}")))?;
        }
        None if https => {
            return Err(Error::ConfigInvalid(format!(
                "{uri} asks for https but tls.ca_file is not set"
            )));
        }
        None => {}
    }
    Ok(endpoint)
}

/// The bearer token presented to another service: read from a file (re-read by
/// [`BearerToken::reload`], so it rotates without a restart) or given in config (`serve all`
/// makes one per run). Cheap to clone; clones share the loaded token. As an [`Interceptor`] it
/// adds `authorization: Bearer …` to every request, marked sensitive (never indexed by HTTP/2
/// header compression, shown as `Sensitive` by `Debug`).
#[derive(Debug, Clone, Default)]
pub struct BearerToken {
    source: Arc<Source>,
    header: Arc<RwLock<Option<AsciiMetadataValue>>>,
}

#[derive(Debug, Default)]
enum Source {
    #[default]
    None,
    File(PathBuf),
    Memory(Secret),
}

impl BearerToken {
    /// A token read from `file` when set, else `memory`, else none. Nothing is read until
    /// [`BearerToken::reload`].
    pub fn new(file: Option<PathBuf>, memory: Option<Secret>) -> Self {
        let source = match (file, memory) {
            (Some(path), _) => Source::File(path),
            (None, Some(token)) => Source::Memory(token),
            (None, None) => Source::None,
        };
        Self {
            source: Arc::new(source),
            header: Arc::default(),
        }
    }

    /// A token given in memory, loaded at once (no [`BearerToken::reload`] needed).
    pub fn fixed(token: &str) -> Result<Self, Error> {
        Ok(Self {
            source: Arc::new(Source::Memory(Secret::new(token))),
            header: Arc::new(RwLock::new(Some(header(token)?))),
        })
    }

    /// Whether a token is configured at all.
    pub fn is_configured(&self) -> bool {
        !matches!(*self.source, Source::None)
    }

    /// Reads the token (again); on error the token loaded before stays in use.
    pub async fn reload(&self) -> Result<(), Error> {
        let token = match &*self.source {
            Source::None => return Ok(()),
            Source::Memory(token) => token.expose().trim().to_owned(),
            Source::File(path) => crate::secret::read_file("bearer token", path)?.expose().to_owned(),
        };
        let header = header(&token)?;
        if let Ok(mut slot) = self.header.write() {
            *slot = Some(header);
        }
        Ok(())
    }

    /// Adds `authorization: Bearer …` when a token is loaded.
    pub fn authorize(&self, metadata: &mut MetadataMap) {
        if let Ok(header) = self.header.read()
            && let Some(value) = header.as_ref()
        {
            metadata.insert("authorization", value.clone());
        }
    }
}

/// The `authorization` value for `token`, marked sensitive.
fn header(token: &str) -> Result<AsciiMetadataValue, Error> {
    let mut value = AsciiMetadataValue::try_from(format!("Bearer {}", token.trim()))
        .map_err(|_| Error::ConfigInvalid("the bearer token is not printable ASCII".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.authorize(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_parse_in_every_written_form() {
        assert_eq!(
            Target::parse("dns:///attribution-headless.ns.svc:50051").unwrap(),
            Target::Dns {
                host: "attribution-headless.ns.svc".into(),
                port: 50051
            }
        );
        assert_eq!(
            Target::parse("https://export:443").unwrap(),
            Target::Static {
                host: "export".into(),
                port: 443,
                https: true
            }
        );
        assert_eq!(
            Target::parse("[::1]:7").unwrap(),
            Target::Static {
                host: "::1".into(),
                port: 7,
                https: false
            }
        );
        assert!(Target::parse("dns:///noport").is_err());
        assert!(Target::parse("grpc://x:1").is_err());
        assert!(Target::parse("http://x:99999").is_err());
        assert_eq!(uri("::1", 7, true), "https://[::1]:7");
    }

    #[test]
    fn https_without_a_ca_is_refused_by_name() {
        let err = endpoint(
            "https://intel:443",
            "intel",
            true,
            &PeerTls::default(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("https://intel:443 asks for https"), "{err}");
        endpoint(
            "http://intel:50054",
            "intel",
            false,
            &PeerTls::default(),
            Duration::from_secs(1),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn tokens_load_from_a_file_or_memory_and_never_show_in_debug_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-secret-1\n").unwrap();
        let token = BearerToken::new(Some(path.clone()), Some(Secret::new("memory-secret")));
        token.reload().await.unwrap();
        let mut metadata = MetadataMap::new();
        token.authorize(&mut metadata);
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer file-secret-1");
        // Rotated on disk, used after the next reload; a broken file keeps the loaded token.
        std::fs::write(&path, "file-secret-2").unwrap();
        token.reload().await.unwrap();
        std::fs::write(&path, "  \n").unwrap();
        let err = token.reload().await.unwrap_err();
        let mut metadata = MetadataMap::new();
        token.clone().authorize(&mut metadata);
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer file-secret-2");
        std::fs::remove_file(&path).unwrap();
        let missing = token.reload().await.unwrap_err();
        for text in [format!("{token:?}"), err.to_string(), missing.to_string()] {
            assert!(!text.contains("secret-"), "{text}");
        }

        let memory = BearerToken::new(None, Some(Secret::new("memory-secret")));
        memory.reload().await.unwrap();
        let mut metadata = MetadataMap::new();
        memory.authorize(&mut metadata);
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer memory-secret");
        assert!(!format!("{memory:?}").contains("secret"));
        let none = BearerToken::default();
        none.reload().await.unwrap();
        let mut metadata = MetadataMap::new();
        none.authorize(&mut metadata);
        assert!(metadata.get("authorization").is_none() && !none.is_configured());
    }
}
