//! The intel sink: one `ShareEvents` call per batch.
//!
//! Outcomes: a per-event rejection is final (dead letter with intel's field violations); a
//! transport failure, an overloaded or failing intel, and refused credentials are retried (the
//! operator can fix a token or role without losing events); success is delivery. Error texts
//! carry intel's status message, never the token.

use std::sync::{Arc, OnceLock};

use attackmesh::{
    held::EventView,
    proto::{EventRejection, ShareEventsRequest, intel_service_client::IntelServiceClient},
    text::clip,
};
use attackmesh_runtime::peer::{DEFAULT_REFRESH, Peer};
use futures::future::BoxFuture;
use tonic::{
    Code,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::Channel,
};

use super::IntelSinkConfig;
use crate::{
    error::Error,
    sinks::{ItemOutcome, QueuedEvent, Sink},
};

/// Longest reason kept from an intel answer.
const MAX_REASON_BYTES: usize = 1024;
/// W3C trace context keys forwarded from a queued event when no tracer is installed.
const TRACE_KEYS: [&str; 2] = ["traceparent", "tracestate"];

/// The intel sink.
pub struct IntelSink {
    config: IntelSinkConfig,
    peer: OnceLock<Peer>,
}

impl IntelSink {
    /// Builds the sink, checking its endpoints against its TLS (`https://` needs a CA); nothing
    /// is contacted or read until [`Sink::start`].
    pub fn new(config: &IntelSinkConfig) -> Result<Self, Error> {
        config.peer.targets().map_err(config_error)?;
        Ok(Self {
            config: config.clone(),
            peer: OnceLock::new(),
        })
    }

    fn client(peer: &Peer) -> IntelServiceClient<Channel> {
        IntelServiceClient::new(peer.channel())
            .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
            .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
    }

    /// Sends the events at `picked` (positions in `events`) and answers one outcome per pick.
    async fn share(&self, events: &[Arc<QueuedEvent>], picked: &[usize]) -> Vec<ItemOutcome> {
        let Some(peer) = self.peer.get() else {
            return vec![ItemOutcome::Retry("the intel link is not started".into()); picked.len()];
        };
        if let Err(e) = peer.token().reload().await {
            return vec![ItemOutcome::Retry(e.to_string()); picked.len()];
        }
        let mut request = tonic::Request::new(ShareEventsRequest {
            collection_id: self.config.collection_id.clone(),
            events: picked.iter().map(|&i| events[i].event.to_event()).collect(),
        });
        peer.authorize(request.metadata_mut());
        propagate_trace(request.metadata_mut(), &events[picked[0]]);
        match Self::client(peer).share_events(request).await {
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

/// A runtime error about the link as this sink's config error, named by its key.
fn config_error(e: attackmesh_runtime::Error) -> Error {
    match e {
        attackmesh_runtime::Error::ConfigInvalid(why) => Error::Config(format!("intel.{why}")),
        other => Error::Config(format!("intel: {other}")),
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
            if self.peer.get().is_none() {
                let peer = self
                    .config
                    .peer
                    .connect("intel", DEFAULT_REFRESH)
                    .await
                    .map_err(|e| config_error(e).to_string())?;
                let _ = self.peer.set(peer);
            }
            Ok(())
        })
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let min = self.config.min_confidence;
            let picked: Vec<usize> = (0..events.len())
                .filter(|&i| events[i].event.event().confidence_score >= min)
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
