//! `bench pipeline --correlation`: what correlation adds per event, measured on the library and
//! the replica's durable path the correlation service runs, over generated connection records of
//! `entities` distinct sources (each probing ports, some resolving names), in this process.
//!
//! Reported: CPU µs per event of the engine alone and of the replica's `Observe` path (engine,
//! then the batch logged and synced before the answer, and the periodic snapshot), the windows held and evicted, the
//! saved state's size and the growth of this process's resident memory. The gRPC hop from the
//! export sink costs what one more hop costs (see CRATES.md's transport figures).

use attackmesh::proto::{Endpoint, EnrichedEvent};
use attackmesh_correlation::{CorrelationConfig, Shard, service::Replica, store::Store};
use serde::Serialize;

/// What the correlation phase measured.
#[derive(Debug, Serialize)]
pub(super) struct CorrelationFigures {
    pub(super) events: usize,
    pub(super) entities: usize,
    pub(super) engine_cpu_us_per_event: f64,
    pub(super) durable_cpu_us_per_event: f64,
    pub(super) batch: usize,
    pub(super) windows: usize,
    pub(super) evicted: u64,
    pub(super) findings: usize,
    pub(super) state_mib: f64,
    pub(super) rss_growth_mib: f64,
    pub(super) max_groups: usize,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn cpu() -> f64 {
    super::procs::cpu_seconds("/proc/self/stat").unwrap_or_default()
}

/// Connection records: source `i % entities`, one port each, rejected (scan-like), and every
/// tenth a DNS TXT lookup.
fn events(n: usize, entities: usize) -> Vec<EnrichedEvent> {
    (0..n)
        .map(|i| {
            let e = i % entities;
            let mut ev = EnrichedEvent {
                event_id: format!("bench-{i}"),
                timestamp: Some(pbjson_types::Timestamp {
                    seconds: 1_717_243_200 + (i / 100) as i64,
                    nanos: 0,
                }),
                source_service: "zeek".into(),
                event_type: "zeek.conn".into(),
                source: Some(Endpoint {
                    ip: format!("10.{}.{}.{}", e >> 16, (e >> 8) & 255, e & 255),
                    port: 40_000,
                    ..Default::default()
                }),
                destination: Some(Endpoint {
                    ip: "10.200.0.1".into(),
                    port: (i / entities % 1000) as u32 + 1,
                    ..Default::default()
                }),
                revision: 1,
                ..Default::default()
            };
            if i % 10 == 0 {
                ev.event_type = "zeek.dns".into();
                ev.attributes.insert("qtype_name".into(), "TXT".into());
                ev.attributes.insert("query".into(), format!("c{i}.example.com"));
            } else {
                ev.attributes.insert("conn_state".into(), "REJ".into());
            }
            ev
        })
        .collect()
}

/// Runs the phase over `n` events of `entities` sources, `batch` events per durable apply.
pub(super) fn measure(
    n: usize,
    entities: usize,
    batch: usize,
    dir: &std::path::Path,
) -> anyhow::Result<CorrelationFigures> {
    let config = CorrelationConfig::default();
    let input = events(n, entities);
    let rss_before = rss_mib();

    let mut engine = config.engine()?;
    let mut findings = Vec::new();
    let start = cpu();
    for e in &input {
        engine.observe(e, Shard::default(), &mut findings);
    }
    let engine_cpu = cpu() - start;
    let windows = engine.groups();
    let evicted = engine.stats().evicted;
    let state_mib = engine.snapshot().len() as f64 / 1_048_576.0;
    let rss_growth = rss_mib() - rss_before;
    drop(engine);

    let replica = Replica::open(config.engine()?, Store::new(&dir.join("correlation")))?;
    let start = cpu();
    for chunk in input.chunks(batch.max(1)) {
        replica.observe(chunk, Shard::default())?;
    }
    let durable_cpu = cpu() - start;
    let per = |s: f64| (s * 1e6 / n.max(1) as f64 * 100.0).round() / 100.0;
    Ok(CorrelationFigures {
        events: n,
        entities,
        engine_cpu_us_per_event: per(engine_cpu),
        durable_cpu_us_per_event: per(durable_cpu),
        batch,
        windows,
        evicted,
        findings: findings.len(),
        state_mib: (state_mib * 10.0).round() / 10.0,
        rss_growth_mib: (rss_growth * 10.0).round() / 10.0,
        max_groups: config.max_groups,
    })
}

/// One line of the human summary.
pub(super) fn summary(f: &CorrelationFigures) -> String {
    format!(
        "correlation ({} events, {} distinct entities, in process): engine {} CPU µs/event; durable apply \
         (engine + write-ahead log synced per batch of {}) {} CPU µs/event; {} windows (max_groups {}), {} evicted, \
         {} findings; state {} MiB, resident memory +{} MiB\n",
        f.events,
        f.entities,
        f.engine_cpu_us_per_event,
        f.batch,
        f.durable_cpu_us_per_event,
        f.windows,
        f.max_groups,
        f.evicted,
        f.findings,
        f.state_mib,
        f.rss_growth_mib
    )
}
