//! Push to remote TAXII 2.1 collections (OpenCTI, MISP, a partner's server): every new object
//! version of a local collection is POSTed in order, the returned status is polled at
//! `…/status/{id}/` until complete, and only then does the persisted cursor move. Delivery is
//! at least once: a crash or an unanswered status resends the batch, which TAXII servers take
//! idempotently (same id and version).
//!
//! With PostgreSQL, replicas share the cursor and exactly one of them pushes each target: the
//! holder of its lease (a session-level advisory lock), so no object is sent by two replicas at
//! once; when the holder dies its session ends and another replica takes over from the cursor.
//!
//! Credentials are read from files before each attempt (so rotation needs no restart) and never
//! logged; errors name the target, never its URL's credentials or a header.

use std::{path::Path, time::Duration};

use attackmesh_runtime::{backoff::Backoff, secret::Secret};
use reqwest::{StatusCode, header};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    config::PushTarget,
    error::Error,
    store::{Query, Store, VersionMatch},
    taxii::TAXII_MEDIA_TYPE,
};

/// Pause between polls of a pending TAXII status.
const STATUS_POLL: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Pushes one local collection to one remote collection.
pub struct Pusher {
    target: PushTarget,
    collection: String,
    store: Store,
    client: reqwest::Client,
    objects_url: reqwest::Url,
    status_base: reqwest::Url,
    batch: usize,
}

/// Why one push attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth retrying after a backoff (network, 5xx, 429, status not final yet).
    Retry(String),
    /// The remote refused the request's size: send fewer objects at once.
    TooLarge,
}

