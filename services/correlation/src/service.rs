//! The replica ([`Replica`]) and the gRPC `CorrelationService` over it.
//!
//! `Observe` applies a batch under one lock, in order: every event passes `Replica::intake`
//! (the one place each observed event goes through: the engine, then the campaign builder when
//! campaigns are on), findings join the outbox and, as members, the campaigns (see
//! [`crate::campaigns`]), changed campaigns join the alert queue as campaign alerts, and the
//! batch is appended to the write-ahead log before the answer; every [`SNAPSHOT_EVERY`] logged events (and after findings are delivered)
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
use attackmesh_campaign::{CAMPAIGN_EVENT_TYPE, campaign_alert};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    campaigns::Campaigns,
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
    /// Campaign alerts raised (campaigns started or changed by the batch).
    pub campaign_alerts: u32,
}

struct Inner {
    engine: Engine,
    outbox: VecDeque<DetectionEvent>,
    campaigns: Option<Campaigns>,
    /// Campaign alerts waiting for siem-export, oldest first.
    alerts: VecDeque<EnrichedEvent>,
    /// Events in the log since the last snapshot.
    logged: usize,
}

/// One correlation replica: the engine, its outbox of findings and its durable store.
pub struct Replica {
    inner: Mutex<Inner>,
    store: Store,
    /// Woken when findings join the outbox.
    pub wake: Notify,
    /// Woken when campaign alerts join their queue.
    pub wake_alerts: Notify,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replica {
    /// Opens a replica without campaigns: `engine` restored from `store` with its undelivered
    /// findings.
    pub fn open(engine: Engine, store: Store) -> Result<Self, Error> {
        Self::open_with(engine, None, store)
    }

    /// Opens a replica: `engine` and, when given, `campaigns` restored from `store` (snapshot,
    /// then the log replayed through both) with the findings and campaign alerts not yet
    /// delivered. Replaying regenerates the alerts a crash lost with the same ids and
    /// revisions: the builder is deterministic and sees the same batches.
    pub fn open_with(mut engine: Engine, campaigns: Option<Campaigns>, store: Store) -> Result<Self, Error> {
        let saved = store.load()?;
        if !saved.engine.is_empty() {
            engine.restore(&saved.engine).map_err(Error::Config)?;
        }
        let (campaigns, alerts) = match campaigns {
            Some(c) => (Some(c.restore(&saved.campaigns)?), saved.alerts.into()),
            None => {
                if !saved.campaigns.is_empty() || !saved.alerts.is_empty() {
                    tracing::warn!(
                        alerts = saved.alerts.len(),
                        "campaign building is off: the saved campaigns and their undelivered alerts are dropped"
                    );
                }
                (None, VecDeque::new())
            }
        };
        let mut inner = Inner {
            engine,
            outbox: saved.outbox.into(),
            campaigns,
            alerts,
            logged: 0,
        };
        let mut replayed = 0;
        for (index, count, events) in &saved.log {
            let shard = Shard {
                index: *index,
                count: *count,
            };
            let mut findings = Vec::new();
            Self::apply(&mut inner, events, shard, &mut findings, false);
            replayed += events.len();
            inner.outbox.extend(findings);
        }
        tracing::info!(
            windows = inner.engine.groups(),
            outbox = inner.outbox.len(),
            campaigns = inner.campaigns.as_ref().map_or(0, Campaigns::len),
            campaign_alerts = inner.alerts.len(),
            replayed,
            "correlation state restored"
        );
        let replica = Self {
            inner: Mutex::new(inner),
            store,
            wake: Notify::new(),
            wake_alerts: Notify::new(),
        };
        if replayed > 0 {
            replica.save(&lock(&replica.inner))?;
        }
        Ok(replica)
    }

    /// Where every observed event passes, in queue order. Campaign alerts (siem-export's
    /// correlation sink may carry them back) are neither rule input nor campaign members.
    fn intake(inner: &mut Inner, event: &EnrichedEvent, shard: Shard, findings: &mut Vec<DetectionEvent>) -> Observed {
        if event.campaign.is_some() || event.event_type == CAMPAIGN_EVENT_TYPE {
            return Observed::Ignored;
        }
        let outcome = inner.engine.observe(event, shard, findings);
        if let Some(c) = &mut inner.campaigns {
            c.observe(event, shard);
        }
        outcome
    }

    /// Applies one batch: every event through [`Self::intake`], then the batch's findings into
    /// the campaigns, then the changed campaigns into the alert queue. The same for a live batch
    /// and a replayed one, so replay rebuilds exactly what the batch built.
    fn apply(
        inner: &mut Inner,
        events: &[EnrichedEvent],
        shard: Shard,
        findings: &mut Vec<DetectionEvent>,
        live: bool,
    ) -> Applied {
        let mut out = Applied::default();
        for event in events {
            let outcome = Self::intake(inner, event, shard, findings);
            if live {
                metrics::observed(outcome);
            }
            match outcome {
                Observed::Applied => out.applied += 1,
                Observed::Ignored => out.ignored += 1,
                Observed::Late => out.late += 1,
                Observed::Unmatched => {}
            }
        }
        out.findings = findings.len() as u32;
        if let Some(c) = &mut inner.campaigns {
            for f in findings.iter() {
                c.observe_finding(f);
            }
            for campaign in c.updates() {
                if live {
                    tracing::info!(campaign = %campaign.campaign_id, revision = campaign.revision, "campaign update");
                }
                inner.alerts.push_back(campaign_alert(c.kb(), &campaign));
                out.campaign_alerts += 1;
            }
        }
        out
    }

    /// Applies `events` and saves; blocking (file I/O), run it off the async threads.
    pub fn observe(&self, events: &[EnrichedEvent], shard: Shard) -> Result<Applied, Error> {
        let mut inner = lock(&self.inner);
        let mut findings = Vec::new();
        let out = Self::apply(&mut inner, events, shard, &mut findings, true);
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
        if out.campaign_alerts > 0 {
            self.wake_alerts.notify_one();
        }
        Ok(out)
    }

    fn save(&self, inner: &Inner) -> Result<(), Error> {
        self.store
            .save(crate::store::Snapshot {
                engine: inner.engine.snapshot(),
                outbox: inner.outbox.iter().collect(),
                campaigns: match &inner.campaigns {
                    Some(c) => c.snapshot()?,
                    None => Vec::new(),
                },
                alerts: inner.alerts.iter().collect(),
            })
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

    /// Up to `max` campaign alerts waiting for siem-export, oldest first.
    pub fn pending_alerts(&self, max: usize) -> Vec<EnrichedEvent> {
        lock(&self.inner).alerts.iter().take(max).cloned().collect()
    }

    /// Drops the first `n` campaign alerts (siem-export holds them) and saves.
    pub fn alerts_delivered(&self, n: usize) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        let n = n.min(inner.alerts.len());
        inner.alerts.drain(..n);
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
