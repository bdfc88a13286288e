//! Parse-and-build benchmarks of the detector formats: one line in, one `DetectionEvent` out,
//! the work `attackmesh ship` does per record before batching.
//!
//! Run with `cargo bench -p attackmesh --bench formats`. Each format reports records per second
//! on one core (criterion "elements/s") over its real samples from the shared data folder
//! (Suricata, Zeek, Cowrie) and the Falco and Wazuh fixtures of `tests/data`; a format whose
//! samples are absent is left out.

#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use attackmesh::formats::{Format, ParseState, parse_line};
use criterion::{Criterion, Throughput, criterion_group};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The data lines of `path` (plain text only), headers of Zeek TSV files included.
fn lines(path: PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn inputs() -> Vec<(Format, Vec<String>)> {
    let shared = root().join("../shared/data/samples");
    let suricata = ["first-org-conf-2015", "honeypot-2018", "wrccdc-2017"]
        .iter()
        .flat_map(|name| lines(shared.join(format!("suricata/{name}.eve.ndjson"))))
        .collect();
    let zeek = ["conn", "dns", "http", "ssl", "files", "x509", "weird", "smtp"]
        .iter()
        .flat_map(|name| lines(shared.join(format!("zeek/zat-0.4.9/{name}.log"))))
        .collect();
    vec![
        (Format::SuricataEve, suricata),
        (Format::Zeek, zeek),
        (Format::Cowrie, lines(shared.join("cowrie/cowrie_local_session.json"))),
        (Format::Falco, lines(root().join("tests/data/falco/events.ndjson"))),
        (Format::Wazuh, lines(root().join("tests/data/wazuh/alerts.json"))),
    ]
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("formats/parse");
    for (format, lines) in inputs() {
        if lines.is_empty() {
            continue;
        }
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(format.name(), |b| {
            b.iter(|| {
                // One state per pass: Zeek headers come before their records.
                let mut state = ParseState::new("bench");
                for line in &lines {
                    let _ = black_box(parse_line(format, black_box(line), &mut state));
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
attackmesh_testkit::criterion_main!(benches);
