//! A sink's driver: drains the sink's queue into the sink, independently of every other sink.
//!
//! - Batching: a batch leaves as soon as the sink has a free request slot and nothing is in
//!   flight, when it reaches `batch.max_events`/`batch.max_bytes`, or when its oldest event is
//!   `batch.max_age` old.
//! - At most `retry.max_in_flight` requests per sink, retries included (a retrying batch keeps
//!   its slot), so memory is bounded and a failing sink cannot cause a retry storm.
//! - Retries: the runtime's exponential backoff with full jitter, per batch for at most
//!   `retry.max_duration`; what is left then goes to the dead-letter queue with the last error.
//! - Batches are acknowledged to the queue in order, after the sink's success answer (or the
//!   dead-letter write) — never before.
//!
//! - Compact events reach a sink that does not write them itself filled in from the knowledge
//!   base, and the dead-letter queue always holds them filled in.
//!
//! The driver never blocks Export: queues are the only link between the two.

use std::{sync::Arc, time::Duration};

use attackmesh::held::EventView;
use attackmesh_attack::Kb;
use attackmesh_runtime::backoff::Backoff;
use futures::{StreamExt, stream::FuturesOrdered};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::{BatchConfig, RetryConfig},
    dlq::{DamagedRegion, DeadLetter, DeadLetterQueue},
    metrics,
    queue::{EncodedEvent, QueueReader, ReadItem, lock},
    sinks::{ItemOutcome, QueuedEvent, Sink},
    status::SinkStats,
};

/// How often replay files are looked for.
const REPLAY_POLL: Duration = Duration::from_secs(1);

/// Everything one sink's drain loop needs.
pub struct Driver {
    /// Sink name.
    pub name: &'static str,
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// The sink's queue consumer.
    pub reader: QueueReader,
    /// The sink's dead letters.
    pub dlq: Arc<DeadLetterQueue>,
    /// Counters.
    pub stats: Arc<SinkStats>,
    /// Batch bounds.
    pub batch: BatchConfig,
    /// Retry bounds.
    pub retry: RetryConfig,
    /// The knowledge base compact events are filled in from.
    pub kb: Arc<Kb>,
}

struct Done {
    next_seq: Option<u64>,
}

impl Driver {
    /// Drains until `stop` is cancelled, then lets in-flight batches finish for at most `grace`.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        let Driver {
            name,
            sink,
            reader,
            dlq,
            stats,
            batch,
            retry,
            kb,
        } = self;
        let queue = reader.queue().clone();
        let reader = Arc::new(std::sync::Mutex::new(reader));
        let ctx = Arc::new(Ctx {
            name,
            dlq,
            stats,
            backoff: retry.backoff(),
            retry,
            fill_in: !sink.writes_compact(),
            sink,
            kb,
        });
        let gauges = crate::status::SinkHandle {
            name,
            kind: ctx.sink.kind(),
            queue: queue.clone(),
            stats: ctx.stats.clone(),
        };
        if !ctx.start(&stop).await {
            return;
        }
        let mut inflight = FuturesOrdered::new();
        let mut firsts: std::collections::VecDeque<(u64, i64)> = std::collections::VecDeque::new();
        let mut pending: Vec<Arc<QueuedEvent>> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut replay_tick = tokio::time::interval(REPLAY_POLL);
        let mut deadline: Option<Instant> = None;
        loop {
            let mut caught_up = true;
            if inflight.len() < ctx.retry.max_in_flight {
                let room = batch.max_events.saturating_sub(pending.len());
                let got = if room > 0 && pending_bytes < batch.max_bytes {
                    read(&reader, room, batch.max_bytes - pending_bytes).await
                } else {
                    Vec::new()
                };
                caught_up = got.is_empty();
                for item in got {
                    match item {
                        ReadItem::Event(ev) => {
                            let ev = if ctx.fill_in { ev.filled_in(&ctx.kb) } else { ev };
                            if pending.is_empty() && inflight.is_empty() {
                                queue.note_oldest(ev.seq, ev.enqueued_at_micros);
                            }
                            pending_bytes += approx_bytes(&ev);
                            pending.push(ev);
                        }
                        ReadItem::Damaged {
                            segment,
                            offset,
                            len,
                            reason,
                        } => {
                            ctx.damaged(segment, offset, len, &reason).await;
                        }
                    }
                }
                let full = pending.len() >= batch.max_events || pending_bytes >= batch.max_bytes;
                let flush = full || inflight.is_empty() || deadline.is_some();
                if !pending.is_empty() && (flush || age(&pending[0]) >= batch.max_age) {
                    let events = std::mem::take(&mut pending);
                    pending_bytes = 0;
                    firsts.push_back((events[0].seq, events[0].enqueued_at_micros));
                    let ctx = ctx.clone();
                    inflight.push_back(async move { ctx.deliver(events).await });
                    continue;
                }
            }
            if deadline.is_some() && caught_up && inflight.is_empty() && pending.is_empty() {
                break;
            }
            let age_due = pending
                .first()
                .map(|ev| Instant::now() + batch.max_age.saturating_sub(age(ev)));
            let can_read = inflight.len() < ctx.retry.max_in_flight;
            tokio::select! {
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    let done: Done = done;
                    firsts.pop_front();
                    let oldest = firsts.front().map(|f| f.1).or(pending.first().map(|e| e.enqueued_at_micros));
                    if let Some(next) = done.next_seq {
                        let q = queue.clone();
                        match tokio::task::spawn_blocking(move || q.ack(next, oldest)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::error!(sink = name, error = %e, "cannot persist the queue cursor"),
                            Err(e) => tracing::error!(sink = name, error = %e, "queue cursor task failed"),
                        }
                    }
                }
                () = reader_wait(&queue), if can_read => {}
                () = sleep_opt(age_due), if can_read && age_due.is_some() => {}
                _ = replay_tick.tick(), if deadline.is_none() => {
                    ctx.replays(&queue).await;
                    // Keeps the queue gauges fresh for Prometheus between status calls.
                    let _ = gauges.status();
                }
                () = stop.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + grace);
                }
                () = sleep_opt(deadline), if deadline.is_some() => {
                    tracing::warn!(sink = name, batches = inflight.len(), "grace period over; undelivered events stay queued");
                    break;
                }
            }
        }
    }
}

