//! Pins what every parser makes of every real sample, byte for byte.
//!
//! `tests/data/formats-snapshot.tsv` holds, per sample file and format, the number of records,
//! events and errors and a SHA-256 over every record's result in order: the event as canonical
//! JSON with object keys sorted (attributes are a map), `skip` for a line without an event, or
//! the error text. Line numbers and offsets are part of it. The file was written by this test
//! (`ATTACKMESH_WRITE_FORMATS_SNAPSHOT=1 cargo test -p attackmesh --lib formats_snapshot`) from
//! the parsers as they were before the single-pass Suricata parser and the borrowing event
//! builder (main at 87d8081); `tests/data/suricata/edge-cases.ndjson` adds hand-made records
//! (duplicate keys, escapes, extreme numbers, deep nesting, every error) to the real samples, so any change to an event id, attribute, indicator, description or error message
//! shows here. The rows of `tests/data/json-edge-cases.ndjson` (the same kind of hostile input
//! for Zeek JSON, Cowrie, Falco and Wazuh) were written by the parsers as they were before those
//! four read the borrowed tree (main at 0236b08). Samples from the shared data folder are skipped when it is absent; the Falco and
//! Wazuh fixtures are always checked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::tests::{fixture, read_all, shared_data};
use super::*;

const SNAPSHOT: &str = "tests/data/formats-snapshot.tsv";

/// Every (format, label, path) the snapshot covers; labels are stable across machines.
fn inputs() -> Vec<(Format, String, PathBuf)> {
    let mut inputs = vec![
        (
            Format::Falco,
            "fixture/falco/events.ndjson".to_owned(),
            fixture("falco/events.ndjson"),
        ),
        (
            Format::Wazuh,
            "fixture/wazuh/alerts.json".to_owned(),
            fixture("wazuh/alerts.json"),
        ),
        (
            Format::SuricataEve,
            "fixture/suricata/edge-cases.ndjson".to_owned(),
            fixture("suricata/edge-cases.ndjson"),
        ),
    ];
    // Hostile JSON (not an object, the raw-value marker, repeated and escaped keys, timestamps
    // of every type, extreme numbers, deep nesting) through every parser of JSON lines.
    for format in [Format::Zeek, Format::Cowrie, Format::Falco, Format::Wazuh] {
        inputs.push((
            format,
            "fixture/json-edge-cases.ndjson".to_owned(),
            fixture("json-edge-cases.ndjson"),
        ));
    }
    let Some(data) = shared_data() else {
        return inputs;
    };
    let mut shared = |format: Format, relative: &str| {
        let mut files = Vec::new();
        collect(&data.join(relative), &mut files);
        for path in files {
            let label = path.strip_prefix(&data).unwrap_or(&path).to_string_lossy().into_owned();
            let wanted = match format {
                Format::SuricataEve => label.ends_with(".ndjson"),
                Format::Zeek => label.ends_with(".log") || label.ends_with(".log.gz"),
                Format::Cowrie => label.ends_with(".json"),
                Format::Evtx => label.ends_with(".evtx"),
                _ => false,
            };
            if wanted {
                inputs.push((format, label, path));
            }
        }
    };
    shared(Format::SuricataEve, "samples/suricata");
    shared(Format::Zeek, "samples/zeek/zat-0.4.9");
    shared(Format::Cowrie, "samples/cowrie");
    shared(Format::Evtx, "samples/evtx-attack-samples");
    inputs
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// One snapshot row: `format label records events errors sha256`.
/// With `ATTACKMESH_DUMP_FORMATS_SNAPSHOT=DIR` the hashed text of every file is also written
/// under `DIR`, to diff two versions of the parsers record by record.
fn row(format: Format, label: &str, path: &Path) -> String {
    let mut hash = Sha256::new();
    let mut dump = String::new();
    let (mut records, mut events, mut errors) = (0, 0, 0);
    for record in read_all(format, path) {
        records += 1;
        let text = match &record.result {
            Ok(Some(event)) => {
                events += 1;
                let mut value = serde_json::to_value(event).expect("events serialize");
                value.sort_all_objects();
                value.to_string()
            }
            Ok(None) => "skip".to_owned(),
            Err(error) => {
                errors += 1;
                error.to_string()
            }
        };
        let text = format!("{} {} {} {text}\n", record.line, record.offset, record.end_offset);
        hash.update(&text);
        dump.push_str(&text);
    }
    if let Some(dir) = std::env::var_os("ATTACKMESH_DUMP_FORMATS_SNAPSHOT") {
        let file = Path::new(&dir).join(format!("{format}-{}.txt", label.replace('/', "_")));
        std::fs::write(file, dump).expect("dump written");
    }
    let digest = hash.finalize().iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    });
    format!("{format}\t{label}\t{records}\t{events}\t{errors}\t{digest}")
}

