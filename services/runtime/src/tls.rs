//! TLS settings for listeners (server-only or mutual) and for service-to-service clients, with rustls.

use std::path::PathBuf;

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
    /// PEM CA bundle used to verify the services this one calls (defaults to none: plaintext).
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

    /// Client TLS for calling other attackmesh services, when a CA is configured. Presents this
    /// service's own certificate so peers requiring mutual TLS accept it.
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

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Secret {
        what,
        path: path.clone(),
        reason: e.kind().to_string(),
    })
}
