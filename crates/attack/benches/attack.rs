//! Hot-path benchmarks of attribution.
//!
//! Run with `cargo bench -p attackmesh-attack --bench attack`. Rule evaluation and full
//! attribution report events per second on one core (criterion "elements/s") over a mix of real
//! detector records: every shared Suricata, Zeek and Cowrie sample and every EVTX file of the
//! Windows samples when present, synthetic events of every detector kind otherwise.
//! `rules/attribute` is attribution as the service makes it by default (every embedded rule pack
//! and the embedded SigmaHQ Windows rules, actor ranking), `rules/attribute-compact` the same in
//! the compact form, `rules/attribute-without-sigma` with the rule packs alone;
//! `rules-by-source/*` splits the mix into Windows events and the others, each with and without
//! Sigma (what the Sigma rules cost the events they cannot apply to shows there). `answer/*`
//! compares one `AttributeResponse` of 500 attributions of that mix in full and compact form:
//! encoding and decoding it, stripping it and expanding it again.

#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use attackmesh::formats::{self, Format, Reader};
use attackmesh::proto::{AttributeResponse, AttributionStatus, DetectionEvent, DetectorKind};
use attackmesh_attack::{Engine, Kb, RulePack, compact};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use prost::Message;

const COMPACT_KB: &[u8] = include_bytes!("../kb/enterprise-attack-18.1.kb.gz");

fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    dir.join("samples").is_dir().then_some(dir)
}

fn read(format: Format, path: &Path) -> Vec<DetectionEvent> {
    let Ok(input) = formats::open_path(path) else {
        return Vec::new();
    };
    Reader::new(format, input, path.display().to_string())
        .filter_map(|r| r.result.ok().flatten())
        .collect()
}

/// Every event of every `.evtx` file under `dir`.
fn evtx(dir: &Path, out: &mut Vec<DetectionEvent>) {
    for p in attackmesh_testkit::evtx_files(dir) {
        out.extend(read(Format::Evtx, &p));
    }
}

fn synthetic() -> Vec<DetectionEvent> {
    let ev = |event_type: &str, kind: DetectorKind, description: &str, attrs: &[(&str, &str)]| DetectionEvent {
        event_type: event_type.into(),
        detector_kind: kind as i32,
        description: description.into(),
        attributes: attrs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..Default::default()
    };
    vec![
        ev(
            "port_scan",
            DetectorKind::TrafficMonitor,
            "scan of 1000 ports",
            &[("direction", "inbound")],
        ),
        ev(
            "brute_force",
            DetectorKind::TrafficMonitor,
            "ssh brute force",
            &[("service", "ssh")],
        ),
        ev(
            "beaconing",
            DetectorKind::TrafficMonitor,
            "periodic callbacks",
            &[("protocol", "tls")],
        ),
        ev(
            "unusual_login",
            DetectorKind::BehaviouralAnalysis,
            "login at 03:00 from new country",
            &[],
        ),
        ev(
            "decoy_login",
            DetectorKind::Decoy,
            "login to decoy",
            &[("outcome", "failure")],
        ),
        ev(
            "suricata.alert",
            DetectorKind::TrafficMonitor,
            "ET SCAN Potential SSH Scan",
            &[
                ("alert.signature", "ET SCAN Potential SSH Scan"),
                ("alert.category", "Attempted Information Leak"),
                ("proto", "TCP"),
            ],
        ),
        ev(
            "cowrie.command.input",
            DetectorKind::Decoy,
            "cat /etc/passwd",
            &[("input", "cat /etc/passwd")],
        ),
    ]
}

fn event_mix() -> Vec<DetectionEvent> {
    let Some(dir) = shared_data() else { return synthetic() };
    let s = dir.join("samples");
    let mut mix = Vec::new();
    for f in ["first-org-conf-2015", "honeypot-2018", "wrccdc-2017"] {
        mix.extend(read(Format::SuricataEve, &s.join(format!("suricata/{f}.eve.ndjson"))));
    }
    mix.extend(read(Format::Cowrie, &s.join("cowrie/cowrie_local_session.json")));
    for f in [
        "notice.log",
        "dns.log",
        "http.log",
        "conn.log",
        "weird.log",
        "files.log",
        "ssl.log",
    ] {
        mix.extend(read(Format::Zeek, &s.join("zeek/zat-0.4.9").join(f)));
    }
    evtx(&s.join("evtx-attack-samples"), &mut mix);
    mix.extend(synthetic());
    mix
}

