//! Delivery of campaign alerts to siem-export's `Export`: one batch at a time from the replica's
//! alert queue, dropped from the queue only once siem-export answers `DURABLE` (at-least-once).
//! An alert resent after a crash carries the same campaign id and revision, which every sink
//! recognises (they keep the highest revision of an id).
//!
//! Straight to siem-export rather than through enrichment's `Ingest` like findings: `Ingest`
//! takes detections and attributes them anew, so the alert's `campaign`, its revision and its
//! campaign-level actor ranking would not survive that path.

use std::{sync::Arc, time::Duration};

use attackmesh::proto::{AckStatus, ExportRequest, export_service_client::ExportServiceClient};
use attackmesh_runtime::{
    backoff::Backoff,
    peer::{DEFAULT_REFRESH, PeerConfig},
};
use tokio_util::sync::CancellationToken;

use crate::service::Replica;

/// Campaign alerts per `Export` batch.
const BATCH: usize = 200;
/// Pause between failed deliveries unless the link sets `backoff`.
const DEFAULT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How often the queue is looked at without a wake-up.
const POLL: Duration = Duration::from_secs(2);

/// Delivers the campaign alerts of `replica` through `link` until `stop`.
pub async fn run(replica: Arc<Replica>, link: PeerConfig, stop: CancellationToken) {
    let backoff = link.backoff_or(DEFAULT_BACKOFF);
    let timeout = link.request_timeout_or(Duration::from_secs(30));
    let mut retries = backoff.retries();
    let peer = loop {
        match link.connect("siem-export", DEFAULT_REFRESH).await {
            Ok(peer) => break peer,
            Err(error) => {
                tracing::warn!(%error, "cannot reach siem-export for campaign alerts yet");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retries.next_delay()) => {}
                }
            }
        }
    };
    let mut batch_id = 0u64;
    loop {
        let pending = replica.pending_alerts(BATCH);
        if pending.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = replica.wake_alerts.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        batch_id += 1;
        let n = pending.len();
        let result = async {
            peer.token().reload().await.map_err(|e| e.to_string())?;
            let mut request = tonic::Request::new(tokio_stream::once(ExportRequest {
                batch_id,
                events: pending,
                trace_context: Default::default(),
            }));
            request.set_timeout(timeout);
            peer.authorize(request.metadata_mut());
            let mut client = ExportServiceClient::new(peer.channel())
                .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
                .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES);
            let mut answers = client
                .export(request)
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            let answer = answers
                .message()
                .await
                .map_err(|s| s.message().to_owned())?
                .ok_or("siem-export closed the stream without an answer")?;
            if answer.status != AckStatus::Durable as i32 {
                return Err(format!("siem-export asked to retry: {}", answer.message));
            }
            for r in &answer.rejections {
                tracing::error!(campaign = %r.event_id, violations = ?r.violations, "siem-export refused a campaign alert");
            }
            Ok::<_, String>(())
        }
        .await;
        match result {
            Ok(()) => {
                retries.reset();
                if let Err(error) = replica.alerts_delivered(n) {
                    tracing::warn!(%error, "delivered campaign alerts not yet recorded; they may be sent again");
                }
            }
            Err(error) => {
                tracing::warn!(%error, alerts = n, "campaign alerts not delivered to siem-export; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retries.next_delay()) => {}
                }
            }
        }
    }
}
