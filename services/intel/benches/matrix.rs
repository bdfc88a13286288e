//! The live matrix's aggregation over one million stored events.
//!
//! Run with `cargo bench -p attackmesh-intel --bench matrix`. The first run writes 1,000,000
//! events (30 days, 8 detectors, four severities, 5,000 entities, one to three of 200
//! techniques each, skewed so a few techniques dominate as they do in a SOC) through the
//! store's own write path into a SQLite file under the target directory, which later runs
//! reuse. `ATTACKMESH_BENCH_DB=postgres://…` measures a PostgreSQL store instead (filled the
//! same way when empty). Each case is the answer the page polls for: counts per technique of
//! a view, from the store and through `GET /ui/api/counts` over real HTTP.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{hint::black_box, time::Instant};

use attackmesh_intel::{
    Intel, IntelConfig, Store,
    store::{
        EventObjects,
        matrix::{DAY_US, HOUR_US, MatrixFilter, Observation, ObservedTechnique},
    },
    ui::{UiState, router},
};
use attackmesh_runtime::auth::{Authenticator, Role};
use criterion::{Criterion, criterion_group};

const EVENTS: usize = 1_000_000;
const BATCH: usize = 2_000;
const DETECTORS: usize = 8;
const ENTITIES: usize = 5_000;
const DAYS: i64 = 30;

/// A small deterministic generator (no dependency, same data every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Skewed towards 0: the minimum of three draws.
    fn skewed(&mut self, n: usize) -> usize {
        self.below(n).min(self.below(n)).min(self.below(n))
    }
}

fn observation(i: usize, rng: &mut Rng, techniques: &[String], end_us: i64) -> Observation {
    let ts_us = end_us - (rng.next() % (DAYS * DAY_US) as u64) as i64;
    let mut picked: Vec<ObservedTechnique> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let id = &techniques[rng.skewed(techniques.len())];
        if !picked.iter().any(|t| &t.id == id) {
            picked.push(ObservedTechnique {
                id: id.clone(),
                confidence: 0.3 + (rng.below(70) as f64) / 100.0,
                evidence: r#"[{"source":"rule","rule_id":"bench","detail":"","confidence":0.5}]"#.into(),
            });
        }
    }
    Observation {
        event_id: format!("bench-{i}"),
        revision: 1,
        ts_us,
        detector: format!("detector-{}", rng.skewed(DETECTORS)),
        severity: 1 + rng.below(4) as i32,
        campaign: String::new(),
        entities: vec![
            format!("10.{}.{}.{}", rng.below(4), rng.below(16), rng.skewed(ENTITIES) % 250),
            format!("host-{}", rng.skewed(ENTITIES)),
        ],
        techniques: picked,
        summary: r#"{"event_type":"alert","severity":"high"}"#.into(),
    }
}

async fn filled_store(end_us: i64) -> Store {
    let url = std::env::var("ATTACKMESH_BENCH_DB")
        .unwrap_or_else(|_| format!("sqlite:{}/matrix-bench-1m.db", env!("CARGO_TARGET_TMPDIR")));
    let store = Store::open(&url).await.unwrap();
    let all = MatrixFilter {
        from_us: i64::MIN,
        to_us: i64::MAX,
        ..Default::default()
    };
    let stored = store.matrix_counts("bench", &all).await.unwrap().events;
    if stored as usize >= EVENTS {
        return store;
    }
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let techniques: Vec<String> = kb.active_techniques().take(200).map(|t| t.id.clone()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    for start in (0..EVENTS).step_by(BATCH) {
        let events = (start..start + BATCH)
            .map(|i| {
                let o = observation(i, &mut rng, &techniques, end_us);
                EventObjects {
                    event_id: o.event_id.clone(),
                    revision: 1,
                    objects: Vec::new(),
                    observations: Vec::new(),
                    matrix: Some(o),
                    campaign: None,
                }
            })
            .collect();
        store
            .write_events("bench", Vec::new(), events, chrono::Utc::now())
            .await
            .unwrap();
    }
    eprintln!(
        "stored {EVENTS} events in {:.1} s ({url})",
        started.elapsed().as_secs_f64()
    );
    store
}

fn matrix(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A fixed end, so a reused store still has 30 days of data in the views.
    let end_us = 1_767_225_600 * 1_000_000; // 2026-01-01T00:00:00Z
    let store = rt.block_on(filled_store(end_us));
    let views = [
        ("all time", MatrixFilter::default(), None),
        ("last 24 hours", MatrixFilter::default(), Some(DAY_US)),
        (
            "last 7 days, one detector, high+",
            MatrixFilter {
                detector: Some("detector-0".into()),
                min_severity: Some(3),
                ..Default::default()
            },
            Some(7 * DAY_US),
        ),
        (
            "last 30 days, one entity",
            MatrixFilter {
                entity: Some("host-0".into()),
                ..Default::default()
            },
            Some(DAYS * DAY_US),
        ),
    ];
    let mut group = c.benchmark_group("matrix_counts_1m_events");
    group.sample_size(30);
    for (name, filter, window) in views {
        let filter = MatrixFilter {
            from_us: window.map_or(i64::MIN, |w| end_us - w + 17 * 60 * 1_000_000 + 3),
            to_us: window.map_or(i64::MAX, |_| end_us + HOUR_US),
            ..filter
        };
        let counts = rt.block_on(store.matrix_counts("bench", &filter)).unwrap();
        eprintln!(
            "{name}: {} events, {} techniques",
            counts.events,
            counts.techniques.len()
        );
        group.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(store.matrix_counts("bench", &filter)).unwrap()))
        });
    }
    group.finish();

    // The endpoint the page polls, over HTTP on 127.0.0.1, JSON included.
    let tokens = attackmesh_testkit::Tokens::new(&[("analyst", Role::Analyst)]);
    let config = IntelConfig {
        collections: vec![attackmesh_intel::config::CollectionConfig {
            id: "bench".into(),
            title: "bench".into(),
            description: String::new(),
            read: vec!["*".into()],
            write: Vec::new(),
        }],
        ..Default::default()
    };
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    let intel = Intel::new(store, kb, &config);
    let auth = Authenticator::new(&tokens.auth()).unwrap();
    let app = router(UiState::new(&config, intel, auth));
    let (listener, addr) = rt.block_on(attackmesh_testkit::bind());
    let stop = tokio_util::sync::CancellationToken::new();
    rt.spawn(attackmesh_runtime::metrics::serve_http(
        listener,
        app,
        stop.clone().cancelled_owned(),
    ));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/ui/api/counts?since=all");
    let bearer = tokens.bearer("analyst");
    let mut group = c.benchmark_group("ui_api_counts_1m_events");
    group.sample_size(30);
    group.bench_function("GET /ui/api/counts?since=all", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = client.get(&url).bearer_auth(&bearer).send().await.unwrap();
                assert!(resp.status().is_success());
                black_box(resp.bytes().await.unwrap())
            })
        })
    });
    group.finish();
    stop.cancel();
}

criterion_group!(benches, matrix);
attackmesh_testkit::criterion_main!(benches);
