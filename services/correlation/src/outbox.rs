//! Delivery of what a replica queued, one batch at a time, each dropped from its queue only once
//! the receiver answers `DURABLE` (at-least-once):
//! - findings go to enrichment's `Ingest`, to be attributed and exported like any detection; a
//!   finding resent after a crash carries the same event id, which enrichment's sinks recognise;
//! - campaign alerts go straight to siem-export's `Export`: `Ingest` takes detections and
//!   attributes them anew, so an alert's `campaign`, its revision and its campaign-level actor
//!   ranking would not survive that path. An alert resent after a crash carries the same campaign
//!   id and revision, which every sink recognises (they keep the highest revision of an id).

use std::{sync::Arc, time::Duration};

use attackmesh::proto::{
    AckStatus, DetectionEvent, EnrichedEvent, EventRejection, ExportRequest, IngestRequest,
    export_service_client::ExportServiceClient, ingest_service_client::IngestServiceClient,
};
use attackmesh_runtime::{
    backoff::Backoff,
    peer::{DEFAULT_REFRESH, Peer, PeerConfig},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{error::Error, service::Replica};

/// Pause between failed deliveries unless the link sets `backoff`.
const DEFAULT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How often a queue is looked at without a wake-up.
const POLL: Duration = Duration::from_secs(2);

/// One of a replica's queues and where it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Findings, to enrichment's `Ingest`.
    Findings,
    /// Campaign alerts, to siem-export's `Export`.
    CampaignAlerts,
}

/// A batch taken from one queue.
enum Batch {
    Findings(Vec<DetectionEvent>),
    Alerts(Vec<EnrichedEvent>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Findings(events) => events.len(),
            Batch::Alerts(events) => events.len(),
        }
    }
}

/// The receiver's answer, whichever service gave it.
struct Answer {
    durable: bool,
    message: String,
    rejections: Vec<EventRejection>,
}

impl Route {
    /// The receiving service, as logs and peer names call it.
    fn peer(self) -> &'static str {
        match self {
            Route::Findings => "enrichment",
            Route::CampaignAlerts => "siem-export",
        }
    }

    /// What travels, in log lines.
    fn what(self) -> &'static str {
        match self {
            Route::Findings => "findings",
            Route::CampaignAlerts => "campaign alerts",
        }
    }

    /// Events per batch.
    fn batch(self) -> usize {
        match self {
            Route::Findings => 500,
            Route::CampaignAlerts => 200,
        }
    }

    fn take(self, replica: &Replica) -> Batch {
        match self {
            Route::Findings => Batch::Findings(replica.pending(self.batch())),
            Route::CampaignAlerts => Batch::Alerts(replica.pending_alerts(self.batch())),
        }
    }

    fn wake(self, replica: &Replica) -> &Notify {
        match self {
            Route::Findings => &replica.wake,
            Route::CampaignAlerts => &replica.wake_alerts,
        }
    }

    fn delivered(self, replica: &Replica, n: usize) -> Result<(), Error> {
        match self {
            Route::Findings => replica.delivered(n),
            Route::CampaignAlerts => replica.alerts_delivered(n),
        }
    }
}

/// Delivers the `route` queue of `replica` through `link` until `stop`.
pub async fn run(route: Route, replica: Arc<Replica>, link: PeerConfig, stop: CancellationToken) {
    let (to, what) = (route.peer(), route.what());
    let backoff = link.backoff_or(DEFAULT_BACKOFF);
    let timeout = link.request_timeout_or(Duration::from_secs(30));
    let mut retries = backoff.retries();
    let peer = loop {
        match link.connect(to, DEFAULT_REFRESH).await {
            Ok(peer) => break peer,
            Err(error) => {
                tracing::warn!(%error, "cannot reach {to} for {what} yet");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retries.next_delay()) => {}
                }
            }
        }
    };
    let mut batch_id = 0u64;
    loop {
        let batch = route.take(&replica);
        let n = batch.len();
        if n == 0 {
            tokio::select! {
                () = stop.cancelled() => return,
                () = route.wake(&replica).notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        batch_id += 1;
        let result = match send(&peer, batch_id, batch, timeout).await {
            Ok(answer) if answer.durable => {
                for r in &answer.rejections {
                    tracing::error!(event = %r.event_id, violations = ?r.violations, "{to} refused one of the {what}");
                }
                Ok(())
            }
            Ok(answer) => Err(format!("{to} asked to retry: {}", answer.message)),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                retries.reset();
                if let Err(error) = route.delivered(&replica, n) {
                    tracing::warn!(%error, "delivered {what} not yet recorded; they may be sent again");
                }
            }
            Err(error) => {
                tracing::warn!(%error, count = n, "{what} not delivered to {to}; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retries.next_delay()) => {}
                }
            }
        }
    }
}

/// Sends one batch on a stream of its own and reads the one answer.
async fn send(peer: &Peer, batch_id: u64, batch: Batch, timeout: Duration) -> Result<Answer, String> {
    peer.token().reload().await.map_err(|e| e.to_string())?;
    let limit = attackmesh::limits::MAX_MESSAGE_BYTES;
    let closed = || format!("the stream closed without an answer to batch {batch_id}");
    let failed = |s: tonic::Status| s.message().to_owned();
    match batch {
        Batch::Findings(events) => {
            let mut request = tonic::Request::new(tokio_stream::once(IngestRequest {
                batch_id,
                events,
                ..Default::default()
            }));
            request.set_timeout(timeout);
            peer.authorize(request.metadata_mut());
            let mut client = IngestServiceClient::new(peer.channel())
                .max_encoding_message_size(limit)
                .max_decoding_message_size(limit);
            let mut answers = client.ingest(request).await.map_err(failed)?.into_inner();
            let a = answers.message().await.map_err(failed)?.ok_or_else(closed)?;
            Ok(Answer {
                durable: a.status == AckStatus::Durable as i32,
                message: a.message,
                rejections: a.rejections,
            })
        }
        Batch::Alerts(events) => {
            let mut request = tonic::Request::new(tokio_stream::once(ExportRequest {
                batch_id,
                events,
                ..Default::default()
            }));
            request.set_timeout(timeout);
            peer.authorize(request.metadata_mut());
            let mut client = ExportServiceClient::new(peer.channel())
                .max_encoding_message_size(limit)
                .max_decoding_message_size(limit);
            let mut answers = client.export(request).await.map_err(failed)?.into_inner();
            let a = answers.message().await.map_err(failed)?.ok_or_else(closed)?;
            Ok(Answer {
                durable: a.status == AckStatus::Durable as i32,
                message: a.message,
                rejections: a.rejections,
            })
        }
    }
}