fn rules(c: &mut Criterion) {
    let engine = Engine::embedded().expect("embedded engine");
    let without_sigma = Engine::with_sigma(
        engine.kb().clone(),
        RulePack::embedded().expect("embedded packs"),
        Vec::new(),
    )
    .expect("engine without Sigma");
    let mix = event_mix();
    eprintln!(
        "{} events; {} rules and {} Sigma rules in force ({})",
        mix.len(),
        engine.rules().len(),
        engine.sigma().len(),
        engine.rule_pack_version()
    );
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(mix.len() as u64));
    let name = format!("{}-event mix", mix.len());
    g.bench_function(BenchmarkId::new("evaluate", &name), |b| {
        b.iter(|| {
            mix.iter()
                .map(|ev| engine.rules().count_matches(black_box(ev)))
                .sum::<usize>()
        })
    });
    for (id, engine) in [("attribute", &engine), ("attribute-without-sigma", &without_sigma)] {
        g.bench_function(BenchmarkId::new(id, &name), |b| {
            b.iter(|| {
                mix.iter()
                    .map(|ev| engine.attribute(black_box(ev)).confidence_score)
                    .sum::<f64>()
            })
        });
    }
    g.bench_function(BenchmarkId::new("attribute-compact", &name), |b| {
        b.iter(|| {
            mix.iter()
                .map(|ev| engine.attribute_compact(black_box(ev)).confidence_score)
                .sum::<f64>()
        })
    });
    g.finish();
    // The same by detector family: Windows events (Sigma's) apart from the others.
    let (windows, others): (Vec<_>, Vec<_>) = mix.into_iter().partition(|ev| ev.original_format == "evtx");
    let mut g = c.benchmark_group("rules-by-source");
    for (source, events) in [("windows", &windows), ("network-and-honeypot", &others)] {
        g.throughput(Throughput::Elements(events.len() as u64));
        for (id, engine) in [("attribute", &engine), ("attribute-without-sigma", &without_sigma)] {
            g.bench_function(BenchmarkId::new(id, format!("{} {source} events", events.len())), |b| {
                b.iter(|| {
                    events
                        .iter()
                        .map(|ev| engine.attribute(black_box(ev)).confidence_score)
                        .sum::<f64>()
                })
            });
        }
    }
    g.finish();
}

fn kb(c: &mut Criterion) {
    let mut g = c.benchmark_group("kb");
    g.bench_function("load_compact", |b| {
        b.iter(|| Kb::from_bytes(black_box(COMPACT_KB), None).expect("decodes"))
    });
    if let Some(dir) = shared_data() {
        let path = dir.join("attack/enterprise-attack-18.1.json.gz");
        if let Ok(bundle) = std::fs::read(&path) {
            g.sample_size(10);
            g.bench_function("import_full_bundle_gz", |b| {
                b.iter(|| Kb::from_bytes(black_box(&bundle), Some("enterprise-attack-18.1.json.gz")).expect("imports"))
            });
        }
    }
    g.finish();
}

fn actors(c: &mut Criterion) {
    let engine = Engine::embedded().expect("embedded engine");
    let mut g = c.benchmark_group("actors");
    let apt29: Vec<String> = engine
        .kb()
        .group("G0016")
        .map(|g| g.techniques.clone())
        .unwrap_or_default();
    let sets: [(&str, Vec<&str>); 3] = [
        ("2-generic", vec!["T1059", "T1105"]),
        (
            "8-mixed",
            vec![
                "T1110.001",
                "T1078",
                "T1021.004",
                "T1098.004",
                "T1070.003",
                "T1082",
                "T1033",
                "T1105",
            ],
        ),
        ("apt29-profile", apt29.iter().map(String::as_str).collect()),
    ];
    // The same set again and again, as a detector stream repeats its signatures: after the
    // first, the knowledge base's cached ranking.
    for (name, set) in &sets {
        g.bench_function(BenchmarkId::new("rank", name), |b| {
            b.iter(|| engine.rank_actors(black_box(set)))
        });
    }
    // A different set every time, more sets than the cache keeps: every ranking worked out.
    let profiles: Vec<Vec<&str>> = engine
        .kb()
        .groups()
        .filter(|g| g.is_active())
        .flat_map(|g| {
            let t: Vec<&str> = g.techniques.iter().map(String::as_str).collect();
            [t.iter().take(3).copied().collect(), t]
        })
        .filter(|set: &Vec<&str>| set.len() >= 2)
        .collect();
    let mut next = profiles.iter().cycle();
    g.bench_function(
        BenchmarkId::new("rank-distinct", format!("{} sets", profiles.len())),
        |b| b.iter(|| engine.rank_actors(black_box(next.next().map(Vec::as_slice).unwrap_or_default()))),
    );
    g.finish();
}

