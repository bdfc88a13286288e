//! Re-attribution: events delivered DEGRADED while attribution was unavailable are queued in an
//! on-disk [`ReattributeLog`] and, once attribution answers again, attributed and exported with
//! `revision = 2`, which supersedes the degraded version in sinks that can update.
//!
//! The worker handles one logged batch at a time and commits it only after export holds the
//! new revision durably, so a crash or restart of enrichment re-does at most that batch. A batch
//! attribution keeps failing on while it is up (say, rejected by a newer validator) is given up
//! after a few tries, logged and counted, so one bad record cannot stall the backlog.

mod log;

use std::{sync::Arc, time::Duration};

use attackmesh_runtime::backoff::Backoff;
pub(crate) use log::ReattributeLog;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    attribute::{Attributor, split},
    detection::Detection,
    encode::EventEncoder,
    export::{Exported, Exporter},
    metrics::METRICS,
    upstream::link::LinkError,
};

/// Revision of a re-attributed event.
pub const REATTRIBUTED_REVISION: u32 = 2;
/// Tries (while attribution is up) before a logged batch is given up.
const MAX_FAILURES: u32 = 5;
/// Pause between tries of a batch, to attribution or to export.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

enum Failure {
    Stopped,
    Attribution(String),
}

/// Works through the log until `stop`.
pub(crate) async fn run(
    log: ReattributeLog,
    attributor: Arc<Attributor>,
    exporter: Arc<Exporter>,
    stop: CancellationToken,
) {
    let mut up = attributor.watch();
    let mut failures = 0u32;
    let mut retries = BACKOFF.retries();
    loop {
        let entry = tokio::select! {
            entry = log.next() => entry,
            () = stop.cancelled() => return,
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(%error, "cannot read the re-attribution log; retrying in 5s");
                if sleep_or_stop(Duration::from_secs(5), &stop).await {
                    return;
                }
                continue;
            }
        };
        tokio::select! {
            changed = up.wait_for(|up| *up) => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let events = entry.batch.events.len();
        let span = tracing::info_span!("reattribute_batch", events);
        attackmesh_runtime::telemetry::set_parent_from_map(&span, &entry.batch.trace_context);
        match reattribute(&attributor, &exporter, entry.batch, &stop)
            .instrument(span)
            .await
        {
            Ok(delivered) => {
                failures = 0;
                retries.reset();
                METRICS.reattributed.inc_by(delivered);
                if let Err(error) = log.commit(entry.next).await {
                    tracing::error!(%error, "cannot advance the re-attribution log");
                }
                tracing::debug!(events = delivered, backlog_bytes = log.backlog(), "re-attributed");
            }
            Err(Failure::Stopped) => return,
            Err(Failure::Attribution(why)) => {
                failures += 1;
                if failures >= MAX_FAILURES && *up.borrow() {
                    tracing::error!(events, reason = %why, "giving up re-attributing a batch; it stays DEGRADED");
                    METRICS.reattribute_skipped.inc_by(events as u64);
                    let _ = log.commit(entry.next).await;
                    failures = 0;
                    continue;
                }
                tracing::debug!(reason = %why, failures, "re-attribution failed; retrying");
                if sleep_or_stop(retries.next_delay(), &stop).await {
                    return;
                }
            }
        }
    }
}

/// Attributes a logged batch and exports revision 2 until export holds it; returns the number
/// of events delivered.
async fn reattribute(
    attributor: &Attributor,
    exporter: &Exporter,
    batch: attackmesh::proto::AttributeRequest,
    stop: &CancellationToken,
) -> Result<u64, Failure> {
    let trace = batch.trace_context;
    let mut enriched = EventEncoder::with_capacity(batch.events.len());
    let events: Vec<Detection> = batch.events.into_iter().map(Detection::from).collect();
    for chunk in split(events, attributor.max_batch()) {
        // Full, never compact: this loop resends the same bytes until export holds them, so they
        // must suit an export of any release.
        let (events, result) = attributor.try_chunk(chunk, &trace, false).await;
        let attributions = match result {
            Ok(attributions) => attributions,
            Err(LinkError::Stopped) => return Err(Failure::Stopped),
            Err(LinkError::Unavailable(why)) => return Err(Failure::Attribution(why)),
        };
        for (ev, a) in events.into_iter().zip(attributions) {
            enriched.push_enriched(ev, a, REATTRIBUTED_REVISION);
        }
    }
    let mut enriched = enriched.finish();
    let mut retries = BACKOFF.retries();
    loop {
        let (back, result) = exporter.export(enriched, &trace, None).await;
        enriched = back;
        let wait = match result {
            Ok(Exported::Durable(rejections)) => {
                for r in &rejections {
                    tracing::warn!(event_id = %r.event_id, violations = r.violations.len(), "export refused a re-attributed event");
                }
                return Ok((enriched.len() - rejections.len()) as u64);
            }
            Ok(Exported::Retry { after, .. }) => after,
            Err(LinkError::Stopped) => return Err(Failure::Stopped),
            Err(LinkError::Unavailable(_)) => retries.next_delay(),
        };
        if sleep_or_stop(wait, stop).await {
            return Err(Failure::Stopped);
        }
    }
}

/// Sleeps `d`; true when `stop` came first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stop.cancelled() => true,
    }
}
