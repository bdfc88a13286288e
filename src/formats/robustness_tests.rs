//! Parsers must never panic: mutated real lines and arbitrary bytes go through every format.

use std::io::Cursor;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::tests::{assert_valid, shared_data};
use super::*;

/// Lines to mutate: the fixtures, a Zeek TSV header and records, and the shared samples.
fn corpus() -> &'static Vec<String> {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![
            root.join("tests/data/falco/events.ndjson"),
            root.join("tests/data/wazuh/alerts.json"),
        ];
        if let Some(data) = shared_data() {
            let samples = data.join("samples");
            for name in [
                "suricata/first-org-conf-2015.eve.ndjson",
                "cowrie/cowrie_local_session.json",
                "zeek/zat-0.4.9/notice.log",
                "zeek/zat-0.4.9/dns.log",
                "zeek/zat-0.4.9/json/files.log",
            ] {
                files.push(samples.join(name));
            }
        }
        let mut lines: Vec<String> = files
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .flat_map(|text| text.lines().take(40).map(str::to_owned).collect::<Vec<_>>())
            .collect();
        lines.push(r#"{"event_id":"e","timestamp":"2024-01-01T00:00:00Z","event_type":"x","source":{"ip":"10.0.0.1","port":22}}"#.to_owned());
        lines
    })
}

fn zeek_state() -> ParseState {
    let mut state = ParseState::new("conn.log");
    for header in [
        "#separator \\x09",
        "#set_separator\t,",
        "#fields\tts\tid.orig_h\tid.orig_p\tquery\tanswers",
        "#types\ttime\taddr\tport\tstring\tvector[string]",
    ] {
        let _ = parse_line(Format::Zeek, header, &mut state);
    }
    state
}

fn mutate(line: &str, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut bytes = line.as_bytes().to_vec();
    for &(op, position, byte) in edits {
        let at = if bytes.is_empty() {
            0
        } else {
            position % (bytes.len() + 1)
        };
        match op % 4 {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.truncate(at),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_lines_never_panic(
        index in any::<usize>(),
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..8),
    ) {
        let lines = corpus();
        let line = &lines[index % lines.len()];
        let mutated = mutate(line, &edits);
        let text = String::from_utf8_lossy(&mutated);
        for format in Format::ALL {
            let mut state = zeek_state();
            if let Ok(Some(event)) = parse_line(format, &text, &mut state)
                && format != Format::Ndjson
            {
                assert_valid(&event);
            }
        }
        let records: Vec<Record> = Reader::new(Format::Zeek, Cursor::new(&mutated), "x").collect();
        prop_assert!(!records.is_empty() || mutated.is_empty());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for format in Format::ALL {
            let _ = parse_line(format, &text, &mut zeek_state());
            let records: Vec<Record> = Reader::new(format, Cursor::new(&bytes), "x").collect();
            let ends: Vec<u64> = records.iter().map(|r| r.end_offset).collect();
            prop_assert!(ends.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
