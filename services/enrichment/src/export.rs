//! [`Exporter`]: durable hand-off of enriched events over the long-lived `Export` streams.
//!
//! A batch is handed off only when the export service answers DURABLE (every sink's queue holds
//! it). RETRY answers and an unreachable export service are reported to the caller, which
//! passes them upstream as backpressure; nothing here waits or drops on its own.
//!
//! Batches go compact (their events' ATT&CK details left for export to fill in, see
//! `ExportRequest.compact_for_attack_version`) while export's last answer asked for them in this
//! service's own ATT&CK release; the caller asks [`Exporter::compact_release`] before it
//! attributes, and marks the batch with it. A compact batch that meets an export of another
//! release (one replaced, or a mixed rollout) is answered RETRY as a whole; that answer does not
//! ask for this release, so the batches made after it are full. Nothing is resent from here in
//! another form: the detector resends, as for any RETRY.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use attackmesh::{
    codec::EncodedExport,
    proto::{AckStatus, EventRejection, ExportResponse, export_service_server},
};
use futures::future::join_all;
use prost::bytes::Bytes;
use tokio::sync::watch;

use crate::{
    attribute::split,
    upstream::link::{Link, LinkError, Rpc},
};

/// Wait suggested when export gives no `retry_after`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The `Export` RPC, its events sent as encoded once ([`crate::encode`]).
pub(crate) struct ExportRpc;

impl Rpc for ExportRpc {
    type Req = EncodedExport;
    type Resp = ExportResponse;
    const PATH: &'static str = attackmesh::grpc_path!(export_service_server::SERVICE_NAME, "Export");

    type Item = Bytes;
    /// The batch's `compact_for_attack_version` (empty for full events).
    type Options = String;

    fn batch_id(resp: &ExportResponse) -> u64 {
        resp.batch_id
    }

    fn request(
        &self,
        batch_id: u64,
        events: Vec<Bytes>,
        trace_context: HashMap<String, String>,
        compact_for_attack_version: String,
    ) -> EncodedExport {
        EncodedExport {
            batch_id,
            events,
            trace_context,
            compact_for_attack_version,
        }
    }

    fn into_items(request: EncodedExport) -> Vec<Bytes> {
        request.events
    }

    fn items(request: &EncodedExport) -> Vec<Bytes> {
        request.events.clone()
    }
}

/// What export did with a batch.
#[derive(Debug)]
pub(crate) enum Exported {
    /// Every event not listed is durably queued for every sink; indices refer to the batch given.
    Durable(Vec<EventRejection>),
    /// Export is slow or full: resend after `after`.
    Retry {
        /// How long to wait.
        after: Duration,
        /// Why.
        message: String,
    },
}

/// Hands enriched events to the export service.
pub(crate) struct Exporter {
    link: Link<ExportRpc>,
    max_batch: usize,
    /// This service's ATT&CK release: the one its compact batches are for.
    attack_version: String,
    /// Whether export's last answer asked for compact batches of `attack_version`.
    compact: AtomicBool,
}

impl Exporter {
    /// Wraps a link; batches over `max_batch` events are split. Batches may go compact for
    /// ATT&CK release `attack_version` (never when it is empty).
    pub(crate) fn new(link: Link<ExportRpc>, max_batch: usize, attack_version: String) -> Self {
        Self {
            link,
            max_batch,
            attack_version,
            compact: AtomicBool::new(false),
        }
    }

    /// The ATT&CK release a batch made now may be compact for: this service's, while export's
    /// last answer asked for compact batches of it.
    pub(crate) fn compact_release(&self) -> Option<&str> {
        self.compact
            .load(Ordering::Relaxed)
            .then_some(self.attack_version.as_str())
    }

    /// Exports `events` (encoded `EnrichedEvent`s) as one batch (or several, when over `max_batch`); the events come back
    /// so a caller can retry or answer with them. When any part is not durable the whole is
    /// reported as RETRY (resending is safe: the sinks that can recognise a resent
    /// `(event_id, revision)` do; see the README). `compact_for` marks the events compact for
    /// that release ([`Self::compact_release`] when the caller asked).
    pub(crate) async fn export(
        &self,
        events: Vec<Bytes>,
        trace: &HashMap<String, String>,
        compact_for: Option<&str>,
    ) -> (Vec<Bytes>, Result<Exported, LinkError>) {
        let chunks = split(events, self.max_batch);
        let results = join_all(
            chunks
                .into_iter()
                .map(|chunk| self.export_chunk(chunk, trace, compact_for.unwrap_or_default())),
        )
        .await;
        let mut events = Vec::new();
        let mut rejections = Vec::new();
        let mut retry: Option<(Duration, String)> = None;
        let mut failure = None;
        for (chunk, result) in results {
            let offset = events.len() as u32;
            events.extend(chunk);
            match result {
                Ok(Exported::Durable(found)) => rejections.extend(found.into_iter().map(|mut r| {
                    r.index += offset;
                    r
                })),
                Ok(Exported::Retry { after, message }) => {
                    let after = retry.as_ref().map_or(after, |(a, _)| after.max(*a));
                    retry = Some((after, message));
                }
                Err(error) => failure = Some(error),
            }
        }
        let result = match (failure, retry) {
            (Some(error), _) => Err(error),
            (None, Some((after, message))) => Ok(Exported::Retry { after, message }),
            (None, None) => Ok(Exported::Durable(rejections)),
        };
        (events, result)
    }

    async fn export_chunk(
        &self,
        events: Vec<Bytes>,
        trace: &HashMap<String, String>,
        compact_for: &str,
    ) -> (Vec<Bytes>, Result<Exported, LinkError>) {
        let count = events.len();
        let (events, answer) = self.link.send(events, trace, compact_for.to_owned()).await;
        let result = answer.map(|resp| {
            let compact = !self.attack_version.is_empty() && resp.attack_version == self.attack_version;
            if self.compact.swap(compact, Ordering::Relaxed) != compact {
                tracing::info!(
                    asked_for = %attackmesh::text::clip(&resp.attack_version, 16),
                    own = %self.attack_version,
                    "export batches go {}",
                    if compact { "compact" } else { "in full" }
                );
            }
            if resp.status == AckStatus::Durable as i32 {
                let rejections = resp
                    .rejections
                    .into_iter()
                    .filter(|r| (r.index as usize) < count)
                    .collect();
                Exported::Durable(rejections)
            } else {
                let after = resp
                    .retry_after
                    .map(proto_duration)
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_RETRY_AFTER);
                let message = if resp.message.is_empty() {
                    "export asked to retry".to_owned()
                } else {
                    format!("export: {}", resp.message)
                };
                Exported::Retry { after, message }
            }
        });
        (events, result)
    }

    /// Follows whether a stream to export is open.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.link.watch()
    }
}

/// A protobuf duration as a `std` one (negative becomes zero).
pub(crate) fn proto_duration(d: pbjson_types::Duration) -> Duration {
    if d.seconds < 0 || d.nanos < 0 {
        return Duration::ZERO;
    }
    Duration::new(d.seconds as u64, d.nanos as u32)
}

/// A `std` duration as a protobuf one.
pub(crate) fn to_proto_duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: d.as_secs().min(i64::MAX as u64) as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