fn approx_bytes(ev: &QueuedEvent) -> usize {
    ev.event.event().description.len() + ev.event.event().original.len() + 512
}

async fn reader_wait(queue: &crate::queue::Queue) {
    queue.notified().await;
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn age(ev: &QueuedEvent) -> Duration {
    let now = chrono::Utc::now().timestamp_micros();
    Duration::from_micros(u64::try_from(now - ev.enqueued_at_micros).unwrap_or(0))
}

async fn read(reader: &Arc<std::sync::Mutex<QueueReader>>, max_events: usize, max_bytes: usize) -> Vec<ReadItem> {
    let reader = reader.clone();
    let name = lock(&reader).queue().name().to_owned();
    let read = move || {
        let mut reader = lock(&reader);
        let before = reader.read_back();
        let items = reader.read_available(max_events, max_bytes)?;
        Ok::<_, crate::error::Error>((items, reader.read_back() - before))
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok((items, read_back))) => {
            if read_back > 0 {
                let label = metrics::label(&name);
                metrics::METRICS.read_back.get_or_create(&label).inc_by(read_back);
            }
            items
        }
        Ok(Err(e)) => {
            tracing::error!(sink = %name, error = %e, "cannot read the queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Vec::new()
        }
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "queue read task failed");
            Vec::new()
        }
    }
}

struct Ctx {
    name: &'static str,
    sink: Arc<dyn Sink>,
    dlq: Arc<DeadLetterQueue>,
    stats: Arc<SinkStats>,
    retry: RetryConfig,
    backoff: Backoff,
    kb: Arc<Kb>,
    /// Whether the sink is given compact events filled in.
    fill_in: bool,
}

