use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;

use super::*;
use crate::formats::falco_from_json;
use crate::limits::{MAX_ATTRIBUTES, MAX_DESCRIPTION_BYTES, MAX_ORIGINAL_BYTES};

const NOW_NANOS: u64 = 1_709_528_767_123_456_789;

fn s(text: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::StringValue(text.to_owned())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    }
}

fn int(i: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::IntValue(i)),
    })
}

fn request(resource: Vec<KeyValue>, scope: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: scope.to_owned(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn security_record() -> LogRecord {
    LogRecord {
        time_unix_nano: NOW_NANOS,
        observed_time_unix_nano: NOW_NANOS + 5,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: s("ssh brute force from 203.0.113.9"),
        event_name: "auth.bruteforce".into(),
        attributes: vec![
            kv("security_rule.name", s("SSH brute force")),
            kv("security_rule.uuid", s("5b0c7b1e-rule")),
            kv("security_rule.category", s("credential-access T1110.001")),
            kv("security_rule.ruleset.name", s("auth-rules")),
            kv("security_rule.version", s("1.2.0")),
            kv(
                "security_rule.reference",
                s("https://attack.mitre.org/techniques/T1021/004/"),
            ),
            kv("source.address", s("203.0.113.9")),
            kv("source.port", int(51514)),
            kv("destination.port", s("22")),
            kv("user.name", s("root")),
            kv("process.command_line", s("sshd: root [priv]")),
            kv("process.pid", int(4242)),
            kv("attempts", int(57)),
            kv(
                "tags",
                Some(AnyValue {
                    value: Some(V::ArrayValue(ArrayValue {
                        values: vec![s("ssh").unwrap(), s("auth").unwrap()],
                    })),
                }),
            ),
        ],
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        flags: 1,
        ..Default::default()
    }
}

fn only(records: Vec<OtlpRecord>) -> OtlpEvent {
    assert_eq!(records.len(), 1);
    records.into_iter().next().unwrap().result.unwrap()
}

#[test]
fn a_security_record_maps_every_documented_field() {
    let resource = vec![kv("service.name", s("authwatch")), kv("host.name", s("bastion-1"))];
    let mapped = only(otlp_from_request(request(
        resource,
        "authwatch.rules",
        vec![security_record()],
    )));
    let e = &mapped.event;
    assert_eq!(e.event_type, "auth.bruteforce");
    assert_eq!(e.source_service, "authwatch");
    assert_eq!(e.description, "ssh brute force from 203.0.113.9");
    assert_eq!(e.severity, Severity::High as i32);
    assert_eq!(e.detector_kind, DetectorKind::Other as i32);
    assert_eq!(e.original_format, FORMAT);
    let ts = e.timestamp.unwrap();
    assert_eq!((ts.seconds, ts.nanos), (1_709_528_767, 123_456_789));
    assert_eq!(e.technique_hints, ["T1110.001", "T1021.004"]);
    let source = e.source.clone().unwrap();
    assert_eq!(
        (source.ip.as_str(), source.port, source.user.as_str()),
        ("203.0.113.9", 51514, "root")
    );
    let process = source.process.unwrap();
    assert_eq!(
        (process.pid, process.command_line.as_str()),
        (4242, "sshd: root [priv]")
    );
    let destination = e.destination.clone().unwrap();
    assert_eq!((destination.hostname.as_str(), destination.port), ("bastion-1", 22));
    let attr = |k: &str| e.attributes.get(k).map(String::as_str);
    assert_eq!(attr("security_rule.name"), Some("SSH brute force"));
    assert_eq!(attr("security_rule.ruleset.name"), Some("auth-rules"));
    assert_eq!(attr("security_rule.version"), Some("1.2.0"));
    assert_eq!(attr("rule.id"), Some("5b0c7b1e-rule"), "ECS documents carry rule.id");
    assert_eq!(attr("attempts"), Some("57"));
    assert_eq!(attr("tags"), Some("ssh,auth"));
    assert_eq!(attr("resource.host.name"), Some("bastion-1"));
    assert_eq!(attr("otel.scope.name"), Some("authwatch.rules"));
    assert!(e.indicators.iter().any(|i| i.value == "203.0.113.9"));
    assert!(e.indicators.iter().any(|i| i.value == "sshd: root [priv]"));
    assert_eq!(
        mapped.traceparent.as_deref(),
        Some("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")
    );
    assert_eq!(attr("trace.id"), Some("0102030405060708090a0b0c0d0e0f10"));
    assert_eq!(attr("span.id"), Some("0102030405060708"));
    // The original is the record alone, as OTLP/JSON: it maps back to the same event.
    let again = only(otlp_from_json(&e.original).unwrap());
    assert_eq!(again.event, mapped.event);
    assert!(crate::validate::detection_event(e).is_ok());
}

#[test]
fn protobuf_and_json_of_one_record_are_one_event() {
    let req = request(vec![kv("service.name", s("svc"))], "", vec![security_record()]);
    let from_proto = only(otlp_from_protobuf(&req.encode_to_vec()).unwrap());
    // OTLP/JSON as the specification writes it: camelCase, hex ids, int64 as strings.
    let json = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeLogs": [{"scope": {}, "logRecords": [serde_json::to_value(security_record()).unwrap()]}]
    }]});
    let text = json.to_string();
    assert!(
        text.contains("\"traceId\":\"0102030405060708090a0b0c0d0e0f10\""),
        "{text}"
    );
    assert!(text.contains("\"timeUnixNano\":\"1709528767123456789\""), "{text}");
    let from_json = only(otlp_from_json(&text).unwrap());
    assert_eq!(from_json, from_proto);
    // Numbers where strings are usual are read too.
    let numeric = text.replace("\"1709528767123456789\"", "1709528767123456789");
    assert_eq!(
        only(otlp_from_json(&numeric).unwrap()).event.timestamp,
        from_proto.event.timestamp
    );
}

