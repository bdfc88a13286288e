//! Tests of reading streams: error reporting with line numbers, offsets, resuming from a
//! checkpoint, follow mode, deterministic ids and size limits.

use std::io::{BufRead, Cursor};

use super::tests::{assert_valid, fixture, read_all, samples, shared_data};
use super::*;
use crate::limits::*;

#[test]
fn malformed_lines_are_reported_and_reading_goes_on() {
    let good = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"alert","src_ip":"10.0.0.1","alert":{"signature":"x","severity":1}}"#;
    let mut input = Vec::new();
    input.extend_from_slice(format!("{good}\n").as_bytes());
    input.extend_from_slice(b"{\"timestamp\": oops}\n");
    input.extend_from_slice(b"{\"event_type\":\"alert\"}\n");
    input.extend_from_slice(b"{\"timestamp\":\"2024-05-01T10:00:00Z\",\"event_type\":\"alert\",\"x\":\"\xff\"}\n");
    input.extend_from_slice(&vec![b'a'; MAX_LINE_BYTES + 10]);
    input.push(b'\n');
    input.extend_from_slice(b"[1,2]\r\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(good.as_bytes());
    let records: Vec<Record> = Reader::new(Format::SuricataEve, Cursor::new(&input), "mem").collect();
    let messages: Vec<String> = records
        .iter()
        .map(|r| match &r.result {
            Ok(Some(_)) => "event".to_owned(),
            Ok(None) => "none".to_owned(),
            Err(error) => error.to_string(),
        })
        .collect();
    assert_eq!(
        messages,
        vec![
            "event".to_owned(),
            "line 2: invalid JSON at column 15: expected value".to_owned(),
            "line 3: missing field `timestamp`".to_owned(),
            "line 4: invalid UTF-8 at byte 62".to_owned(),
            format!("line 5: line longer than {MAX_LINE_BYTES} bytes"),
            "line 6: expected a JSON object, found an array".to_owned(),
            "none".to_owned(),
            "event".to_owned(),
        ]
    );
    assert_eq!(records[0].offset, 0);
    for pair in records.windows(2) {
        assert_eq!(pair[0].end_offset, pair[1].offset, "offsets are contiguous");
    }
    assert_eq!(records.last().map(|r| r.end_offset), Some(input.len() as u64));
    assert_eq!(records[4].result.as_ref().err().and_then(ParseError::line), Some(5));
}

fn ids_and_offsets(records: &[Record]) -> Vec<(u64, u64, u64, Option<String>)> {
    records
        .iter()
        .map(|r| {
            let id = r
                .result
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|e| e.event_id.clone());
            (r.line, r.offset, r.end_offset, id)
        })
        .collect()
}

#[test]
fn resuming_yields_exactly_the_remaining_records() {
    let mut files = vec![(Format::Falco, fixture("falco/events.ndjson"))];
    if let Some(dir) = shared_data() {
        let samples = dir.join("samples");
        files.push((Format::SuricataEve, samples.join("suricata/honeypot-2018.eve.ndjson")));
        files.push((Format::Zeek, samples.join("zeek/zat-0.4.9/conn.log")));
        files.push((Format::Zeek, samples.join("zeek/zat-0.4.9/dhcp.log.gz")));
        files.push((Format::Cowrie, samples.join("cowrie/cowrie_local_session.json")));
    }
    for (format, path) in files {
        let all = read_all(format, &path);
        let expected = ids_and_offsets(&all);
        for cut in [0, 1, 5, 8, all.len() / 2, all.len() - 1, all.len()] {
            let offset = if cut == 0 { 0 } else { all[cut - 1].end_offset };
            let resumed: Vec<Record> = resume_path(format, &path, offset).expect("resumes").collect();
            assert_eq!(
                ids_and_offsets(&resumed),
                expected[cut..],
                "{} from {offset}",
                path.display()
            );
        }
        let middle = all[all.len() / 2].offset + 1;
        let error = resume_path(format, &path, middle).err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("not at the start of a line")));
        let total = all.last().map_or(0, |r| r.end_offset);
        assert!(resume_path(format, &path, total + 1).is_err());
    }
}

#[test]
fn saved_state_resumes_a_zeek_stream() {
    let Some(path) = samples("zeek/zat-0.4.9/dns.log") else {
        return;
    };
    let mut reader = Reader::new(Format::Zeek, open_path(&path).expect("opens"), "dns.log");
    let first: Vec<Record> = reader.by_ref().take(12).collect();
    let (offset, state, next) = (reader.offset(), reader.state().clone(), reader.next_line());
    let rest: Vec<Record> = reader.collect();
    let reopened = open_path_at(&path, offset).expect("opens at offset");
    let resumed: Vec<Record> = Reader::resume(Format::Zeek, reopened, "dns.log", offset, state)
        .with_first_line(next)
        .collect();
    assert_eq!(first.len(), 12);
    assert_eq!(ids_and_offsets(&resumed), ids_and_offsets(&rest));
    let scanned = scan_prefix(Format::Zeek, open_path(&path).expect("opens"), offset).expect("scans");
    assert_eq!(scanned.lines, next - 1);
    assert_eq!(scanned.state.zeek_header().fields().len(), 23);
}