impl Ctx {
    /// Runs the sink's start-up (template, channel) until it succeeds; false when stopped first.
    async fn start(&self, stop: &CancellationToken) -> bool {
        let mut attempt = 0u32;
        loop {
            let result = tokio::time::timeout(self.retry.request_timeout, self.sink.start()).await;
            let error = match result {
                Ok(Ok(())) => {
                    tracing::info!(sink = self.name, "sink ready");
                    return true;
                }
                Ok(Err(e)) => e,
                Err(_) => "start-up timed out".to_owned(),
            };
            tracing::warn!(sink = self.name, error = %error, attempt, "sink start-up failed; retrying");
            self.stats.set_health(self.name, Some(&error));
            tokio::select! {
                () = tokio::time::sleep(self.backoff.delay(attempt)) => {}
                () = stop.cancelled() => return false,
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// Delivers one batch: retries what the sink asks to retry, dead-letters what it refuses.
    async fn deliver(&self, events: Vec<Arc<QueuedEvent>>) -> Done {
        let next_seq = events.last().map(|e| e.seq + 1);
        let started = Instant::now();
        let mut pending = events;
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let span = tracing::info_span!("sink_request", sink = self.name, events = pending.len(), attempt);
            attackmesh_runtime::telemetry::set_parent_from_map(&span, &pending[0].trace_context);
            let outcomes = match tokio::time::timeout(self.retry.request_timeout, self.sink.send(&pending))
                .instrument(span)
                .await
            {
                Ok(o) if o.len() == pending.len() => o,
                Ok(_) => {
                    vec![ItemOutcome::Retry("sink answered with a wrong number of outcomes".into()); pending.len()]
                }
                Err(_) => vec![ItemOutcome::Retry("request timed out".into()); pending.len()],
            };
            let mut retry = Vec::new();
            let mut dead = Vec::new();
            let mut last_error = None;
            let mut delivered = 0u64;
            let now = chrono::Utc::now().timestamp_micros();
            let mut latencies = Vec::new();
            for (ev, outcome) in pending.into_iter().zip(outcomes) {
                match outcome {
                    ItemOutcome::Delivered => {
                        delivered += 1;
                        latencies.push((now - ev.enqueued_at_micros).max(0) as f64 / 1e6);
                    }
                    ItemOutcome::Retry(why) => {
                        last_error = Some(why);
                        retry.push(ev);
                    }
                    ItemOutcome::Dead(why) => {
                        dead.push(DeadLetter::for_event(
                            self.name,
                            &ev.clone().filled_in(&self.kb).event.to_event(),
                            &why,
                        ));
                        last_error = Some(why);
                    }
                }
            }
            {
                // The family's guard must not live across an await.
                let latency = metrics::METRICS.latency.get_or_create(&metrics::label(self.name));
                latencies.iter().for_each(|l| latency.observe(*l));
            }
            self.stats.delivered(self.name, delivered);
            if !retry.is_empty() && started.elapsed() >= self.retry.max_duration {
                let why = format!(
                    "retries exhausted after {}: {}",
                    humantime_serde::re::humantime::format_duration(self.retry.max_duration),
                    last_error.as_deref().unwrap_or("unknown error")
                );
                dead.extend(retry.drain(..).map(|ev| {
                    DeadLetter::for_event(self.name, &ev.clone().filled_in(&self.kb).event.to_event(), &why)
                }));
            }
            self.dead_letter(dead).await;
            self.stats.set_health(self.name, last_error.as_deref());
            if retry.is_empty() {
                break;
            }
            self.stats.retried(self.name, retry.len() as u64);
            tracing::warn!(sink = self.name, events = retry.len(), attempt, error = ?last_error, "sink request failed; retrying");
            tokio::time::sleep(self.backoff.delay(attempt)).await;
            attempt = attempt.saturating_add(1);
            pending = retry;
        }
        Done { next_seq }
    }

    /// Writes dead letters, retrying the write until it succeeds: the batch is not acknowledged
    /// before its dead letters are on disk.
    async fn dead_letter(&self, entries: Vec<DeadLetter>) {
        if entries.is_empty() {
            return;
        }
        let n = entries.len() as u64;
        let entries = Arc::new(entries);
        let mut attempt = 0u32;
        loop {
            let (dlq, batch) = (self.dlq.clone(), entries.clone());
            match tokio::task::spawn_blocking(move || dlq.append(&batch)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => tracing::error!(sink = self.name, error = %e, "cannot write dead letters; retrying"),
                Err(e) => tracing::error!(sink = self.name, error = %e, "dead-letter task failed; retrying"),
            }
            tokio::time::sleep(self.backoff.delay(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
        self.stats.dead_lettered(self.name, n);
    }

    async fn damaged(&self, segment: std::path::PathBuf, offset: u64, len: u64, reason: &str) {
        let region = DamagedRegion {
            segment: segment.display().to_string(),
            offset,
            len,
        };
        let why = format!("damaged queue record: {reason}");
        self.dead_letter(vec![DeadLetter::for_damage(self.name, region, &why)])
            .await;
    }

    /// Appends replay files from `attackmesh dlq replay` to the queue.
    async fn replays(&self, queue: &Arc<crate::queue::Queue>) {
        let (dlq, queue) = (self.dlq.clone(), queue.clone());
        let name = self.name;
        let result = tokio::task::spawn_blocking(move || -> Result<usize, crate::error::Error> {
            let mut total = 0;
            for (path, events) in dlq.pending_replays()? {
                let now = chrono::Utc::now().timestamp_micros();
                let trace = Arc::default();
                let encoded: Vec<EncodedEvent> = events
                    .into_iter()
                    .map(|e| EncodedEvent::new(e, Arc::clone(&trace), now))
                    .collect();
                if !encoded.is_empty() {
                    queue.append(&encoded, now)?;
                }
                dlq.finish_replay(&path)?;
                total += encoded.len();
            }
            Ok(total)
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(sink = name, events = n, "queued replayed dead letters"),
            Ok(Err(e)) => tracing::warn!(sink = name, error = %e, "cannot queue replayed dead letters"),
            Err(e) => tracing::warn!(sink = name, error = %e, "replay task failed"),
        }
    }
}