#[test]
fn formats_snapshot_of_every_sample_is_unchanged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    let rows: Vec<String> = inputs()
        .iter()
        .map(|(format, label, path)| row(*format, label, path))
        .collect();
    if std::env::var_os("ATTACKMESH_WRITE_FORMATS_SNAPSHOT").is_some() {
        std::fs::write(&path, rows.join("\n") + "\n").expect("snapshot written");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("snapshot readable");
    let expected: std::collections::HashMap<(&str, &str), &str> = expected
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            Some(((parts.next()?, parts.next()?), line))
        })
        .collect();
    let mut checked = 0;
    for row in &rows {
        let mut parts = row.splitn(3, '\t');
        let key = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let wanted = expected
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} is not in {SNAPSHOT}"));
        assert_eq!(row, wanted, "the parsed events of {} changed", key.1);
        checked += 1;
    }
    assert!(checked >= 3, "the fixtures are always checked");
    if shared_data().is_some() {
        assert_eq!(
            checked,
            expected.len(),
            "every sample of {SNAPSHOT} was found and checked"
        );
    }
}

/// A shipper sends the events of a batch as [`crate::codec::EncodedIngest`], each encoded where
/// it was parsed: the bytes must be the `IngestRequest` of those events, for every sample.
#[test]
fn encoded_ingest_of_every_sample_is_the_ingest_request() {
    use prost::Message as _;

    use crate::{codec::EncodedIngest, proto::IngestRequest};

    let mut batches = 0;
    for (format, label, path) in inputs() {
        let events: Vec<_> = read_all(format, &path)
            .into_iter()
            .filter_map(|record| record.result.ok().flatten())
            .collect();
        for chunk in events.chunks(500) {
            let request = IngestRequest {
                batch_id: u64::MAX - batches,
                events: chunk.to_vec(),
                trace_context: [("traceparent".to_owned(), "00-ab-cd-01".to_owned())].into(),
            };
            let encoded = EncodedIngest::from(request.clone());
            assert_eq!(encoded.encoded_len(), request.encoded_len(), "{label}");
            assert_eq!(encoded.encode_to_vec(), request.encode_to_vec(), "{label}");
            assert_eq!(
                EncodedIngest::decode(request.encode_to_vec().as_slice()).ok(),
                Some(encoded),
                "{label}"
            );
            batches += 1;
        }
    }
    assert!(batches >= 3, "the fixtures are always checked");
    // Hostile events: empty, a huge attribute, characters at the edges of Unicode.
    let mut hostile = crate::proto::DetectionEvent {
        event_id: "é\u{0}\u{10ffff}".into(),
        ..Default::default()
    };
    hostile.attributes.insert(String::new(), "x".repeat(70_000));
    let request = IngestRequest {
        batch_id: 0,
        events: vec![hostile, Default::default()],
        trace_context: Default::default(),
    };
    let encoded = EncodedIngest::from(request.clone());
    assert_eq!(encoded.encode_to_vec(), request.encode_to_vec());
    assert_eq!(
        IngestRequest::decode(encoded.encode_to_vec().as_slice()).ok(),
        Some(request)
    );
}
