//! A minimal detector: a traffic monitor that reports what it saw to attackmesh.
//!
//! It connects to the enrichment service with a bearer token (role `detector`), streams one
//! batch of `DetectionEvent`s over `IngestService.Ingest`, and prints the acknowledgement and any
//! rejections. Copy it as a starting point; the parts a real detector must keep are marked.
//!
//! ```text
//! cargo run --example detector -- --endpoint http://127.0.0.1:50052 --token-file detector.token
//! cargo run --example detector -- --token-file detector.token --with-invalid   # see a rejection
//! ```

use std::time::Duration;

use attackmesh::proto::{
    AckStatus, DetectionEvent, DetectorKind, Endpoint, Indicator, IndicatorType, IngestRequest, Severity,
    ingest_service_client::IngestServiceClient,
};
use tonic::{Request, transport::Channel};

/// Namespace for this detector's event ids (any fixed UUID of your own).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x1d5c_0e5a_3b8e_4f7d_9a51_7c2e_6b0d_4a11);

struct Args {
    endpoint: String,
    token_file: Option<String>,
    with_invalid: bool,
}

fn args() -> Args {
    let mut args = Args {
        endpoint: "http://127.0.0.1:50052".into(),
        token_file: None,
        with_invalid: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--endpoint" => args.endpoint = it.next().unwrap_or(args.endpoint),
            "--token-file" => args.token_file = it.next(),
            "--with-invalid" => args.with_invalid = true,
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    args
}

/// One detection. Keep: a stable `event_id` derived from what was detected, so that resending
/// the same detection after a lost acknowledgement is recognised as the same event.
fn detection(kind: &str, source_ip: &str, port: u32, description: &str, hints: &[&str]) -> DetectionEvent {
    let now = chrono::Utc::now();
    // One id per detector, kind, source and minute: a repeat within the minute is the same event.
    let key = format!("netmon-01/{kind}/{source_ip}/{}", now.timestamp() / 60);
    DetectionEvent {
        event_id: uuid::Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string(),
        timestamp: Some(now.into()),
        source_service: "netmon-01".into(),
        detector_kind: DetectorKind::TrafficMonitor as i32,
        event_type: kind.into(),
        source: Some(Endpoint {
            ip: source_ip.into(),
            ..Default::default()
        }),
        destination: Some(Endpoint {
            ip: "10.20.0.15".into(),
            port,
            hostname: "db-01.internal".into(),
            ..Default::default()
        }),
        severity: Severity::High as i32,
        description: description.into(),
        indicators: vec![Indicator {
            r#type: IndicatorType::Ipv4 as i32,
            value: source_ip.into(),
        }],
        // Techniques the detector believes in; attackmesh validates them, it does not trust them.
        technique_hints: hints.iter().map(|h| (*h).to_owned()).collect(),
        detector_confidence: Some(0.8),
        attributes: [("packets".to_owned(), "1200".to_owned())].into(),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let token = match &args.token_file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        None => None,
    };
    let channel = Channel::from_shared(args.endpoint.clone())?.connect().await?;
    let mut client = IngestServiceClient::new(channel);

    let mut events = vec![
        detection(
            "port_scan",
            "203.0.113.7",
            0,
            "SYN scan of 1024 ports in 10s",
            &["T1046"],
        ),
        detection(
            "ssh_brute_force",
            "198.51.100.23",
            22,
            "412 failed SSH logins in 60s",
            &["T1110.001"],
        ),
        detection(
            "dns_tunnel",
            "192.0.2.44",
            53,
            "high-entropy TXT queries to one domain",
            &[],
        ),
    ];
    if args.with_invalid {
        events.push(detection(
            "port_scan",
            "not-an-ip",
            70_000,
            "an invalid event",
            &["TA0007"],
        ));
    }

    // Keep: resend a batch answered RETRY after `retry_after`, with the same events (same ids).
    for attempt in 1..=5 {
        let batch = IngestRequest {
            batch_id: 1,
            events: events.clone(),
            trace_context: Default::default(),
        };
        let mut request = Request::new(tokio_stream::iter(vec![batch]));
        if let Some(token) = &token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        let mut acks = client.ingest(request).await?.into_inner();
        let Some(ack) = acks.message().await? else {
            return Err("the stream ended without an acknowledgement".into());
        };
        if ack.status == AckStatus::Retry as i32 {
            let wait = ack.retry_after.map_or(Duration::from_secs(1), |d| {
                Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
            });
            println!("attempt {attempt}: RETRY ({}), waiting {wait:?}", ack.message);
            tokio::time::sleep(wait).await;
            continue;
        }
        println!(
            "batch {}: DURABLE, {} accepted, {} rejected",
            ack.batch_id, ack.accepted, ack.rejected
        );
        for rejection in &ack.rejections {
            println!("  event #{} ({}) rejected:", rejection.index, rejection.event_id);
            for v in &rejection.violations {
                println!("    {}: {}", v.field, v.description);
            }
        }
        return Ok(());
    }
    Err("still asked to retry after 5 attempts".into())
}
