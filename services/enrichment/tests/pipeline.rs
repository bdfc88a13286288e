//! Detector → enrichment → attribution → siem-export (file sink), over real gRPC on 127.0.0.1:
//! what a detector author and a SOC engineer see.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use attackmesh::{
    formats::Format,
    proto::{AckStatus, AttributionStatus, EnrichRequest, IngestRequest},
};
use attackmesh_enrichment::shipper::{ShipOptions, ship};
use attackmesh_testkit::{
    channel, latest, port_scan, shared_data, wait_for_sink, wait_health, wait_serving, with_token,
};
use common::*;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

async fn ship_files(
    cluster: &Cluster,
    format: Format,
    paths: Vec<std::path::PathBuf>,
) -> attackmesh_enrichment::shipper::Summary {
    let mut options = ShipOptions::new(format, paths, cluster.endpoint());
    options.token = Some(DETECTOR_TOKEN.into());
    options.batch = 16;
    options.checkpoint_dir = Some(cluster.dir.path().join("checkpoints"));
    ship(options, CancellationToken::new()).await.unwrap()
}

/// Ships every file and checks that each record arrives enriched exactly once.
async fn ship_and_check(cluster: &Cluster, files: &[(Format, Vec<std::path::PathBuf>)]) {
    let mut records = std::collections::BTreeMap::new();
    for (format, paths) in files {
        for path in paths {
            for (id, n) in expected_records(*format, path) {
                *records.entry(id).or_insert(0) += n;
            }
        }
        let summary = ship_files(cluster, *format, paths.clone()).await;
        assert!(!summary.interrupted);
    }
    assert!(!records.is_empty());
    let ids: BTreeSet<String> = records.keys().cloned().collect();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    let counts = counts(&events);
    // A record logged twice (byte-identical) is one event under one id: written once.
    for id in records.keys() {
        assert_eq!(
            counts.get(&(id.clone(), 1)),
            Some(&1),
            "every record of event {id} delivered exactly once"
        );
    }
    let latest = latest(&events);
    assert_eq!(
        latest.len(),
        ids.len(),
        "nothing but the shipped records reached the sink"
    );
    for ev in latest.values() {
        assert_ne!(
            ev.attribution_status,
            AttributionStatus::Degraded as i32,
            "{}",
            ev.event_id
        );
        assert!(!ev.attack_version.is_empty());
        assert!(ev.enriched_at.is_some());
    }
    let attributed = latest
        .values()
        .filter(|e| e.attribution_status == AttributionStatus::Ok as i32)
        .count();
    assert!(attributed > 0, "some records map to techniques");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_samples_arrive_enriched_exactly_once() {
    let cluster = Cluster::start().await;
    ship_and_check(
        &cluster,
        &[
            (Format::SuricataEve, vec![fixture("suricata.eve.ndjson")]),
            (Format::Zeek, vec![fixture("zeek/notice.log"), fixture("zeek/dns.log")]),
            (Format::Cowrie, vec![fixture("cowrie.json")]),
        ],
    )
    .await;
    // Shipping the same files again sends nothing: the checkpoints cover them.
    let summary = ship_files(&cluster, Format::Cowrie, vec![fixture("cowrie.json")]).await;
    assert_eq!(summary.progress.accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_samples_arrive_enriched_exactly_once() {
    let Some(data) = shared_data() else {
        eprintln!("skipping: ../shared/data is not present (the committed fixtures cover the same path)");
        return;
    };
    let samples = data.join("samples");
    let suricata: Vec<_> = ["first-org-conf-2015", "honeypot-2018", "wrccdc-2017"]
        .iter()
        .map(|n| samples.join(format!("suricata/{n}.eve.ndjson")))
        .collect();
    let zeek: Vec<_> = [
        "conn", "dns", "http", "notice", "ssl", "weird", "files", "x509", "smtp", "ftp", "dhcp",
    ]
    .iter()
    .map(|n| samples.join(format!("zeek/zat-0.4.9/{n}.log")))
    .collect();
    let cluster = Cluster::start().await;
    ship_and_check(
        &cluster,
        &[
            (Format::SuricataEve, suricata),
            (Format::Zeek, zeek),
            (Format::Cowrie, vec![samples.join("cowrie/cowrie_local_session.json")]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_evtx_files_arrive_enriched_exactly_once() {
    let Some(data) = shared_data() else {
        eprintln!("skipping: ../shared/data is not present");
        return;
    };
    let dir = data.join("samples/evtx-attack-samples");
    let files: Vec<_> = [
        "Execution/Sysmon_Exec_CompiledHTML.evtx",
        "Credential Access/CA_sysmon_hashdump_cmd_meterpreter.evtx",
        "Lateral Movement/LM_sysmon_3_12_13_1_SharpRDP.evtx",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.is_file())
    .collect();
    if files.is_empty() {
        eprintln!("skipping: the EVTX samples are not present");
        return;
    }
    let cluster = Cluster::start().await;
    ship_and_check(&cluster, &[(Format::Evtx, files)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_rejected_alone_and_its_batch_delivered() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();
    let mut bad = port_scan("bad-1", "999.1.1.1");
    bad.technique_hints.push("TA0001".into());
    let batch = IngestRequest {
        batch_id: 7,
        events: vec![
            port_scan("good-1", "203.0.113.7"),
            bad,
            port_scan("good-2", "203.0.113.8"),
        ],
        trace_context: [(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        )]
        .into(),
    };
    let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap();
    let ack = &answers[0];
    assert_eq!(ack.batch_id, 7);
    assert_eq!(ack.status, AckStatus::Durable as i32);
    assert_eq!((ack.accepted, ack.rejected), (2, 1));
    let rejection = &ack.rejections[0];
    assert_eq!((rejection.index, rejection.event_id.as_str()), (1, "bad-1"));
    let fields: Vec<&str> = rejection.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["source.ip", "technique_hints[1]"]);

    let ids: BTreeSet<String> = ["good-1", "good-2"].map(String::from).into();
    let events = wait_for_sink(&cluster.sink(), &ids, |_| true).await;
    assert!(
        events.iter().all(|e| e.event_id != "bad-1"),
        "nothing of the bad event is exported"
    );
    let good = latest(&events).remove("good-1").unwrap();
    assert!(
        good.technique_ids.contains(&"T1046".to_owned()),
        "{:?}",
        good.technique_ids
    );
    assert_eq!(good.revision, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_enforced_and_analysts_enrich_on_demand() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();
    let batch = || IngestRequest {
        batch_id: 1,
        events: vec![port_scan("auth-1", "203.0.113.9")],
        ..Default::default()
    };
    let err = ingest(&mut client, "wrong-token", vec![batch()]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = ingest(&mut client, ANALYST_TOKEN, vec![batch()]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "analysts do not stream detections: {err}"
    );
    let request = || EnrichRequest {
        event: Some(port_scan("manual-1", "198.51.100.4")),
    };
    let err = client.enrich(with_token(request(), DETECTOR_TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    let enriched = client
        .enrich(with_token(request(), ANALYST_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(enriched.event_id, "manual-1");
    assert!(enriched.technique_ids.contains(&"T1046".to_owned()));
    // Exported before the answer: the sink has it.
    let ids: BTreeSet<String> = ["manual-1".to_owned()].into();
    wait_for_sink(&cluster.sink(), &ids, |_| true).await;

    let mut invalid = port_scan("", "not-an-ip");
    invalid.event_type.clear();
    let err = client
        .enrich(with_token(EnrichRequest { event: Some(invalid) }, ANALYST_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("event.event_type"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detector_over_its_rate_gets_retry_with_a_wait() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();
    let batch = |id: u64| IngestRequest {
        batch_id: id,
        events: (0..5)
            .map(|i| port_scan(&format!("rl-{id}-{i}"), "203.0.113.10"))
            .collect(),
        ..Default::default()
    };
    let answers = ingest(&mut client, LIMITED_TOKEN, vec![batch(1), batch(2)])
        .await
        .unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32, "the burst passes");
    assert_eq!(answers[1].status, AckStatus::Retry as i32, "{:?}", answers[1]);
    let wait = answers[1].retry_after.unwrap();
    assert!(wait.seconds >= 3, "5 events at 1/s: {wait:?}");
    assert_eq!(answers[1].accepted, 0);
    // Other detectors are not affected.
    let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch(3)]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_limit_ends_the_stream() {
    let cluster = Cluster::start_with(|c| c.ingest.max_batch_events = 3).await;
    let mut client = cluster.ingest_client();
    let batch = IngestRequest {
        batch_id: 1,
        events: (0..4).map(|i| port_scan(&format!("big-{i}"), "203.0.113.11")).collect(),
        ..Default::default()
    };
    let err = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 3 events"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_down_means_retry_and_not_serving_then_recovery() {
    let mut cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();
    let addr = cluster.export.take().unwrap().kill();
    wait_health(cluster.enrichment.addr, ServingStatus::NotServing).await;
    let batch = |id: u64| IngestRequest {
        batch_id: id,
        events: vec![port_scan(&format!("down-{id}"), "203.0.113.12")],
        ..Default::default()
    };
    let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch(1)]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Retry as i32, "{:?}", answers[0]);
    assert!(answers[0].retry_after.is_some());
    assert!(!answers[0].message.is_empty());

    cluster.export = Some(start_export(addr, cluster.dir.path()));
    wait_serving(cluster.enrichment.addr).await;
    let mut delivered = false;
    for _ in 0..50 {
        let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch(1)]).await.unwrap();
        if answers[0].status == AckStatus::Durable as i32 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "the resent batch is taken once export is back");
    let ids: BTreeSet<String> = ["down-1".to_owned()].into();
    wait_for_sink(&cluster.sink(), &ids, |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_beyond_the_stream_window_are_answered_retry_in_order() {
    let cluster = Cluster::start_with(|c| c.ingest.max_in_flight_batches_per_stream = 1).await;
    let mut client = cluster.ingest_client();
    let batches: Vec<IngestRequest> = (1..=6)
        .map(|id| IngestRequest {
            batch_id: id,
            events: (0..50)
                .map(|i| port_scan(&format!("win-{id}-{i}"), "203.0.113.60"))
                .collect(),
            ..Default::default()
        })
        .collect();
    let answers = ingest(&mut client, DETECTOR_TOKEN, batches).await.unwrap();
    let ids: Vec<u64> = answers.iter().map(|a| a.batch_id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6], "answers come in request order");
    assert_eq!(answers[0].status, AckStatus::Durable as i32);
    let retried: Vec<_> = answers.iter().filter(|a| a.status == AckStatus::Retry as i32).collect();
    assert!(
        !retried.is_empty(),
        "a stream may hold one batch at a time: {answers:?}"
    );
    for a in retried {
        assert!(a.message.contains("one stream"), "{}", a.message);
        assert!(a.retry_after.is_some());
        assert_eq!(a.accepted, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_found_through_dns() {
    let dir = tempfile::tempdir().unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let attribution = start_attribution(any);
    let export = start_export(any, dir.path());
    let mut config = enrichment_config(dir.path(), attribution.addr, export.addr);
    config.attribution.peer.endpoints = vec![format!("dns:///localhost:{}", attribution.addr.port())];
    config.export.peer.endpoints = vec![format!("dns:///localhost:{}", export.addr.port())];
    let enrichment = start_enrichment(any, config);
    wait_serving(attribution.addr).await;
    wait_serving(enrichment.addr).await;
    let mut client = attackmesh::proto::ingest_service_client::IngestServiceClient::new(channel(enrichment.addr));
    let batch = IngestRequest {
        batch_id: 1,
        events: vec![port_scan("dns-1", "203.0.113.61")],
        ..Default::default()
    };
    let answers = ingest(&mut client, DETECTOR_TOKEN, vec![batch]).await.unwrap();
    assert_eq!(answers[0].status, AckStatus::Durable as i32, "{:?}", answers[0]);
    let ids: BTreeSet<String> = ["dns-1".to_owned()].into();
    // Batches sent before the link noticed attribution come out DEGRADED and are re-attributed.
    let attributed = |m: &std::collections::BTreeMap<String, attackmesh::proto::EnrichedEvent>| {
        m.values().all(|e| e.attribution_status == AttributionStatus::Ok as i32)
    };
    wait_for_sink(&sink_path(dir.path()), &ids, attributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_it_took_then_ends_streams_with_unavailable() {
    let cluster = Cluster::start().await;
    let mut client = cluster.ingest_client();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .ingest(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            DETECTOR_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    tx.send(IngestRequest {
        batch_id: 1,
        events: vec![port_scan("drain-1", "203.0.113.62")],
        ..Default::default()
    })
    .await
    .unwrap();
    let first = answers.message().await.unwrap().unwrap();
    assert_eq!(first.status, AckStatus::Durable as i32);
    let Cluster { enrichment, .. } = cluster;
    let stopping = std::thread::spawn(move || enrichment.stop());
    let end = tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("the stream ends within the grace period");
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    stopping.join().unwrap();
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_detector_batch_carries_its_trace_to_export() {
    let dir = tempfile::tempdir().unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let attribution = start_attribution(any);
    let capture = CapturingExport::default();
    let export = start_capturing_export(any, capture.clone());
    wait_serving(attribution.addr).await;
    let enrichment = start_enrichment(any, enrichment_config(dir.path(), attribution.addr, export.addr));
    wait_serving(enrichment.addr).await;
    let mut client = attackmesh::proto::ingest_service_client::IngestServiceClient::new(channel(enrichment.addr));
    let traces = ["4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"];
    let batches = traces
        .iter()
        .enumerate()
        .map(|(n, trace)| IngestRequest {
            batch_id: n as u64,
            events: (0..3)
                .map(|i| port_scan(&format!("trace-{n}-{i}"), "203.0.113.70"))
                .collect(),
            trace_context: [("traceparent".to_owned(), format!("00-{trace}-00f067aa0ba902b7-01"))].into(),
        })
        .collect();
    let answers = ingest(&mut client, DETECTOR_TOKEN, batches).await.unwrap();
    assert!(answers.iter().all(|a| a.status == AckStatus::Durable as i32));
    let seen = capture.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one export batch per detector batch");
    for (n, trace) in traces.iter().enumerate() {
        let (context, ids) = seen
            .iter()
            .find(|(_, ids)| ids[0].starts_with(&format!("trace-{n}-")))
            .unwrap();
        assert_eq!(ids.len(), 3);
        assert!(
            context["traceparent"].contains(trace),
            "batch {n} stays in its detector's trace: {context:?}"
        );
    }
}
