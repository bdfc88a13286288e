//! The intel sink: one `ShareEvents` call per batch.
//!
//! Outcomes: a per-event rejection is final (dead letter with intel's field violations); a
//! transport failure, an overloaded or failing intel, and refused credentials are retried (the
//! operator can fix a token or role without losing events); success is delivery. Error texts
//! carry intel's status message, never the token.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use attackmesh::{
    proto::{EventRejection, ShareEventsRequest, intel_service_client::IntelServiceClient},
    text::clip,
};
use attackmesh_runtime::{
    client::{self, BearerToken},
    tls::TlsConfig,
};
use futures::future::BoxFuture;
use tonic::{
    Code,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::{Channel, Endpoint},
};

use super::IntelSinkConfig;
use crate::{
    error::Error,
    sinks::{ItemOutcome, QueuedEvent, Sink},
};

/// Longest wait for a connection to intel (the driver bounds the whole request separately).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reason kept from an intel answer.
const MAX_REASON_BYTES: usize = 1024;
/// W3C trace context keys forwarded from a queued event when no tracer is installed.
const TRACE_KEYS: [&str; 2] = ["traceparent", "tracestate"];

/// The intel sink.
pub struct IntelSink {
    config: IntelSinkConfig,
    endpoint: Endpoint,
    token: BearerToken,
    channel: OnceLock<Channel>,
}

impl IntelSink {
    /// Builds the sink with client TLS from `tls` (the product's `tls` section); nothing is
    /// contacted or read until [`Sink::start`].
    pub fn new(config: &IntelSinkConfig, tls: &TlsConfig) -> Result<Self, Error> {
        let (host, port, https) = config.target()?;
        let uri = client::uri(&host, port, https || tls.ca_file.is_some());
        let endpoint = client::endpoint(&uri, &host, https, tls, CONNECT_TIMEOUT).map_err(|e| match e {
            attackmesh_runtime::Error::ConfigInvalid(why) => Error::Config(format!("intel.endpoint: {why}")),
            other => Error::Config(format!("intel: {other}")),
        })?;
        Ok(Self {
            config: config.clone(),
            endpoint,
            token: BearerToken::new(config.token_file.clone(), config.internal_token.clone()),
            channel: OnceLock::new(),
        })
    }

    fn client(&self) -> IntelServiceClient<Channel> {
        let channel = self.channel.get_or_init(|| self.endpoint.connect_lazy());
        IntelServiceClient::new(channel.clone())
            .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
            .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
    }

    /// Sends the events at `picked` (positions in `events`) and answers one outcome per pick.
    async fn share(&self, events: &[Arc<QueuedEvent>], picked: &[usize]) -> Vec<ItemOutcome> {
        if let Err(e) = self.token.reload().await {
            return vec![ItemOutcome::Retry(e.to_string()); picked.len()];
        }
        let mut request = tonic::Request::new(ShareEventsRequest {
            collection_id: self.config.collection_id.clone(),
            events: picked
                .iter()
                .map(|&i| attackmesh::proto::EnrichedEvent::clone(&events[i].event))
                .collect(),
        });
        self.token.authorize(request.metadata_mut());
        propagate_trace(request.metadata_mut(), &events[picked[0]]);
        match self.client().share_events(request).await {
            Ok(response) => {
                let mut outcomes = vec![ItemOutcome::Delivered; picked.len()];
                for rejection in response.into_inner().rejections {
                    if let Some(slot) = outcomes.get_mut(rejection.index as usize) {
                        *slot = ItemOutcome::Dead(rejected(&rejection));
                    }
                }
                outcomes
            }
            Err(status) => vec![outcome_of(&status); picked.len()],
        }
    }
}

/// Puts the current span's W3C context (the driver's `sink_request` span, a child of the Export
/// batch) into `metadata`; without a tracer, forwards the context stored with the event.
fn propagate_trace(metadata: &mut MetadataMap, event: &QueuedEvent) {
    attackmesh_runtime::telemetry::inject_metadata(metadata);
    if metadata.contains_key("traceparent") {
        return;
    }
    for key in TRACE_KEYS {
        if let Some(value) = event.trace_context.get(key)
            && let Ok(value) = AsciiMetadataValue::try_from(value.as_str())
        {
            metadata.insert(key, value);
        }
    }
}

/// The dead-letter reason of an event intel refused.
fn rejected(rejection: &EventRejection) -> String {
    let details: Vec<String> = rejection
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    let text = format!("intel rejected the event: {}", details.join("; "));
    clip(&text, MAX_REASON_BYTES).to_owned()
}

/// What a failed `ShareEvents` call means for every event it carried.
pub(crate) fn outcome_of(status: &tonic::Status) -> ItemOutcome {
    let message = clip(status.message(), MAX_REASON_BYTES);
    match status.code() {
        // The batch itself can never be taken as it is.
        Code::InvalidArgument | Code::OutOfRange => {
            ItemOutcome::Dead(format!("intel refused the batch ({:?}): {message}", status.code()))
        }
        Code::Unauthenticated | Code::PermissionDenied => ItemOutcome::Retry(format!(
            "intel refused the credentials ({:?}): {message}; check intel.token_file and its role (admin)",
            status.code()
        )),
        // Unavailable, DeadlineExceeded, ResourceExhausted, Internal, Unknown, and the ones an
        // operator fixes in intel (NotFound collection, Unimplemented on an older intel).
        code => ItemOutcome::Retry(format!("intel answered {code:?}: {message}")),
    }
}

impl Sink for IntelSink {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.token.reload().await.map_err(|e| e.to_string())?;
            self.client();
            Ok(())
        })
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let min = self.config.min_confidence;
            let picked: Vec<usize> = (0..events.len())
                .filter(|&i| events[i].event.confidence_score >= min)
                .collect();
            let mut outcomes = vec![ItemOutcome::Delivered; events.len()];
            if picked.is_empty() {
                return outcomes;
            }
            for (i, outcome) in picked.iter().zip(self.share(events, &picked).await) {
                outcomes[*i] = outcome;
            }
            outcomes
        })
    }
}