/// The alert falcosidekick's OTLP logs output turns into a log record.
fn falcosidekick(alert: &serde_json::Value, extra: Vec<KeyValue>) -> ExportLogsServiceRequest {
    let text = |k: &str| alert[k].as_str().unwrap_or_default().to_owned();
    let tags: Vec<&str> = alert["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    let mut attributes = vec![
        kv("priority", s(&text("priority"))),
        kv("source", s(&text("source"))),
        kv("rule", s(&text("rule"))),
        kv("hostname", s(&text("hostname"))),
        kv("tags", s(&tags.join(","))),
        kv("timestamp", s("2024-03-04 05:06:07.123456789 +0000 UTC")),
    ];
    attributes.extend(extra);
    let record = LogRecord {
        time_unix_nano: NOW_NANOS + 1_000_000_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: s(&text("output")),
        attributes,
        ..Default::default()
    };
    request(
        vec![kv("service.name", s("falco")), kv("service.version", s("v0.1.0"))],
        "falco",
        vec![record],
    )
}

fn falco_alert() -> serde_json::Value {
    serde_json::json!({
        "hostname": "node-7", "output": "Shell spawned in a container (user=root)", "priority": "Warning",
        "rule": "Terminal shell in container", "source": "syscall",
        "tags": ["container", "mitre_execution", "T1059"], "time": "2024-03-04T05:06:07.123456789Z",
        "output_fields": {"proc.cmdline": "bash -i", "proc.pid": 4242, "user.name": "root", "fd.sip": "10.0.0.9"}
    })
}

#[test]
fn falcosidekick_records_parse_as_the_falco_alert() {
    let alert = falco_alert();
    let over_http = falco_from_json(&alert.to_string()).unwrap();
    let mapped = only(otlp_from_request(falcosidekick(&alert, Vec::new()))).event;
    assert_eq!(mapped.original_format, "falco");
    for (name, a, b) in [
        ("event_type", &mapped.event_type, &over_http.event_type),
        ("source_service", &mapped.source_service, &over_http.source_service),
        ("description", &mapped.description, &over_http.description),
    ] {
        assert_eq!(a, b, "{name}");
    }
    assert_eq!(
        mapped.severity, over_http.severity,
        "from `priority`, not the INFO level"
    );
    assert_eq!(
        mapped.timestamp, over_http.timestamp,
        "from `timestamp`, not the send time"
    );
    assert_eq!(mapped.technique_hints, over_http.technique_hints);
    assert_eq!(mapped.detector_kind, over_http.detector_kind);
    for key in ["rule", "priority", "source", "tags", "hostname"] {
        assert_eq!(mapped.attributes.get(key), over_http.attributes.get(key), "{key}");
    }
    // A sender that adds the output fields as attributes gets the whole alert.
    let fields = vec![
        kv("proc.cmdline", s("bash -i")),
        kv("proc.pid", int(4242)),
        kv("user.name", s("root")),
        kv("fd.sip", s("10.0.0.9")),
    ];
    let full = only(otlp_from_request(falcosidekick(&alert, fields))).event;
    assert_eq!(full.attributes, over_http.attributes);
    assert_eq!(full.source, over_http.source);
    assert_eq!(full.destination, over_http.destination);
    assert_eq!(full.indicators, over_http.indicators);
    let again = only(otlp_from_request(falcosidekick(&alert, Vec::new()))).event;
    assert_eq!(again.event_id, mapped.event_id, "a record sent twice is one event");
}

