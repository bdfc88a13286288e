//! The Elasticsearch sink: `_bulk` requests with per-item outcomes.
//!
//! - 2xx/409 items are delivered (409 means the same or a newer revision is already indexed);
//!   429/5xx items are retried; other item errors go to the dead-letter queue with ES's reason.
//! - HTTP 413 splits the batch in halves (a single document that is still too large is
//!   dead-lettered); 429/5xx/408 and transport errors retry the whole batch; other 4xx
//!   (authentication, bad request) dead-letter it with the answer as reason.
//! - Credentials go only into the `Authorization` header (marked sensitive); error texts never
//!   contain them.

use std::{io::Write, sync::Arc};

use attackmesh::text::clip;
use attackmesh_attack::Kb;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{config::ElasticsearchConfig, encode, template};
use crate::{
    error::Error,
    sinks::{ItemOutcome, QueuedEvent, Sink, util::http as h},
};

/// The Elasticsearch sink.
pub struct ElasticsearchSink {
    config: ElasticsearchConfig,
    client: reqwest::Client,
    base: String,
    auth: Option<h::Authorization>,
    /// Writes compact events' details from here.
    kb: Option<Arc<Kb>>,
}

impl ElasticsearchSink {
    /// Builds the sink from validated settings.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, Error> {
        let url = config.url.as_deref().unwrap_or_default();
        h::check_url("elasticsearch.url", url)?;
        let client = h::client(super::KIND, config.ca_file.as_deref(), config.request_timeout)?;
        let key = h::credential(
            "elasticsearch api key",
            config.api_key.as_ref(),
            config.api_key_file.as_deref(),
        )?;
        let password = h::credential(
            "elasticsearch password",
            config.password.as_ref(),
            config.password_file.as_deref(),
        )?;
        let auth = match (key, &config.username, password) {
            (Some(key), _, _) => Some(h::Authorization::new("elasticsearch.api_key", key, |key| {
                format!("ApiKey {key}")
            })?),
            (None, Some(user), Some(password)) => {
                let user = user.clone();
                Some(h::Authorization::new(
                    "elasticsearch.password",
                    password,
                    move |password| format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
                )?)
            }
            _ => None,
        };
        Ok(Self {
            config: config.clone(),
            client,
            base: url.trim_end_matches('/').to_owned(),
            auth,
            kb: None,
        })
    }

    /// Writes compact events by reference to `kb`: their details are looked up as the documents
    /// are written, and the driver leaves them compact.
    pub fn with_kb(mut self, kb: Arc<Kb>) -> Self {
        self.kb = Some(kb);
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{}/{path}", self.base));
        if let Some(auth) = self.auth.as_ref().map(h::Authorization::value) {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        req
    }

    async fn bulk(&self, events: &[Arc<QueuedEvent>]) -> Vec<ItemOutcome> {
        let mut body = encode::bulk_body(&self.config, events, chrono::Utc::now(), self.kb.as_deref());
        let mut req = self
            .request(reqwest::Method::POST, "_bulk")
            .header(http::header::CONTENT_TYPE, "application/x-ndjson");
        if self.config.gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
            if gz.write_all(&body).is_ok()
                && let Ok(compressed) = gz.finish()
            {
                body = compressed;
                req = req.header(http::header::CONTENT_ENCODING, "gzip");
            }
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return vec![ItemOutcome::Retry(h::describe(&e)); events.len()],
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status == 413 {
            return self.split(events).await;
        }
        if !(200..300).contains(&status) {
            let why = format!("elasticsearch answered HTTP {status}: {}", clip(&text, 300));
            let outcome = if h::retryable_status(status) {
                ItemOutcome::Retry(why)
            } else {
                ItemOutcome::Dead(why)
            };
            return vec![outcome; events.len()];
        }
        items(&text, events.len())
    }

    fn split<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            if events.len() <= 1 {
                return vec![ItemOutcome::Dead("document too large for elasticsearch (HTTP 413)".into()); events.len()];
            }
            tracing::info!(
                sink = super::KIND,
                events = events.len(),
                "bulk request too large; splitting"
            );
            let (a, b) = events.split_at(events.len() / 2);
            let mut out = self.bulk(a).await;
            out.extend(self.bulk(b).await);
            out
        })
    }
}