/// One batch's answer: the attributions of the first 500 events of the mix that attribute to
/// something (cycling through them when there are fewer), in full.
fn full_answer(engine: &Engine) -> AttributeResponse {
    let attributed: Vec<_> = event_mix()
        .iter()
        .map(|ev| engine.attribute(ev))
        .filter(|a| a.status == AttributionStatus::Ok as i32)
        .collect();
    AttributeResponse {
        batch_id: 1,
        attributions: attributed.iter().cycle().take(500).cloned().collect(),
        ..Default::default()
    }
}

fn stripped(full: &AttributeResponse, rule_pack_version: &str) -> AttributeResponse {
    let mut answer = full.clone();
    answer.attributions.iter_mut().for_each(compact::strip);
    answer.compact = true;
    rule_pack_version.clone_into(&mut answer.rule_pack_version);
    answer
}

fn answer(c: &mut Criterion) {
    let engine = Engine::embedded().expect("embedded engine");
    let kb = engine.kb().clone();
    let full = full_answer(&engine);
    let version = engine.rule_pack_version().to_owned();
    let compact = stripped(&full, &version);
    println!(
        "answer of {} attributions: {} bytes in full, {} bytes compact",
        full.attributions.len(),
        full.encoded_len(),
        compact.encoded_len()
    );
    let mut g = c.benchmark_group("answer");
    g.throughput(Throughput::Elements(full.attributions.len() as u64));
    let mut buf = Vec::new();
    for (name, answer) in [("full", &full), ("compact", &compact)] {
        g.bench_function(BenchmarkId::new("encode+decode", name), |b| {
            b.iter(|| {
                buf.clear();
                black_box(answer).encode(&mut buf).expect("encodes");
                AttributeResponse::decode(black_box(buf.as_slice())).expect("decodes")
            })
        });
    }
    g.bench_function("strip", |b| {
        b.iter_batched(
            || full.clone(),
            |mut answer| {
                answer.attributions.iter_mut().for_each(compact::strip);
                answer
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("expand", |b| {
        b.iter_batched(
            || compact.clone(),
            |mut answer| {
                for a in &mut answer.attributions {
                    compact::expand(&kb, a, &answer.rule_pack_version).expect("expands");
                }
                answer
            },
            BatchSize::LargeInput,
        )
    });
    // One hop as the services make it, the answer dropped by the sender and kept by the receiver:
    // full = encode + decode; compact = strip + encode + decode + expand.
    g.bench_function(BenchmarkId::new("hop", "full"), |b| {
        b.iter_batched(
            || full.clone(),
            |answer| {
                let bytes = answer.encode_to_vec();
                drop(answer);
                AttributeResponse::decode(bytes.as_slice()).expect("decodes")
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function(BenchmarkId::new("hop", "compact"), |b| {
        b.iter_batched(
            || full.clone(),
            |mut answer| {
                answer.attributions.iter_mut().for_each(compact::strip);
                answer.compact = true;
                version.clone_into(&mut answer.rule_pack_version);
                let bytes = answer.encode_to_vec();
                drop(answer);
                let mut answer = AttributeResponse::decode(bytes.as_slice()).expect("decodes");
                for a in &mut answer.attributions {
                    compact::expand(&kb, a, &answer.rule_pack_version).expect("expands");
                }
                answer
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, rules, kb, actors, answer);
attackmesh_testkit::criterion_main!(benches);
