//! The replica ([`Replica`]) and the gRPC `CorrelationService` over it.
//!
//! `Observe` applies a batch under one lock, in order: every event passes `Replica::intake`
//! (the one place each observed event goes through: the engine today, campaign tracking can
//! hook in there), findings join the outbox, and the batch is appended to the write-ahead log
//! before the answer; every [`SNAPSHOT_EVERY`] logged events (and after findings are delivered)
//! a snapshot replaces the log. So an answered batch is durable, and an unanswered one is resent
//! by the sink and recognised event by event. Logging fails → `UNAVAILABLE`: the sink retries
//! (the events it resends count once: the engine already holds their ids).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use attackmesh::proto::{
    DetectionEvent, EnrichedEvent, FieldViolation, ObserveRequest, ObserveResponse,
    correlation_service_server::{CorrelationService, CorrelationServiceServer},
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    engine::{Engine, Observed, Shard},
    error::Error,
    metrics,
    store::Store,
};

/// Largest batch `Observe` takes.
pub const MAX_BATCH: usize = 10_000;
/// Events logged since the last snapshot that trigger the next one.
pub const SNAPSHOT_EVERY: usize = 50_000;

/// What `Observe` counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Counted in a window.
    pub applied: u32,
    /// Resends, correlation's own findings, events without a time.
    pub ignored: u32,
    /// Too late.
    pub late: u32,
    /// Findings raised.
    pub findings: u32,
}

struct Inner {
    engine: Engine,
    outbox: VecDeque<DetectionEvent>,
    /// Events in the log since the last snapshot.
    logged: usize,
}

/// One correlation replica: the engine, its outbox of findings and its durable store.
pub struct Replica {
    inner: Mutex<Inner>,
    store: Store,
    /// Woken when findings join the outbox.
    pub wake: Notify,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replica {
    /// Opens a replica: `engine` restored from `store` with its undelivered findings.
    pub fn open(mut engine: Engine, store: Store) -> Result<Self, Error> {
        let saved = store.load()?;
        if !saved.engine.is_empty() {
            engine.restore(&saved.engine).map_err(Error::Config)?;
        }
        let mut outbox: VecDeque<DetectionEvent> = saved.outbox.into();
        let mut replayed = 0;
        for (index, count, events) in &saved.log {
            let mut findings = Vec::new();
            let shard = Shard {
                index: *index,
                count: *count,
            };
            for event in events {
                engine.observe(event, shard, &mut findings);
            }
            replayed += events.len();
            outbox.extend(findings);
        }
        tracing::info!(
            windows = engine.groups(),
            outbox = outbox.len(),
            replayed,
            "correlation state restored"
        );
        let replica = Self {
            inner: Mutex::new(Inner {
                engine,
                outbox,
                logged: 0,
            }),
            store,
            wake: Notify::new(),
        };
        if replayed > 0 {
            replica.save(&lock(&replica.inner))?;
        }
        Ok(replica)
    }

    /// Where every observed event passes, in queue order.
    fn intake(inner: &mut Inner, event: &EnrichedEvent, shard: Shard, findings: &mut Vec<DetectionEvent>) -> Observed {
        inner.engine.observe(event, shard, findings)
    }

    /// Applies `events` and saves; blocking (file I/O), run it off the async threads.
    pub fn observe(&self, events: &[EnrichedEvent], shard: Shard) -> Result<Applied, Error> {
        let mut inner = lock(&self.inner);
        let mut findings = Vec::new();
        let mut out = Applied::default();
        for event in events {
            let outcome = Self::intake(&mut inner, event, shard, &mut findings);
            metrics::observed(outcome);
            match outcome {
                Observed::Applied => out.applied += 1,
                Observed::Ignored => out.ignored += 1,
                Observed::Late => out.late += 1,
                Observed::Unmatched => {}
            }
        }
        out.findings = findings.len() as u32;
        for f in &findings {
            tracing::info!(finding = %f.event_id, rule = %f.event_type, "correlation finding");
        }
        inner.outbox.extend(findings);
        self.store
            .append(shard.index, shard.count, events)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        inner.logged += events.len();
        if inner.logged >= SNAPSHOT_EVERY {
            self.save(&inner)?;
            inner.logged = 0;
        }
        metrics::state(
            inner.engine.stats(),
            inner.engine.groups(),
            inner.outbox.len(),
            out.findings as usize,
        );
        if out.findings > 0 {
            self.wake.notify_one();
        }
        Ok(out)
    }

    fn save(&self, inner: &Inner) -> Result<(), Error> {
        let outbox: Vec<&DetectionEvent> = inner.outbox.iter().collect();
        self.store
            .save(inner.engine.snapshot(), &outbox)
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Up to `max` findings waiting for enrichment, oldest first.
    pub fn pending(&self, max: usize) -> Vec<DetectionEvent> {
        lock(&self.inner).outbox.iter().take(max).cloned().collect()
    }

    /// Drops the first `n` findings of the outbox (enrichment holds them) and saves.
    pub fn delivered(&self, n: usize) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        let n = n.min(inner.outbox.len());
        inner.outbox.drain(..n);
        metrics::delivered(n, inner.outbox.len());
        self.save(&inner)?;
        inner.logged = 0;
        Ok(())
    }
}

/// The gRPC face of a replica.
#[derive(Clone)]
pub struct CorrelationApi {
    replica: Arc<Replica>,
}

impl CorrelationApi {
    /// Serves `replica`.
    pub fn new(replica: Arc<Replica>) -> Self {
        Self { replica }
    }
}

/// The tonic service with the contract's message limits.
pub fn grpc_service(api: CorrelationApi) -> CorrelationServiceServer<CorrelationApi> {
    CorrelationServiceServer::new(api)
        .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES)
}

#[tonic::async_trait]
impl CorrelationService for CorrelationApi {
    async fn observe(&self, request: Request<ObserveRequest>) -> Result<Response<ObserveResponse>, Status> {
        let req = request.into_inner();
        let mut violations = Vec::new();
        if req.events.len() > MAX_BATCH {
            violations.push(FieldViolation {
                field: "events".into(),
                description: format!("at most {MAX_BATCH} events, got {}", req.events.len()),
            });
        }
        if req.replica_count > 1 && req.replica_index >= req.replica_count {
            violations.push(FieldViolation {
                field: "replica_index".into(),
                description: format!("must be below replica_count ({})", req.replica_count),
            });
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations).into());
        }
        let shard = Shard {
            index: req.replica_index,
            count: req.replica_count,
        };
        let replica = self.replica.clone();
        let applied = tokio::task::spawn_blocking(move || replica.observe(&req.events, shard))
            .await
            .map_err(|e| Error::Unavailable(format!("observe task: {e}")))??;
        Ok(Response::new(ObserveResponse {
            applied: applied.applied,
            ignored: applied.ignored,
            late: applied.late,
            findings: applied.findings,
        }))
    }
}