/// Per-item outcomes of a `_bulk` answer.
fn items(text: &str, n: usize) -> Vec<ItemOutcome> {
    let parsed: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return vec![ItemOutcome::Retry("unreadable bulk answer".into()); n],
    };
    let Some(items) = parsed.get("items").and_then(Value::as_array).filter(|i| i.len() == n) else {
        return vec![ItemOutcome::Retry("bulk answer has the wrong number of items".into()); n];
    };
    items
        .iter()
        .map(|item| {
            let inner = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or_default();
            let status = inner.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
            if (200..300).contains(&status) || status == 409 {
                return ItemOutcome::Delivered;
            }
            let err = inner.get("error");
            let kind = err
                .and_then(|e| e.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("error");
            let reason = err.and_then(|e| e.get("reason")).and_then(Value::as_str).unwrap_or("");
            let why = format!("HTTP {status} {kind}: {}", clip(reason, 400));
            if h::retryable_status(status) {
                ItemOutcome::Retry(why)
            } else {
                ItemOutcome::Dead(why)
            }
        })
        .collect()
}

/// Standard base64 with padding.
pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

impl Sink for ElasticsearchSink {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let resp = self
                .request(reqwest::Method::GET, "")
                .send()
                .await
                .map_err(|e| h::describe(&e))?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(format!("elasticsearch healthcheck answered HTTP {status}"));
            }
            let info: Value = resp.json().await.unwrap_or_default();
            let opensearch = info["version"]["distribution"] == "opensearch";
            if self.config.install_template {
                let name = self.config.target();
                let body = template::index_template(name, self.config.data_stream.is_some(), opensearch);
                let resp = self
                    .request(reqwest::Method::PUT, &format!("_index_template/{name}"))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| h::describe(&e))?;
                let status = resp.status().as_u16();
                if !(200..300).contains(&status) {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(format!("index template refused: HTTP {status}: {}", clip(&text, 300)));
                }
                tracing::info!(sink = super::KIND, template = name, "index template installed");
            }
            Ok(())
        })
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(self.bulk(events))
    }

    fn writes_compact(&self) -> bool {
        self.kb.is_some()
    }
}

#[cfg(test)]
mod credential_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn configured() -> ElasticsearchConfig {
        ElasticsearchConfig {
            url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        }
    }

    #[test]
    fn credentials_from_files_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("api-key");
        std::fs::write(&key, "a2V5LWJlZm9yZQ==\n").unwrap();
        let mut config = configured();
        config.api_key_file = Some(key.clone());
        config.validate().unwrap();
        let sink = ElasticsearchSink::new(&config).unwrap();
        let auth = sink.auth.as_ref().unwrap();
        assert_eq!(auth.value(), "ApiKey a2V5LWJlZm9yZQ==");
        assert!(auth.value().is_sensitive());
        std::fs::write(&key, "a2V5LWFmdGVy").unwrap();
        assert_eq!(
            auth.value(),
            "ApiKey a2V5LWFmdGVy",
            "a rotated key is used by the next request"
        );
        std::fs::write(&key, "not\u{7f}a header").unwrap();
        assert_eq!(
            auth.value(),
            "ApiKey a2V5LWFmdGVy",
            "an unusable key keeps the one before"
        );

        let password = dir.path().join("password");
        std::fs::write(&password, "pw-before").unwrap();
        let mut config = configured();
        config.username = Some("elastic".into());
        config.password_file = Some(password.clone());
        config.validate().unwrap();
        let sink = ElasticsearchSink::new(&config).unwrap();
        let auth = sink.auth.as_ref().unwrap();
        assert_eq!(auth.value(), format!("Basic {}", base64(b"elastic:pw-before")).as_str());
        std::fs::write(&password, "pw-after").unwrap();
        assert_eq!(auth.value(), format!("Basic {}", base64(b"elastic:pw-after")).as_str());
    }

    #[test]
    fn a_credential_and_its_file_together_or_a_missing_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut both = configured();
        both.api_key = Some("inline".into());
        both.api_key_file = Some(dir.path().join("api-key"));
        std::fs::write(dir.path().join("api-key"), "k").unwrap();
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("api_key or elasticsearch.api_key_file"), "{err}");
        let mut missing = configured();
        missing.username = Some("elastic".into());
        missing.password_file = Some(dir.path().join("absent"));
        let err = missing.validate().unwrap_err().to_string();
        assert!(err.contains("password_file") && err.contains("absent"), "{err}");
    }
}
