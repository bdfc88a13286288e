//! The HTTP client the HTTP sinks share: rustls (ring) with an optional custom CA, timeouts,
//! error texts that never carry a URL's credentials or a request's headers, and the
//! `Authorization` value of a credential that may rotate ([`Authorization`]).

use std::{path::Path, sync::Mutex, time::Duration};

use attackmesh_runtime::secret::{Secret, SecretSource};
use http::HeaderValue;

use crate::error::Error;

/// The `Authorization` value of an HTTP sink, rendered from a credential that may come from a
/// `*_file` setting and rotate ([`SecretSource`]): every request takes the value of the moment.
/// A rotated credential that cannot go into a header keeps the value before (logged once).
pub(crate) struct Authorization {
    setting: &'static str,
    source: SecretSource,
    render: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// The credential last seen and the header value in use.
    last: Mutex<(Secret, HeaderValue)>,
}

impl Authorization {
    /// The value `render(credential)` of the credential named by `setting`; a credential that
    /// cannot go into a header is a configuration error here.
    pub(crate) fn new(
        setting: &'static str,
        source: SecretSource,
        render: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let secret = source.current();
        let value = sensitive(&render(secret.expose()))
            .ok_or_else(|| Error::Config(format!("{setting} contains characters not allowed in a header")))?;
        Ok(Self {
            setting,
            source,
            render: Box::new(render),
            last: Mutex::new((secret, value)),
        })
    }

    /// The header value for a request now.
    pub(crate) fn value(&self) -> HeaderValue {
        let secret = self.source.current();
        // The pair is replaced whole, so a panic elsewhere cannot leave it half written.
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if secret != last.0 {
            match sensitive(&(self.render)(secret.expose())) {
                Some(value) => last.1 = value,
                None => tracing::error!(
                    setting = self.setting,
                    "rotated credential contains characters not allowed in a header; the previous one stays in use"
                ),
            }
            last.0 = secret;
        }
        last.1.clone()
    }
}

/// A header value marked sensitive (never indexed by HTTP/2 header compression).
fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The credential of a `<key>` / `<key>_file` pair of settings (see
/// [`SecretSource::from_config`]); errors name the file, never the credential.
pub(crate) fn credential(
    what: &'static str,
    value: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<SecretSource>, Error> {
    SecretSource::from_config(what, value, file).map_err(|e| Error::Config(e.to_string()))
}

/// Checks a `<key>` / `<key>_file` pair: not both, and the file exists.
pub(crate) fn check_credential(key: &str, value: Option<&Secret>, file: Option<&Path>) -> Result<(), Error> {
    if value.is_some_and(|v| !v.is_empty()) && file.is_some() {
        return Err(Error::Config(format!("set {key} or {key}_file, not both")));
    }
    if let Some(path) = file
        && let Err(e) = std::fs::metadata(path)
    {
        return Err(Error::Config(format!("{key}_file {}: {}", path.display(), e.kind())));
    }
    Ok(())
}

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
