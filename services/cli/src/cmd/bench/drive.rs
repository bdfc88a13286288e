//! The detector side of the benchmark: realistic generated detections streamed to an
//! `IngestService` in batches, with a window of unacknowledged batches and an optional steady
//! rate, recording how long each batch took from send to its DURABLE acknowledgement.
//!
//! With a rate the load is open-loop: batch `k` is due at `start + k · interval` and its latency
//! counts from that moment, so a stall that delays later sends shows in their latency instead of
//! being hidden (no coordinated omission). Batches answered RETRY are sent again after the
//! answer's `retry_after`; they keep their original start time. This module must not know which
//! services sit behind the ingest endpoint.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use attackmesh::proto::{
    AckStatus, DetectionEvent, DetectorKind, Endpoint, IngestRequest, IngestResponse, Severity,
    ingest_service_client::IngestServiceClient,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, transport::Channel};

use super::replay::Workload;

/// What to send.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Events in total.
    pub(super) events: usize,
    /// Events per batch (the last batch may be smaller).
    pub(super) batch: usize,
    /// Batches sent and not yet acknowledged, at most.
    pub(super) in_flight: usize,
    /// Steady rate in events per second; as fast as acknowledgements allow when unset.
    pub(super) rate: Option<f64>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    /// Events acknowledged DURABLE as accepted.
    pub(super) accepted: u64,
    /// Events refused as invalid (should be 0: the generator makes valid events).
    pub(super) rejected: u64,
    /// Batches answered RETRY and sent again.
    pub(super) retried_batches: u64,
    /// From the first send to the last acknowledgement.
    pub(super) seconds: f64,
    /// Per-event latency from send (or scheduled send) to DURABLE.
    pub(super) latency: Percentiles,
}

/// What one reporting interval of a long run measured (see [`drive`]'s `every`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Slice {
    /// Seconds from the first send to the end of the interval.
    pub(super) at_seconds: f64,
    /// Events acknowledged DURABLE in the interval.
    pub(super) accepted: u64,
    /// Latency of the batches acknowledged in the interval.
    pub(super) latency: Percentiles,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Percentiles {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) p999: f64,
}

/// Per-batch latencies, each weighted by the events of its batch (they share it).
#[derive(Debug, Default)]
struct Latencies(Vec<(Duration, u64)>);

impl Latencies {
    fn record(&mut self, latency: Duration, events: u64) {
        self.0.push((latency, events));
    }

