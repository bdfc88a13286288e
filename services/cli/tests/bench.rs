//! `attackmesh bench pipeline` end to end: the built binary runs a small benchmark in both
//! layouts (services as child processes with the file sink, services in one process with the
//! HEC sink) and prints one JSON report whose figures are present and plausible, and whose sink
//! really holds every event. Timing goals are not asserted here.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

/// The binary under test: `TEST_ATTACKMESH_BIN` when set, else the one cargo built for this test.
fn binary() -> String {
    std::env::var("TEST_ATTACKMESH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_attackmesh").to_owned())
}

fn bench(extra: &[&str]) -> Value {
    let output = Command::new(binary())
        .args(["bench", "pipeline", "--events", "2000", "--batch", "100", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object expected, got:\n{stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn positive(v: &Value, path: &str) -> f64 {
    let x = v.pointer(path).and_then(Value::as_f64);
    assert!(x.is_some_and(|x| x > 0.0), "{path} should be a positive number in {v}");
    x.unwrap()
}

fn check_figures(v: &Value, rss_keys: &[&str]) {
    assert_eq!(v["events"], 2000, "{v}");
    positive(v, "/seconds");
    positive(v, "/throughput_eps");
    let p50 = positive(v, "/latency_ms/p50");
    let p99 = positive(v, "/latency_ms/p99");
    let p999 = positive(v, "/latency_ms/p999");
    assert!(p50 <= p99 && p99 <= p999, "{v}");
    for key in rss_keys {
        positive(v, &format!("/rss_mb/{key}"));
        // 10 ms of CPU resolution: a small run may show 0 µs for an idle no-op service.
        let cpu = v.pointer(&format!("/cpu_us_per_event/{key}")).and_then(Value::as_f64);
        assert!(cpu.is_some_and(|c| c >= 0.0), "cpu_us_per_event/{key} missing in {v}");
    }
    positive(v, "/cpu_us_per_event/total");
}

#[test]
fn separate_processes_with_the_file_sink() {
    let report = bench(&["--processes", "separate"]);
    check_figures(&report, &["attribution", "enrichment", "siem_export"]);
    check_figures(&report["baseline"], &["attribution", "enrichment", "siem_export"]);
    assert_eq!(report["delivered"], 2000, "{report}");
    let after = report["delivered_after_seconds"].as_f64();
    assert!(
        after.is_some_and(|s| s >= 0.0),
        "delivered_after_seconds missing in {report}"
    );
    assert_eq!(report["processes"], "separate");
    assert_eq!(report["sink"], "file");
    assert_eq!(report["rate"], Value::Null);
    assert_eq!(report["batch"], 100);
    positive(&report, "/ratio_to_baseline/throughput");
    positive(&report, "/ratio_to_baseline/latency_p99");
    positive(&report, "/ratio_to_baseline/cpu_per_event");
}

#[test]
fn one_process_with_the_hec_sink() {
    let report = bench(&["--processes", "single", "--sink", "http"]);
    check_figures(&report, &["all"]);
    check_figures(&report["baseline"], &["all"]);
    assert_eq!(report["delivered"], 2000, "{report}");
    assert_eq!(report["processes"], "single");
    assert_eq!(report["sink"], "http");
    positive(&report, "/ratio_to_baseline/throughput");
}

#[test]
fn replays_a_real_suricata_file_beside_the_generated_events() {
    let Some(data) = attackmesh_testkit::data::shared_data() else {
        return;
    };
    let file = data.join("samples/suricata/first-org-conf-2015.eve.ndjson");
    let spec = format!("suricata-eve:{}", file.display());
    let report = bench(&[
        "--processes",
        "single",
        "--no-baseline",
        "--file-shape",
        "ecs",
        "--replay",
        &spec,
    ]);
    assert_eq!(report["workload"], "synthetic");
    assert_eq!(report["file_shape"], "ecs");
    check_figures(&report, &["all"]);
    let replay = &report["replay"];
    assert_eq!(replay["workload"], spec.as_str(), "{report}");
    check_figures(replay, &["all"]);
    // 2000 events from a file of 136 alerts: every copy is delivered, none taken for a resend.
    assert_eq!(replay["delivered"], 2000, "{report}");
    assert_eq!(replay["file_shape"], "ecs");
    assert_eq!(replay["replay"], Value::Null);
}