#[test]
fn falcosidekick_records_with_bad_fields_are_rejected_by_name() {
    let mut req = falcosidekick(&falco_alert(), Vec::new());
    let attrs = &mut req.resource_logs[0].scope_logs[0].log_records[0].attributes;
    attrs[5] = kv("timestamp", s("last tuesday"));
    let err = otlp_from_request(req.clone()).remove(0).result.unwrap_err();
    assert!(err.to_string().contains("`timestamp`"), "{err}");
    let attrs = &mut req.resource_logs[0].scope_logs[0].log_records[0].attributes;
    attrs[5] = kv("timestamp", int(5));
    assert!(otlp_from_request(req.clone()).remove(0).result.is_err());
    let attrs = &mut req.resource_logs[0].scope_logs[0].log_records[0].attributes;
    attrs[0] = kv("priority", s("Urgent"));
    attrs.remove(5);
    let err = otlp_from_request(req).remove(0).result.unwrap_err();
    assert!(err.to_string().contains("`priority`"), "{err}");
}

fn one_record(record: LogRecord) -> Result<OtlpEvent, ParseError> {
    otlp_from_request(request(Vec::new(), "", vec![record]))
        .remove(0)
        .result
}

#[test]
fn missing_and_odd_fields_have_defaults_or_named_errors() {
    let bare = one_record(LogRecord {
        observed_time_unix_nano: NOW_NANOS,
        ..Default::default()
    })
    .unwrap()
    .event;
    assert_eq!(bare.event_type, DEFAULT_EVENT_TYPE);
    assert_eq!(bare.source_service, FORMAT);
    assert_eq!(bare.description, DEFAULT_EVENT_TYPE);
    assert_eq!(bare.severity, Severity::Unspecified as i32);
    assert_eq!(
        bare.timestamp.map(|t| t.seconds),
        Some(1_709_528_767),
        "observed time stands in"
    );
    assert!(bare.source.is_none() && bare.destination.is_none());

    let err = one_record(LogRecord::default()).unwrap_err();
    assert_eq!(err.to_string(), "missing field `time_unix_nano`");
    let err = one_record(LogRecord {
        time_unix_nano: NOW_NANOS,
        severity_number: 99,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("field `severity_number` has unknown value `99`"),
        "{err}"
    );

    // Timestamps outside what validation allows map, and validation names the field.
    let future = one_record(LogRecord {
        time_unix_nano: u64::MAX,
        ..Default::default()
    })
    .unwrap()
    .event;
    let violations = crate::validate::detection_event(&future).unwrap_err();
    assert_eq!(violations[0].field, "timestamp");

    // Ids of the wrong length, or all zero, are no trace (as OTLP asks).
    for (trace_id, span_id) in [
        (vec![1; 15], vec![1; 8]),
        (vec![0; 16], vec![1; 8]),
        (vec![1; 16], vec![]),
    ] {
        let mapped = one_record(LogRecord {
            time_unix_nano: NOW_NANOS,
            trace_id,
            span_id,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(mapped.traceparent, None);
    }

    for (text, severity) in [
        ("Informational", Severity::Low),
        ("WARN2", Severity::Medium),
        ("err", Severity::High),
        ("FATAL4", Severity::Critical),
        ("purple", Severity::Unspecified),
    ] {
        assert_eq!(severity_from_text(text), severity, "{text}");
    }
}

#[test]
fn json_records_with_wrong_types_are_rejected_alone() {
    let good = serde_json::json!({"timeUnixNano": "1709528767000000000", "body": {"stringValue": "fine"}});
    let bad = [
        (serde_json::json!({"timeUnixNano": "soon"}), "timeUnixNano"),
        (serde_json::json!({"timeUnixNano": "1", "traceId": 7}), "traceId"),
        (serde_json::json!({"timeUnixNano": "1", "spanId": "zz"}), "spanId"),
        (
            serde_json::json!({"timeUnixNano": "1", "body": {"intValue": "x"}}),
            "body",
        ),
        (
            serde_json::json!({"timeUnixNano": "1", "severityNumber": "WARN"}),
            "severityNumber",
        ),
        (
            serde_json::json!({"timeUnixNano": "1", "attributes": {"k": "v"}}),
            "attributes",
        ),
    ];
    for (record, field) in bad {
        let body = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [good, record]}]}]});
        let mapped = otlp_from_json(&body.to_string()).unwrap();
        assert_eq!(mapped.len(), 2);
        assert!(mapped[0].result.is_ok());
        assert_eq!(mapped[1].path, "resourceLogs[0].scopeLogs[0].logRecords[1]");
        let err = mapped[1].result.as_ref().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    // A bad resource rejects the records under it, naming the resource.
    let body =
        serde_json::json!({"resourceLogs": [{"resource": {"attributes": 5}, "scopeLogs": [{"logRecords": [good]}]}]});
    let err = otlp_from_json(&body.to_string()).unwrap()[0]
        .result
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(err.contains("resourceLogs[0].resource.attributes"), "{err}");
    // Shapes that hide the records fail whole.
    for body in [
        "[]",
        "{\"resourceLogs\": {}}",
        "{\"resourceLogs\": [{\"scopeLogs\": 3}]}",
        "{",
        "\"x\"",
    ] {
        assert!(otlp_from_json(body).is_err(), "{body}");
    }
    assert!(otlp_from_json("{}").unwrap().is_empty());
    assert!(otlp_from_protobuf(b"\xff\xff\xff").is_err());
}

