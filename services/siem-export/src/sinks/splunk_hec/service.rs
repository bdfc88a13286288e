//! The Splunk HEC sink: posts batches to `/services/collector/event` and reads Splunk's answer
//! codes (see HEC_FORMAT):
//!
//! - 200 code 0: delivered — after `/services/collector/ack` confirms the `ackId` when indexer
//!   acknowledgement is on;
//! - 400 code 6 with `invalid-event-number` i: events before i were indexed, event i is
//!   dead-lettered with Splunk's reason, the rest is sent again at once;
//! - 400 code 14 (ack disabled for the token): acknowledgement is switched off for this sink and
//!   the batch counts as delivered (or is sent again without a channel if refused outright);
//! - 503 (codes 9, 18–20), other 5xx, 429 and transport errors: retried with backoff;
//! - 401/403 (codes 1–4) and other 4xx: dead-lettered with the code and text as reason.

use std::{
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use attackmesh::text::clip;
use attackmesh_attack::Kb;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{
    SplunkHecConfig,
    encode::{self, Envelopes},
};
use crate::{
    error::Error,
    sinks::{ItemOutcome, QueuedEvent, Sink, util::http as h},
};

/// Header naming the request channel.
pub(crate) const CHANNEL_HEADER: &str = "x-splunk-request-channel";

/// The Splunk HEC sink.
pub struct SplunkHecSink {
    config: SplunkHecConfig,
    client: reqwest::Client,
    base: String,
    auth: h::Authorization,
    channel: String,
    ack: AtomicBool,
    /// Writes compact events' details from here.
    kb: Option<Arc<Kb>>,
}

/// Splunk's JSON answer.
#[derive(Debug, Default)]
struct Answer {
    status: u16,
    code: Option<i64>,
    text: String,
    invalid_event: Option<usize>,
    ack_id: Option<u64>,
}

impl Answer {
    fn reason(&self) -> String {
        match self.code {
            Some(code) => format!(
                "splunk answered HTTP {} code {code}: {}",
                self.status,
                clip(&self.text, 300)
            ),
            None => format!("splunk answered HTTP {}: {}", self.status, clip(&self.text, 300)),
        }
    }
}

impl SplunkHecSink {
    /// Builds the sink from validated settings.
    pub fn new(config: &SplunkHecConfig) -> Result<Self, Error> {
        let url = config.url.as_deref().unwrap_or_default();
        h::check_url("splunk_hec.url", url)?;
        let client = h::client(super::KIND, config.ca_file.as_deref(), config.request_timeout)?;
        let token = h::credential("HEC token", config.token.as_ref(), config.token_file.as_deref())?
            .ok_or_else(|| Error::Config("splunk_hec.token or token_file is required".into()))?;
        let auth = h::Authorization::new("splunk_hec.token", token, |token| format!("Splunk {token}"))?;
        Ok(Self {
            config: config.clone(),
            client,
            base: url.trim_end_matches('/').to_owned(),
            auth,
            channel: uuid::Uuid::new_v4().to_string(),
            ack: AtomicBool::new(config.ack),
            kb: None,
        })
    }

    /// Writes compact events by reference to `kb`: their details are looked up as the envelopes
    /// are written, and the driver leaves them compact.
    pub fn with_kb(mut self, kb: Arc<Kb>) -> Self {
        self.kb = Some(kb);
        self
    }

    async fn post(&self, path: &str, body: bytes::Bytes, channel: bool) -> Result<Answer, String> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(http::header::AUTHORIZATION, self.auth.value())
            .header(http::header::CONTENT_TYPE, "application/json");
        if channel {
            req = req.header(CHANNEL_HEADER, self.channel.as_str());
        }
        let resp = req.body(body).send().await.map_err(|e| h::describe(&e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(Answer {
            status,
            code: parsed.get("code").and_then(Value::as_i64),
            text: parsed
                .get("text")
                .and_then(Value::as_str)
                .map_or_else(|| clip(&text, 300).to_owned(), str::to_owned),
            invalid_event: parsed
                .get("invalid-event-number")
                .and_then(Value::as_u64)
                .map(|n| n as usize),
            ack_id: parsed.get("ackId").and_then(Value::as_u64),
        })
    }

    /// Sends the envelopes of events `range` of `batch` as one request; one outcome per event.
    fn send_chunk<'a>(&'a self, batch: &'a Envelopes, range: Range<usize>) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let n = range.len();
            let use_ack = self.ack.load(Ordering::Relaxed);
            let body = batch.body(range.clone());
            let answer = match self.post("/services/collector/event", body, use_ack).await {
                Ok(a) => a,
                Err(e) => return vec![ItemOutcome::Retry(e); n],
            };
            match (answer.status, answer.code) {
                (200..=299, _) => match (use_ack, answer.ack_id) {
                    (true, Some(id)) => vec![self.wait_for_ack(id).await; n],
                    _ => vec![ItemOutcome::Delivered; n],
                },
                (400, Some(14)) => {
                    self.disable_ack();
                    self.send_chunk(batch, range).await
                }
                (400, Some(6)) if answer.invalid_event.is_some_and(|i| i < n) => {
                    let bad = answer.invalid_event.unwrap_or(0);
                    tracing::warn!(
                        sink = super::KIND,
                        index = bad,
                        events = n,
                        "splunk refused one event of a batch; splitting"
                    );
                    let mut out = vec![ItemOutcome::Delivered; bad];
                    out.push(ItemOutcome::Dead(answer.reason()));
                    if bad + 1 < n {
                        out.extend(self.send_chunk(batch, range.start + bad + 1..range.end).await);
                    }
                    out
                }
                (status, _) if h::retryable_status(status) => vec![ItemOutcome::Retry(answer.reason()); n],
                _ => vec![ItemOutcome::Dead(answer.reason()); n],
            }
        })
    }

    fn disable_ack(&self) {
        if self.ack.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                sink = super::KIND,
                "indexer acknowledgement is disabled for this token; delivering without it"
            );
        }
    }

    /// Polls `/services/collector/ack` until `id` is confirmed or `ack_timeout` passes.
    async fn wait_for_ack(&self, id: u64) -> ItemOutcome {
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout;
        let mut last = String::from("no acknowledgement yet");
        loop {
            tokio::time::sleep(self.config.ack_poll_interval.min(Duration::from_secs(5))).await;
            match self.poll_ack(id).await {
                Ok(Some(true)) => return ItemOutcome::Delivered,
                Ok(Some(false)) => {}
                Ok(None) => {
                    self.disable_ack();
                    return ItemOutcome::Delivered;
                }
                Err(e) => last = e,
            }
            if tokio::time::Instant::now() >= deadline {
                return ItemOutcome::Retry(format!("indexer acknowledgement {id} not confirmed in time: {last}"));
            }
        }
    }

    /// Asks once whether `id` is indexed; `None` when the token has acknowledgement disabled.
    async fn poll_ack(&self, id: u64) -> Result<Option<bool>, String> {
        let resp = self
            .client
            .post(format!("{}/services/collector/ack", self.base))
            .header(http::header::AUTHORIZATION, self.auth.value())
            .header(CHANNEL_HEADER, self.channel.as_str())
            .json(&json!({"acks": [id]}))
            .send()
            .await
            .map_err(|e| h::describe(&e))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(Some(
                v.get("acks")
                    .and_then(|a| a.get(id.to_string()))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ));
        }
        let code = v.get("code").and_then(Value::as_i64);
        if code == Some(14) {
            return Ok(None);
        }
        let text = v.get("text").and_then(Value::as_str).unwrap_or_default();
        Err(format!(
            "ack poll answered HTTP {status} code {}: {}",
            code.unwrap_or(-1),
            clip(text, 200)
        ))
    }
}

impl Sink for SplunkHecSink {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let batch = encode::envelopes(events, &self.config, self.kb.as_deref());
            let n = batch.ends.len();
            let mut out = Vec::with_capacity(n);
            let mut start = 0;
            while start < n {
                // Take events while the body stays under the cap (at least one per request).
                let mut end = start + 1;
                while end < n && batch.span(start..end + 1).len() <= self.config.max_request_bytes {
                    end += 1;
                }
                let chunk = self.send_chunk(&batch, start..end).await;
                let failed = chunk.iter().any(|o| matches!(o, ItemOutcome::Retry(_)));
                out.extend(chunk);
                start = end;
                if failed {
                    // The collector is struggling: do not hammer it with the rest of the batch now.
                    let why = "not sent: an earlier request of the batch failed".to_owned();
                    out.extend((start..n).map(|_| ItemOutcome::Retry(why.clone())));
                    break;
                }
            }
            out
        })
    }

    fn writes_compact(&self) -> bool {
        self.kb.is_some()
    }
}
