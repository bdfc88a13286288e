//! Delivery of findings to enrichment's `Ingest`: one batch at a time from the replica's
//! outbox, dropped from the outbox only once enrichment answers `DURABLE` (at-least-once). A
//! finding resent after a crash carries the same event id, which enrichment's sinks recognise.

use std::{sync::Arc, time::Duration};

use attackmesh::proto::{AckStatus, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_runtime::{
    backoff::Backoff,
    peer::{DEFAULT_REFRESH, PeerConfig},
};
use tokio_util::sync::CancellationToken;

use crate::service::Replica;

/// Findings per `Ingest` batch.
const BATCH: usize = 500;
/// Pause between failed deliveries unless the link sets `backoff`.
const DEFAULT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_secs(2);

/// Delivers the outbox of `replica` through `link` until `stop`.
pub async fn run(replica: Arc<Replica>, link: PeerConfig, stop: CancellationToken) {
    let backoff = link.backoff_or(DEFAULT_BACKOFF);
    let timeout = link.request_timeout_or(Duration::from_secs(30));
    let mut retries = backoff.retries();
    let peer = loop {
        match link.connect("enrichment", DEFAULT_REFRESH).await {
            Ok(peer) => break peer,
            Err(error) => {
                tracing::warn!(%error, "cannot reach enrichment for findings yet");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retries.next_delay()) => {}
                }
            }
        }
    };
    let mut batch_id = 0u64;
    loop {
        let pending = replica.pending(BATCH);
        if pending.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = replica.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        batch_id += 1;
        let n = pending.len();
        let result = async {
            peer.token().reload().await.map_err(|e| e.to_string())?;
            let mut request = tonic::Request::new(tokio_stream::once(IngestRequest {
                batch_id,
                events: pending,
                trace_context: Default::default(),
            }));
            request.set_timeout(timeout);
            peer.authorize(request.metadata_mut());
            let mut client = IngestServiceClient::new(peer.channel())
                .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
                .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES);
            let mut answers = client
                .ingest(request)
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            let answer = answers
                .message()
                .await
                .map_err(|s| s.message().to_owned())?
                .ok_or("enrichment closed the stream without an answer")?;
            if answer.status != AckStatus::Durable as i32 {
                return Err(format!("enrichment asked to retry: {}", answer.message));
            }
            for r in &answer.rejections {
                tracing::error!(finding = %r.event_id, violations = ?r.violations, "enrichment refused a finding");
            }
            Ok::<_, String>(())
        }
        .await;
        match result {
            Ok(()) => {
                retries.reset();
                if let Err(error) = replica.delivered(n) {
                    tracing::warn!(%error, "delivered findings not yet recorded; they may be sent again");
                }
            }
            Err(error) => {
                tracing::warn!(%error, findings = n, "findings not delivered to enrichment; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retries.next_delay()) => {}
                }
            }
        }
    }
}