#[test]
fn hostile_sizes_and_depths_stay_within_the_limits() {
    let mut deep = s("leaf").unwrap();
    for _ in 0..60 {
        deep = AnyValue {
            value: Some(V::KvlistValue(KeyValueList {
                values: vec![kv("k", Some(deep))],
            })),
        };
    }
    let mut attributes: Vec<KeyValue> = (0..5000).map(|i| kv(&format!("a{i}"), s(&"v".repeat(2000)))).collect();
    attributes.push(kv("deep", Some(deep)));
    attributes.push(kv(&"k".repeat(500), s("long key")));
    attributes.push(kv("", s("no key")));
    attributes.push(kv(
        "nan",
        Some(AnyValue {
            value: Some(V::DoubleValue(f64::NAN)),
        }),
    ));
    attributes.push(kv("none", None));
    let record = LogRecord {
        time_unix_nano: NOW_NANOS,
        body: s(&"x".repeat(3 * 1024 * 1024)),
        event_name: "e".repeat(1000),
        attributes,
        ..Default::default()
    };
    let event = one_record(record).unwrap().event;
    assert!(event.attributes.len() <= MAX_ATTRIBUTES);
    assert!(event.description.len() <= MAX_DESCRIPTION_BYTES);
    assert!(event.original.len() <= MAX_ORIGINAL_BYTES);
    assert_eq!(
        event.attributes.get("original_truncated").map(String::as_str),
        Some("true")
    );
    assert!(crate::validate::detection_event(&event).is_ok());
}

#[test]
fn technique_ids_are_found_in_text_and_urls() {
    assert_eq!(
        technique_ids("https://attack.mitre.org/techniques/T1059/001/ and t1078, T1110.003; TA0001"),
        ["T1059.001", "t1078", "T1110.003"]
    );
    assert!(technique_ids("no ids here").is_empty());
}

#[test]
fn the_fuzz_seeds_map_to_valid_events() {
    let seeds: [&[u8]; 3] = [
        include_bytes!("../../../fuzz/corpus/otlp_logs/falcosidekick.pb"),
        include_bytes!("../../../fuzz/corpus/otlp_logs/security_rule.pb"),
        include_bytes!("../../../fuzz/corpus/otlp_logs/otlp.json"),
    ];
    let mut formats = Vec::new();
    for seed in seeds {
        let (which, rest) = seed.split_first().unwrap();
        let records = if which % 2 == 0 {
            otlp_from_protobuf(rest).unwrap()
        } else {
            otlp_from_json(std::str::from_utf8(rest).unwrap()).unwrap()
        };
        for record in records.into_iter().filter_map(|r| r.result.ok()) {
            let violations = crate::validate::detection_event(&record.event)
                .err()
                .unwrap_or_default();
            assert!(violations.iter().all(|v| v.field == "timestamp"), "{violations:?}");
            formats.push(record.event.original_format);
        }
    }
    assert_eq!(formats, ["falco", "otlp", "otlp"]);
}