    fn percentiles(mut self) -> Percentiles {
        self.0.sort_unstable();
        let total: u64 = self.0.iter().map(|(_, n)| n).sum();
        let at = |q: f64| {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (latency, n) in &self.0 {
                seen += n;
                if seen >= rank {
                    return latency.as_secs_f64() * 1000.0;
                }
            }
            0.0
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// A traffic-monitor detection of about 600 bytes encoded, varied so rules and hints are
/// exercised. The same `(prefix, n)` always gives the same event (but for its timestamp), so a
/// batch can be rebuilt for a resend instead of kept.
pub(super) fn event(prefix: &str, n: usize) -> DetectionEvent {
    let kinds = [
        ("port_scan", "SYN scan of 1024 ports", "T1046"),
        ("ssh_brute_force", "412 failed SSH logins in 60s", "T1110.001"),
        ("dns_tunnel", "high-entropy TXT queries to one domain", "T1071.004"),
        ("smb_lateral", "admin share access from a workstation", "T1021.002"),
    ];
    let (kind, description, hint) = kinds[n % kinds.len()];
    let src = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    DetectionEvent {
        event_id: format!("{prefix}-{n}"),
        timestamp: Some(chrono::Utc::now().into()),
        source_service: "netmon-bench".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: kind.into(),
        source: Some(Endpoint {
            ip: src.clone(),
            port: 40_000 + (n % 20_000) as u32,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.20.0.15".into(),
            port: 22,
            hostname: "db-01.internal".into(),
            ..Default::default()
        }),
        severity: Severity::High as i32,
        description: format!("{description} from {src}"),
        technique_hints: vec![hint.into()],
        detector_confidence: Some(0.8),
        attributes: [
            ("packets".to_owned(), (n % 5000).to_string()),
            ("bytes".to_owned(), (n % 900_000).to_string()),
            ("proto".to_owned(), "tcp".to_owned()),
            ("sensor".to_owned(), "edge-01".to_owned()),
        ]
        .into(),
        original: format!(
            "{{\"ts\":{n},\"src\":\"{src}\",\"dst\":\"10.20.0.15\",\"kind\":\"{kind}\",\"note\":\"{description}\",\"pad\":\"{}\"}}",
            "x".repeat(160)
        ),
        original_format: "ndjson".into(),
        ..Default::default()
    }
}

fn batch_events(workload: &Workload, prefix: &str, plan: &Plan, k: usize) -> Vec<DetectionEvent> {
    let first = k * plan.batch;
    let last = (first + plan.batch).min(plan.events);
    (first..last).map(|n| workload.event(prefix, n)).collect()
}

/// A batch sent and not yet answered DURABLE.
struct Pending {
    /// When its latency starts: the first send, or the scheduled send with a rate.
    since: Instant,
    events: u64,
}

/// Streams `plan` of `workload` to `client` on one `Ingest` stream and waits for every batch to be
/// acknowledged DURABLE. Event ids are `<prefix>-<n>`. With `every`, `on_slice` is called at
/// each such interval with what it measured (a soak's drift over time).
pub(super) async fn drive(
    client: &mut IngestServiceClient<Channel>,
    token: &str,
    prefix: &str,
    plan: Plan,
    every: Option<Duration>,
    on_slice: &mut dyn FnMut(Slice),
    workload: &Workload,
) -> anyhow::Result<Outcome> {
    let batches = plan.events.div_ceil(plan.batch);
    let interval = plan.rate.map(|r| Duration::from_secs_f64(plan.batch as f64 / r));

    // Events are built ahead on another task, so building them overlaps with waiting for acks.
    let (built_tx, mut built) = mpsc::channel::<(usize, Vec<DetectionEvent>)>(plan.in_flight.max(2));
    let owned_prefix = prefix.to_owned();
    let owned_workload = workload.clone();
    let builder = tokio::spawn(async move {
        for k in 0..batches {
            let events = batch_events(&owned_workload, &owned_prefix, &plan, k);
            if built_tx.send((k, events)).await.is_err() {
                return;
            }
        }
    });

    let (tx, rx) = mpsc::channel::<IngestRequest>(plan.in_flight * 2 + 1);
    let mut request = Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut acks = client.ingest(request).await.context("ingest stream")?.into_inner();

    let start = Instant::now();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut retry: VecDeque<(Instant, usize, Pending)> = VecDeque::new();
    let mut next = 0usize;
    let mut latencies = Latencies::default();
    let (mut accepted, mut rejected, mut retried_batches) = (0u64, 0u64, 0u64);
    let mut last_ack = start;
    let mut slice = (Latencies::default(), 0u64);
    let mut slice_end = every.map(|e| start + e);

    while next < batches || !pending.is_empty() || !retry.is_empty() {
        let room = pending.len() < plan.in_flight;
        let retry_due = retry.front().map(|(due, _, _)| *due);
        let due = interval.map(|i| start + i * next as u32);
        tokio::select! {
            biased;
            ack = acks.message() => {
                let ack = ack.context("ingest stream failed")?.with_context(|| {
                    format!("ingest stream ended with {} batches unanswered", pending.len())
                })?;
                last_ack = Instant::now();
                let Some(sent) = pending.remove(&ack.batch_id) else {
                    bail!("acknowledgement for unknown batch {}", ack.batch_id);
                };
                match AckStatus::try_from(ack.status) {
                    Ok(AckStatus::Durable) => {
                        accepted += u64::from(ack.accepted);
                        rejected += u64::from(ack.rejected);
                        latencies.record(last_ack - sent.since, sent.events);
                        if every.is_some() {
                            slice.0.record(last_ack - sent.since, sent.events);
                            slice.1 += u64::from(ack.accepted);
                        }
                    }
                    Ok(AckStatus::Retry) => {
                        retried_batches += 1;
                        let wait = retry_after(&ack);
                        retry.push_back((last_ack + wait, ack.batch_id as usize, sent));
                    }
                    _ => bail!("batch {} answered {:?}: {}", ack.batch_id, ack.status(), ack.message),
                }
            }
            () = sleep_until(slice_end), if slice_end.is_some() => {
                let (window, events) = std::mem::take(&mut slice);
                on_slice(Slice {
                    at_seconds: start.elapsed().as_secs_f64(),
                    accepted: events,
                    latency: window.percentiles(),
                });
                slice_end = slice_end.zip(every).map(|(end, every)| end + every);
            }
            () = sleep_until(retry_due), if room && retry_due.is_some() => {
                if let Some((_, k, sent)) = retry.pop_front() {
                    send(&tx, k, batch_events(workload, prefix, &plan, k)).await?;
                    pending.insert(k as u64, sent);
                }
            }
            Some((k, events)) = async {
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                built.recv().await
            }, if room && next < batches => {
                let since = due.unwrap_or_else(Instant::now);
                let n = events.len() as u64;
                send(&tx, k, events).await?;
                pending.insert(k as u64, Pending { since, events: n });
                next += 1;
            }
            else => bail!("event builder stopped early"),
        }
    }
    drop(tx);
    builder.await.context("event builder")?;
    Ok(Outcome {
        accepted,
        rejected,
        retried_batches,
        seconds: (last_ack - start).as_secs_f64(),
        latency: latencies.percentiles(),
    })
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

fn retry_after(ack: &IngestResponse) -> Duration {
    ack.retry_after
        .as_ref()
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_millis(100))
}

async fn send(tx: &mpsc::Sender<IngestRequest>, k: usize, events: Vec<DetectionEvent>) -> anyhow::Result<()> {
    tx.send(IngestRequest {
        batch_id: k as u64,
        events,
        trace_context: Default::default(),
    })
    .await
    .map_err(|_| anyhow::anyhow!("ingest stream closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_weigh_each_batch_by_its_events() {
        let mut l = Latencies::default();
        l.record(Duration::from_millis(1), 98);
        l.record(Duration::from_millis(10), 1);
        l.record(Duration::from_millis(100), 1);
        let p = l.percentiles();
        assert_eq!((p.p50, p.p99, p.p999), (1.0, 10.0, 100.0));
    }

    #[test]
    fn batches_cover_every_event_once() {
        let plan = Plan {
            events: 1050,
            batch: 500,
            in_flight: 2,
            rate: None,
        };
        let w = Workload::Synthetic;
        let sizes: Vec<usize> = (0..3).map(|k| batch_events(&w, "t", &plan, k).len()).collect();
        assert_eq!(sizes, [500, 500, 50]);
        assert_eq!(batch_events(&w, "t", &plan, 2)[49].event_id, "t-1049");
    }
}
