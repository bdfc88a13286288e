//! The HTTP client the HTTP sinks share: rustls (ring) with an optional custom CA, timeouts,
//! and error texts that never carry a URL's credentials or a request's headers.

use std::{path::Path, time::Duration};

use crate::error::Error;

/// Builds a client trusting the platform roots plus `ca_file` (PEM bundle) when given.
pub(crate) fn client(sink: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, Error> {
    // Another part of the process may have installed the provider already; that is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(8)
        .tcp_nodelay(true);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::io("read CA file", path, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::sink(
                sink,
                format!("ca_file {}: not a PEM bundle: {}", path.display(), describe(&e)),
            )
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::sink(sink, format!("http client: {}", describe(&e))))
}

/// A transport error as text: the error and its causes, without the URL.
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut out = if err.is_timeout() {
        "request timed out".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Checks that `url` is an http(s) URL without credentials in it.
pub(crate) fn check_url(field: &str, url: &str) -> Result<reqwest::Url, Error> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Error::Config(format!("{field}: not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Config(format!("{field}: must be an http:// or https:// URL")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::Config(format!(
            "{field}: must not contain credentials; use the sink's credential settings"
        )));
    }
    Ok(parsed)
}

/// True for HTTP statuses worth retrying: throttling and server-side trouble.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || status >= 500
}
