//! TLS settings for listeners (server-only or mutual) and for service-to-service clients, with rustls.
//!
//! One set of files serves every listener of a process, gRPC and HTTP (Falco input, TAXII,
//! metrics) alike: [`ListenerTls`], a rustls server config on the ring provider with the
//! certificate and, when set, the client CA. The files are watched ([`Watched`]): when they
//! change, new handshakes use the new certificate, key and client CA, connections already open
//! keep theirs, and a changed file that cannot be used leaves the previous ones in place (logged
//! and counted by [`crate::secret_file::reload_failed`]). Calls to other services use
//! [`PeerTls`]: the same certificate as the client identity, unless a link names its own files;
//! links re-read them as they refresh ([`crate::peer`]).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::{error::Error, secret_file::Watched};

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

    /// TLS for every listener of this process, gRPC and HTTP alike, when configured: the files
    /// are read now (an unusable file is an error here) and again whenever they change.
    pub fn listener(&self) -> Result<Option<ListenerTls>, Error> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let mut paths = vec![cert.clone(), key.clone()];
        paths.extend(self.client_ca_file.clone());
        let mut watched = Watched::new(paths);
        let contents = watched
            .changed()
            .map_err(|(path, e)| unreadable(&path, e))?
            .unwrap_or_default();
        let config = server_config(watched.paths(), &contents)?;
        Ok(Some(ListenerTls {
            inner: Arc::new(ListenerInner {
                current: ArcSwap::from_pointee(config),
                watched: Mutex::new(watched),
            }),
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

/// Listener TLS of a process, shared by its gRPC and HTTP listeners: the server config in use,
/// rebuilt from the files when they change (checked as connections arrive). Cheap to clone;
/// clones share the config.
#[derive(Clone)]
pub struct ListenerTls {
    inner: Arc<ListenerInner>,
}

struct ListenerInner {
    current: ArcSwap<rustls::ServerConfig>,
    watched: Mutex<Watched>,
}

impl ListenerTls {
    /// The server config for a new handshake (ALPN `h2` and `http/1.1`), after checking the
    /// files for change; a changed file that cannot be used keeps the config in use.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        // A handshake never waits for another one's reload: it takes the config in use.
        if let Ok(mut watched) = self.inner.watched.try_lock() {
            let changed = watched.changed();
            match changed {
                Ok(None) => {}
                Ok(Some(contents)) => match server_config(watched.paths(), &contents) {
                    Ok(config) => {
                        self.inner.current.store(Arc::new(config));
                        tracing::info!(cert = %watched.paths()[0].display(), "tls files changed; new handshakes use them");
                    }
                    Err(error) => crate::secret_file::reload_failed("listener tls", &error),
                },
                Err((path, e)) => crate::secret_file::reload_failed("listener tls", &unreadable(&path, e)),
            }
        }
        self.inner.current.load_full()
    }

    /// An acceptor for one new connection (see [`ListenerTls::config`]).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls").finish_non_exhaustive()
    }
}

/// Checks that client TLS files hold a usable CA bundle and, when given, a certificate chain
/// with its matching key (`paths` and `contents` in the order CA, certificate, key), so a link
/// never switches to files a handshake would fail with.
pub fn check_client_files(paths: &[PathBuf], contents: &[Vec<u8>]) -> Result<(), Error> {
    if let (Some(ca), Some(bytes)) = (paths.first(), contents.first()) {
        roots(ca, bytes)?;
    }
    if let (Some(cert), Some(key)) = (paths.get(1).zip(contents.get(1)), paths.get(2).zip(contents.get(2))) {
        let (chain, private) = identity(cert, key)?;
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, private, &provider)
            .map_err(|e| invalid("tls key", key.0, format!("does not match the certificate ({e})")))?;
    }
    Ok(())
}

fn invalid(what: &'static str, path: &Path, reason: String) -> Error {
    Error::Secret {
        what,
        path: path.to_owned(),
        reason,
    }
}

fn unreadable(path: &Path, e: std::io::Error) -> Error {
    invalid("tls file", path, e.kind().to_string())
}

/// The certificate chain and private key in `cert` and `key` (path, contents).
fn identity(
    cert: (&PathBuf, &Vec<u8>),
    key: (&PathBuf, &Vec<u8>),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let chain = CertificateDer::pem_slice_iter(cert.1)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("tls certificate", cert.0, format!("not PEM certificates ({e})")))?;
    if chain.is_empty() {
        return Err(invalid("tls certificate", cert.0, "no certificate in the file".into()));
    }
    // The key's own parse error is not shown: it could quote key material.
    let private = PrivateKeyDer::from_pem_slice(key.1)
        .map_err(|_| invalid("tls key", key.0, "no PEM private key in the file".into()))?;
    Ok((chain, private))
}

/// The CA certificates in `bytes`, read from `path`.
fn roots(path: &Path, bytes: &[u8]) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bytes) {
        let der = der.map_err(|e| invalid("CA", path, format!("not PEM certificates ({e})")))?;
        roots
            .add(der)
            .map_err(|e| invalid("CA", path, format!("unusable CA certificate ({e})")))?;
    }
    if roots.is_empty() {
        return Err(invalid("CA", path, "no certificate in the file".into()));
    }
    Ok(roots)
}

/// The listener config from the certificate, key and optional client CA (`paths` and
/// `contents` in that order).
fn server_config(paths: &[PathBuf], contents: &[Vec<u8>]) -> Result<rustls::ServerConfig, Error> {
    let (Some(cert), Some(key)) = (paths.first().zip(contents.first()), paths.get(1).zip(contents.get(1))) else {
        return Err(Error::ConfigInvalid(
            "tls: cert_file and key_file must be set together".into(),
        ));
    };
    let (chain, private) = identity(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::ConfigInvalid(format!("tls: {e}")))?;
    let builder = match paths.get(2).zip(contents.get(2)) {
        None => builder.with_no_client_auth(),
        Some((ca, bytes)) => {
            let roots = roots(ca, bytes).map_err(|e| match e {
                Error::Secret { path, reason, .. } => Error::Secret {
                    what: "client CA",
                    path,
                    reason,
                },
                other => other,
            })?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("client CA", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| invalid("tls key", key.0, format!("does not match the certificate ({e})")))?;
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
