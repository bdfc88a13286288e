//! TLS settings for listeners (server-only or mutual) and for service-to-service clients, with rustls.
//!
//! One set of files serves every listener of a process: gRPC through tonic, and the HTTP
//! listeners (Falco input, TAXII, metrics) through [`ListenerTls::http`], a rustls server config
//! on the ring provider with the same certificate and, when set, the same client CA. Calls to
//! other services use [`PeerTls`]: the same certificate as the client identity, unless a link
//! names its own files.

use std::{path::PathBuf, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::Error;

/// TLS files. With `cert_file` + `key_file` every listener speaks TLS; with `client_ca_file` too,
/// clients must present a certificate signed by that CA (mutual TLS).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of this service.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of this service.
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle that client certificates must chain to (enables mutual TLS on listeners).
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA bundle used to verify the services this one calls (defaults to none: plaintext);
    /// each link's `tls` section may set its own ([`PeerTls`]).
    pub ca_file: Option<PathBuf>,
    /// Server name expected in peer certificates when calling other services (defaults to the host).
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Checks that files come in consistent sets and can be read.
    pub fn validate(&self) -> Result<(), Error> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Error::ConfigInvalid(
                "tls: cert_file and key_file must be set together".into(),
            ));
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(Error::ConfigInvalid(
                "tls: client_ca_file needs cert_file and key_file".into(),
            ));
        }
        for (what, path) in [
            ("tls certificate", &self.cert_file),
            ("tls key", &self.key_file),
            ("client CA", &self.client_ca_file),
            ("CA", &self.ca_file),
        ] {
            if let Some(path) = path {
                read(what, path)?;
            }
        }
        Ok(())
    }

    /// Listener TLS, when configured.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, Error> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
            read("tls certificate", cert)?,
            read("tls key", key)?,
        ));
        if let Some(ca) = &self.client_ca_file {
            tls = tls.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        Ok(Some(tls))
    }

    /// TLS for every listener of this process, gRPC and HTTP alike, when configured.
    pub fn listener(&self) -> Result<Option<ListenerTls>, Error> {
        let Some(grpc) = self.server()? else { return Ok(None) };
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let http = http_server_config(cert, key, self.client_ca_file.as_ref())?;
        Ok(Some(ListenerTls {
            grpc,
            http: Arc::new(http),
        }))
    }
}

/// Client TLS of one link to another attackmesh service (`<link>.tls`). Every unset field falls
/// back to the process's `tls` section ([`PeerTls::inherit`]), so a mesh with one CA and one
/// certificate per process configures nothing here; set a field to reach a peer with another
/// CA, server name or client certificate. With a CA the link speaks TLS, and with a certificate
/// and key the process presents its own identity, as peers requiring mutual TLS want.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerTls {
    /// PEM CA bundle the peer's certificate must chain to (TLS on; unset: plaintext).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the peer (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Server name expected in the peer's certificate (defaults to the endpoint's host).
    pub server_name: Option<String>,
}

impl PeerTls {
    /// Fills every unset field from the process's `tls` section; the certificate and key come
    /// as a pair, so a link with its own certificate never mixes it with the process's key.
    pub fn inherit(&mut self, process: &TlsConfig) {
        self.ca_file = self.ca_file.take().or_else(|| process.ca_file.clone());
        if self.cert_file.is_none() && self.key_file.is_none() {
            self.cert_file = process.cert_file.clone();
            self.key_file = process.key_file.clone();
        }
        self.server_name = self.server_name.take().or_else(|| process.server_name.clone());
    }

    /// Checks that the certificate and key come together and that every file can be read.
    pub fn validate(&self) -> Result<(), Error> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Error::ConfigInvalid(
                "tls: cert_file and key_file must be set together".into(),
            ));
        }
        for (what, path) in [
            ("tls certificate", &self.cert_file),
            ("tls key", &self.key_file),
            ("CA", &self.ca_file),
        ] {
            if let Some(path) = path {
                read(what, path)?;
            }
        }
        Ok(())
    }

    /// Whether the link speaks TLS (a CA is set).
    pub fn enabled(&self) -> bool {
        self.ca_file.is_some()
    }

    /// Client TLS for a peer reached as `host`, when a CA is set: verifies the peer against the
    /// CA and presents the certificate and key, when set, as this process's identity.
    pub fn client(&self, host: &str) -> Result<Option<ClientTlsConfig>, Error> {
        let Some(ca) = &self.ca_file else { return Ok(None) };
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("CA", ca)?))
            .domain_name(self.server_name.clone().unwrap_or_else(|| host.to_owned()));
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(
                read("tls certificate", cert)?,
                read("tls key", key)?,
            ));
        }
        Ok(Some(tls))
    }
}

impl From<&TlsConfig> for PeerTls {
    /// The client side of the process's `tls` section.
    fn from(process: &TlsConfig) -> Self {
        let mut tls = PeerTls::default();
        tls.inherit(process);
        tls
    }
}

/// Listener TLS in the two forms the servers need.
#[derive(Clone)]
pub struct ListenerTls {
    /// For tonic's gRPC listeners.
    pub grpc: ServerTlsConfig,
    /// For the HTTP listeners (ALPN `h2` and `http/1.1`).
    pub http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls").finish_non_exhaustive()
    }
}

fn http_server_config(
    cert: &PathBuf,
    key: &PathBuf,
    client_ca: Option<&PathBuf>,
) -> Result<rustls::ServerConfig, Error> {
    let invalid = |what: &'static str, path: &PathBuf, reason: String| Error::Secret {
        what,
        path: path.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read("tls certificate", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("tls certificate", cert, format!("not PEM certificates ({e})")))?;
    if chain.is_empty() {
        return Err(invalid("tls certificate", cert, "no certificate in the file".into()));
    }
    // The key's own parse error is not shown: it could quote key material.
    let private = PrivateKeyDer::from_pem_slice(&read("tls key", key)?)
        .map_err(|_| invalid("tls key", key, "no PEM private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::ConfigInvalid(format!("tls: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(&read("client CA", ca)?) {
                let der = der.map_err(|e| invalid("client CA", ca, format!("not PEM certificates ({e})")))?;
                roots
                    .add(der)
                    .map_err(|e| invalid("client CA", ca, format!("unusable CA certificate ({e})")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("client CA", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| invalid("tls key", key, format!("does not match the certificate ({e})")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Secret {
        what,
        path: path.clone(),
        reason: e.kind().to_string(),
    })
}
