//! Sigma hot path: the whole embedded SigmaHQ Windows rule set against real Windows events.
//!
//! Run with `cargo bench -p attackmesh-attack --bench sigma`. Reads every `.evtx` file of the
//! shared samples (`../shared/data/samples/evtx-attack-samples`, skipped when absent) and reports
//! events per second on one core (criterion "elements/s") for Sigma evaluation alone and for
//! full attribution (rule packs, Sigma, actor ranking). `sigma-load/compile` is the start-up
//! cost of the embedded rules: parsing, routing and building the needle automata.

#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use attackmesh::formats::{Format, Reader, open_path};
use attackmesh::proto::DetectionEvent;
use attackmesh_attack::Engine;
use attackmesh_attack::sigma::{Compiled, SigmaPack};
use criterion::{Criterion, Throughput, criterion_group};

fn samples() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/samples/evtx-attack-samples"
    ));
    dir.is_dir().then_some(dir)
}

/// Every event of every `.evtx` file under `dir`.
fn events(dir: &Path, out: &mut Vec<DetectionEvent>) {
    for p in attackmesh_testkit::evtx_files(dir) {
        if let Ok(input) = open_path(&p) {
            out.extend(
                Reader::new(Format::Evtx, input, p.display().to_string()).filter_map(|r| r.result.ok().flatten()),
            );
        }
    }
}

fn sigma(c: &mut Criterion) {
    let Some(dir) = samples() else {
        eprintln!("skipped: EVTX samples not found");
        return;
    };
    let mut all = Vec::new();
    events(&dir, &mut all);
    let engine = Engine::embedded().expect("engine");
    eprintln!(
        "{} events; {} Sigma rules in force ({} not compiled)",
        all.len(),
        engine.sigma().len(),
        engine.sigma().rejected().count()
    );
    let mut g = c.benchmark_group("sigma");
    g.throughput(Throughput::Elements(all.len() as u64));
    g.sample_size(10);
    g.bench_function("evaluate", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for ev in &all {
                engine.sigma().for_each_match(black_box(ev), |_, _| n += 1);
            }
            n
        })
    });
    g.bench_function("attribute", |b| {
        b.iter(|| {
            all.iter()
                .map(|ev| engine.attribute(black_box(ev)).technique_ids.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    let packs = SigmaPack::embedded().expect("embedded rules");
    let mut g = c.benchmark_group("sigma-load");
    g.sample_size(10);
    g.bench_function("compile", |b| b.iter(|| Compiled::compile(black_box(&packs))));
    g.finish();
}

criterion_group!(benches, sigma, load);
attackmesh_testkit::criterion_main!(benches);