impl Pusher {
    /// A pusher of `collection` to `target`.
    pub fn new(target: PushTarget, collection: String, store: Store) -> Result<Self, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut url = reqwest::Url::parse(&target.url)
            .map_err(|e| Error::Config(format!("push `{}`: url is not a URL ({e})", target.name)))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config(format!(
                "push `{}`: put credentials in files, not in the url",
                target.name
            )));
        }
        let objects_url = url
            .join("objects/")
            .map_err(|e| Error::Config(format!("push `{}`: {e}", target.name)))?;
        // The API root is the collection URL without `collections/<id>/`.
        let status_base = url
            .join("../../status/")
            .map_err(|e| Error::Config(format!("push `{}`: {e}", target.name)))?;
        let mut builder = reqwest::Client::builder()
            .timeout(target.timeout)
            .connect_timeout(target.timeout.min(Duration::from_secs(10)));
        if let Some(ca) = &target.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::Config(format!("push `{}`: ca_file: {}", target.name, e.kind())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| Error::Config(format!("push `{}`: ca_file is not a PEM bundle", target.name)))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("push `{}`: http client: {e}", target.name)))?;
        let batch = target.batch;
        Ok(Self {
            target,
            collection,
            store,
            client,
            objects_url,
            status_base,
            batch,
        })
    }

    fn cursor_name(&self) -> String {
        format!("push:{}:{}", self.target.name, self.collection)
    }

    /// Pushes until `stop` is cancelled, while this replica holds the push's lease (see
    /// [`Store::lease`]: with PostgreSQL exactly one replica pushes to a remote collection, and
    /// another takes over when it dies); after a failure, waits the runtime's backoff from
    /// `interval` up to `max_backoff`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut retries = Backoff::new(self.target.interval, self.target.max_backoff).retries();
        let mut lease = self.store.lease(&self.cursor_name());
        let mut leading = false;
        tracing::info!(push = %self.target.name, collection = %self.collection, "taxii push started");
        loop {
            let wait = match lease.hold().await {
                Ok(true) => {
                    if !leading {
                        tracing::info!(push = %self.target.name, "this replica holds the push lease; pushing");
                        leading = true;
                    }
                    self.push_step(&mut retries).await
                }
                Ok(false) => {
                    if leading {
                        tracing::warn!(push = %self.target.name, "push lease lost; another replica pushes");
                        leading = false;
                    }
                    self.target.interval
                }
                Err(e) => {
                    leading = false;
                    let wait = retries.next_delay();
                    tracing::warn!(push = %self.target.name, error = %e, retry_in = ?wait, "cannot take the push lease");
                    wait
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(push = %self.target.name, "taxii push stopped");
    }

    /// One push attempt under the lease; returns how long to wait before the next.
    async fn push_step(&mut self, retries: &mut attackmesh_runtime::backoff::Retries) -> Duration {
        match self.push_once().await {
            Ok(0) => {
                retries.reset();
                self.target.interval
            }
            Ok(_) => {
                retries.reset();
                Duration::ZERO
            }
            Err(why) => {
                crate::metrics::push_retry(&self.target.name);
                let wait = retries.next_delay();
                tracing::warn!(push = %self.target.name, reason = %why, retry_in = ?wait, "taxii push failed; will retry");
                wait
            }
        }
    }

    /// Sends the next batch; returns how many records were delivered (0: nothing new).
    pub async fn push_once(&mut self) -> Result<usize, Error> {
        let name = self.cursor_name();
        let cursor = self.store.cursor(&name).await?;
        let query = Query {
            after_seq: cursor,
            versions: vec![VersionMatch::All],
            limit: self.batch,
            ..Default::default()
        };
        let page = self.store.query(&self.collection, &query).await?;
        let Some(last) = page.records.last() else { return Ok(0) };
        let envelope = format!(
            "{{\"objects\":[{}]}}",
            page.records
                .iter()
                .map(|r| r.body.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        match self.deliver(envelope).await {
            Ok((ok, refused)) => {
                self.store.set_cursor(&name, last.seq).await?;
                crate::metrics::pushed(&self.target.name, ok, refused);
                tracing::debug!(push = %self.target.name, delivered = ok, refused, "taxii push batch delivered");
                if self.batch < self.target.batch {
                    self.batch = (self.batch * 2).min(self.target.batch);
                }
                Ok(page.records.len())
            }
            Err(Failure::TooLarge) if self.batch > 1 => {
                self.batch = (self.batch / 2).max(1);
                Err(Error::Unavailable(format!(
                    "remote refused the batch size; retrying with {} objects",
                    self.batch
                )))
            }
            Err(Failure::TooLarge) => Err(Error::Unavailable("remote refused even one object as too large".into())),
            Err(Failure::Retry(why)) => Err(Error::Unavailable(why)),
        }
    }

    async fn deliver(&self, envelope: String) -> Result<(usize, usize), Failure> {
        let resp = self
            .request(
                self.client
                    .post(self.objects_url.clone())
                    .header(header::CONTENT_TYPE, TAXII_MEDIA_TYPE)
                    .body(envelope),
            )
            .await?;
        let code = resp.status();
        if code == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(Failure::TooLarge);
        }
        if !code.is_success() {
            return Err(Failure::Retry(format!("remote answered HTTP {code}")));
        }
        let mut status: Value = resp
            .json()
            .await
            .map_err(|e| Failure::Retry(format!("status is not JSON: {e}")))?;
        let deadline = tokio::time::Instant::now() + self.target.timeout;
        let mut polls = STATUS_POLL.retries();
        while status.get("status").and_then(Value::as_str) != Some("complete") {
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::Retry("status did not complete in time; resending".into()));
            }
            tokio::time::sleep(polls.next_delay()).await;
            let id = status.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
            let url = self
                .status_base
                .join(&format!("{id}/"))
                .map_err(|e| Failure::Retry(format!("status id is not usable in a URL: {e}")))?;
            let resp = self.request(self.client.get(url)).await?;
            if !resp.status().is_success() {
                return Err(Failure::Retry(format!("status poll answered HTTP {}", resp.status())));
            }
            status = resp
                .json()
                .await
                .map_err(|e| Failure::Retry(format!("status is not JSON: {e}")))?;
        }
        let count = |k: &str| status.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        if let Some(Value::Array(failures)) = status.get("failures") {
            for f in failures.iter().take(10) {
                let id = f.get("id").and_then(|v| v.as_str()).unwrap_or("");
                let message = f.get("message").and_then(|v| v.as_str()).unwrap_or("");
                tracing::info!(push = %self.target.name, id, message, "remote collection did not take an object");
            }
        }
        Ok((count("success_count"), count("failure_count")))
    }

    async fn request(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let mut builder = builder.header(header::ACCEPT, TAXII_MEDIA_TYPE);
        if let Some(file) = &self.target.token_file {
            builder = builder.bearer_auth(secret(file)?.expose());
        } else if let (Some(user), Some(file)) = (&self.target.username, &self.target.password_file) {
            builder = builder.basic_auth(user, Some(secret(file)?.expose()));
        }
        builder.send().await.map_err(|e| Failure::Retry(describe(e)))
    }
}

/// Reads a secret file (trimmed) again for each request, so it rotates without a restart; the
/// error names the file, never the content.
fn secret(path: &Path) -> Result<Secret, Failure> {
    attackmesh_runtime::secret::read_file("push credential", path).map_err(|e| Failure::Retry(e.to_string()))
}

/// A transport error without the URL (which may name internal hosts) or any header.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "request timed out".into()
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        format!("request failed: {}", err.without_url())
    }
}