#[test]
fn follow_mode_holds_back_an_unterminated_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("eve.json");
    let line = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"alert","alert":{"signature":"x"}}"#;
    let (head, tail) = line.split_at(30);
    std::fs::write(&path, format!("{line}\n{head}")).expect("writes");
    let file = std::fs::OpenOptions::new().append(true).open(&path).expect("appends");
    let mut reader = Reader::new(Format::SuricataEve, open_path(&path).expect("opens"), "eve.json").follow(true);
    assert!(reader.next().is_some_and(|r| r.result.is_ok_and(|e| e.is_some())));
    assert!(reader.next().is_none(), "half a line is not parsed");
    std::io::Write::write_all(&mut &file, format!("{tail}\n").as_bytes()).expect("appends");
    let second = reader.next().expect("completed line");
    assert_eq!((second.line, second.offset), (2, line.len() as u64 + 1));
    assert!(second.result.is_ok_and(|e| e.is_some()));
    let unterminated = Reader::new(Format::SuricataEve, Cursor::new(line), "x").collect::<Vec<_>>();
    assert_eq!(
        unterminated.len(),
        1,
        "outside follow mode the last line is parsed as is"
    );
}

#[test]
fn event_ids_are_deterministic() {
    let line = r#"{"eventid":"cowrie.login.failed","username":"root","timestamp":"2024-02-03T04:05:06Z"}"#;
    let id = |text: &str, format: Format| {
        parse_line(format, text, &mut ParseState::new("a"))
            .ok()
            .flatten()
            .map(|e| e.event_id)
    };
    let first = id(line, Format::Cowrie).expect("event");
    assert_eq!(id(line, Format::Cowrie), Some(first.clone()));
    assert_eq!(
        id(&format!("{line}\r\n"), Format::Cowrie),
        Some(first.clone()),
        "terminators do not count"
    );
    let other = id(&line.replace("root", "admin"), Format::Cowrie).expect("event");
    assert_ne!(first, other);
    let mut state = ParseState::new("/elsewhere/cowrie.json");
    let moved = parse_line(Format::Cowrie, line, &mut state)
        .ok()
        .flatten()
        .map(|e| e.event_id);
    assert_eq!(moved, Some(first), "the file's location does not change the id");
}

#[test]
fn oversized_records_are_cut_to_the_limits() {
    let mut record = serde_json::json!({
        "timestamp": "2024-05-01T10:00:00Z",
        "event_type": "alert",
        "src_ip": "10.0.0.1",
        "alert": {
            "signature": "S".repeat(10_000),
            "signature_id": 1,
            "metadata": {"mitre_technique_id": (0..100).map(|i| format!("T{:04}", 1000 + i)).collect::<Vec<_>>()},
        },
        "payload": "é".repeat(40_000),
    });
    let extra = record.as_object_mut().expect("object");
    for i in 0..300 {
        extra.insert(format!("k{i:03}"), serde_json::json!(i));
    }
    extra.insert("x".repeat(200), serde_json::json!("long key"));
    let line = record.to_string();
    assert!(line.len() > MAX_ORIGINAL_BYTES);
    let event = parse_line(Format::SuricataEve, &line, &mut ParseState::default())
        .ok()
        .flatten()
        .expect("event");
    assert_valid(&event);
    assert_eq!(event.attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(event.attributes["original_truncated"], "true");
    assert_eq!(
        event.attributes["alert.signature_id"], "1",
        "priority keys survive the cap"
    );
    assert!(event.attributes.contains_key("attributes_dropped"));
    assert_eq!(event.description.len(), MAX_DESCRIPTION_BYTES);
    assert_eq!(event.technique_hints.len(), MAX_TECHNIQUE_HINTS);
    assert!(line.starts_with(&event.original));
}

#[test]
fn scan_prefix_rejects_offsets_past_the_end() {
    let input = "#separator \\x09\n#fields\tts\n1.0\n";
    let point = scan_prefix(Format::Zeek, Cursor::new(input), 27).expect("scans");
    assert_eq!(point.lines, 2);
    assert_eq!(point.state.zeek_header().fields(), ["ts".to_owned()]);
    let beyond = scan_prefix(Format::Zeek, Cursor::new(input), 100)
        .err()
        .map(|e| e.to_string());
    assert!(beyond.is_some_and(|e| e.contains("beyond the end")));
    let lines: Vec<_> = Cursor::new(input).lines().collect();
    assert_eq!(lines.len(), 3);
}
