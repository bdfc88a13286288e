//! The correlation sink: per batch, one `Observe` call to each replica that owns an entity of
//! one of the batch's events, all in parallel.

use std::sync::{Arc, OnceLock};

use attackmesh::{
    held::EventView,
    proto::{EnrichedEvent, ObserveRequest, correlation_service_client::CorrelationServiceClient},
    text::clip,
};
use attackmesh_runtime::{
    partition,
    peer::{DEFAULT_REFRESH, Peer},
};
use futures::future::{BoxFuture, join_all};
use tonic::Code;

use super::CorrelationSinkConfig;
use crate::{
    error::Error,
    sinks::{ItemOutcome, QueuedEvent, Sink},
};

/// Longest reason kept from a replica's answer.
const MAX_REASON_BYTES: usize = 1024;

/// The correlation sink.
pub struct CorrelationSink {
    config: CorrelationSinkConfig,
    peers: OnceLock<Vec<Peer>>,
}

impl CorrelationSink {
    /// Builds the sink, checking its endpoints; nothing is contacted until [`Sink::start`].
    pub fn new(config: &CorrelationSinkConfig) -> Result<Self, Error> {
        config
            .peer
            .targets()
            .map_err(|e| Error::Config(format!("correlation: {e}")))?;
        Ok(Self {
            config: config.clone(),
            peers: OnceLock::new(),
        })
    }

    /// Sends `events` to replica `index` of `count`.
    async fn observe(
        &self,
        peer: &Peer,
        index: u32,
        count: u32,
        events: Vec<EnrichedEvent>,
    ) -> Result<(), ItemOutcome> {
        peer.token()
            .reload()
            .await
            .map_err(|e| ItemOutcome::Retry(e.to_string()))?;
        let mut request = tonic::Request::new(ObserveRequest {
            events,
            replica_index: index,
            replica_count: count,
        });
        peer.authorize(request.metadata_mut());
        attackmesh_runtime::telemetry::inject_metadata(request.metadata_mut());
        let mut client = CorrelationServiceClient::new(peer.channel())
            .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
            .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES);
        match client.observe(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(outcome_of(&status, index)),
        }
    }
}

/// What a failed `Observe` means for every event it carried.
pub(crate) fn outcome_of(status: &tonic::Status, replica: u32) -> ItemOutcome {
    let message = clip(status.message(), MAX_REASON_BYTES);
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => ItemOutcome::Dead(format!(
            "correlation replica {replica} refused the batch ({:?}): {message}",
            status.code()
        )),
        code => ItemOutcome::Retry(format!("correlation replica {replica} answered {code:?}: {message}")),
    }
}

impl Sink for CorrelationSink {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.peers.get().is_none() {
                let mut peers = Vec::with_capacity(self.config.peer.endpoints.len());
                for i in 0..self.config.peer.endpoints.len() {
                    peers.push(
                        self.config
                            .replica(i)
                            .connect("correlation", DEFAULT_REFRESH)
                            .await
                            .map_err(|e| format!("correlation: {e}"))?,
                    );
                }
                let _ = self.peers.set(peers);
            }
            Ok(())
        })
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let mut outcomes = vec![ItemOutcome::Delivered; events.len()];
            let Some(peers) = self.peers.get() else {
                return vec![ItemOutcome::Retry("the correlation link is not started".into()); events.len()];
            };
            let count = u32::try_from(peers.len()).unwrap_or(u32::MAX);
            // Per replica: the positions of the events it owns an entity of.
            let mut routed: Vec<Vec<usize>> = vec![Vec::new(); peers.len()];
            for (i, queued) in events.iter().enumerate() {
                if queued.event.event().source_service == attackmesh::CORRELATION_DETECTOR {
                    continue;
                }
                for owner in partition::owners(queued.event.event(), count) {
                    routed[owner as usize].push(i);
                }
            }
            let calls = routed
                .iter()
                .enumerate()
                .filter(|(_, picked)| !picked.is_empty())
                .map(|(r, picked)| {
                    let batch = picked.iter().map(|&i| events[i].event.to_event()).collect();
                    async move { (picked, self.observe(&peers[r], r as u32, count, batch).await) }
                });
            for (picked, result) in join_all(calls).await {
                if let Err(outcome) = result {
                    for &i in picked {
                        // A retry wins over a dead letter: a replica that may still take it.
                        if !matches!(outcomes[i], ItemOutcome::Retry(_)) {
                            outcomes[i] = outcome.clone();
                        }
                    }
                }
            }
            outcomes
        })
    }
}
