//! `attackmesh demo`: the main job on a laptop. Starts attribution, enrichment, siem-export and
//! intel on loopback, plays a multi-stage intrusion seen by three simulated detectors (and,
//! optionally, real detector files) through the Ingest stream, lets the pipeline enrich and
//! deliver every detection, and prints what a SOC analyst wants to know first.
//!
//! The outputs are the sinks' own work: `enriched.ndjson`, `ecs.ndjson`, `hec.ndjson` and
//! `ocsf.ndjson` are written by siem-export's file sinks, `stix-bundle.json` is exported from the
//! intel service's collection (fed by the intel sink), and `navigator-layer.json` is built from what arrived in
//! `enriched.ndjson`. The delivered events are folded into campaigns (`campaigns.ndjson`,
//! `attack-flow.json`), whose alerts go through siem-export to every sink as well.
//! Elasticsearch and Splunk HEC are delivered to as well when the usual
//! `ATTACKMESH_…` variables (or `--config`) configure them.

mod campaign;
mod pipeline;
mod report;
mod scenario;

use std::{
    collections::{BTreeMap, HashMap},
    io::BufRead as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use attackmesh::{
    formats::{Format, Reader, open_path},
    proto::{AckStatus, DetectionEvent, EnrichedEvent, IngestRequest, ingest_service_client::IngestServiceClient},
};
use attackmesh_runtime::config::process_env;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Config;
use pipeline::{Authed, Pipeline};

/// Events per Ingest batch.
const BATCH: usize = 500;
/// How long the sinks get to deliver everything before the demo reports what is pending.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for correlation findings on the delivered events to be delivered in turn.
const FINDINGS_TIMEOUT: Duration = Duration::from_secs(15);

/// Arguments of `attackmesh demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folder for the results (created; existing result files are replaced).
    #[arg(long, default_value = "attackmesh-demo")]
    out: PathBuf,
    /// Also replay a detector file, as FORMAT:PATH (e.g. `cowrie:cowrie.json`); repeatable.
    #[arg(long = "replay", value_name = "FORMAT:PATH")]
    replay: Vec<String>,
    /// Keep the pipeline running after the demo (until Ctrl-C) and print its endpoints.
    #[arg(long)]
    serve: bool,
    /// Configuration file (YAML or JSON), e.g. with Elasticsearch or Splunk sinks;
    /// `ATTACKMESH_…` variables override it. Listeners and the file sinks are the demo's own.
    #[arg(long, short, env = "ATTACKMESH_CONFIG")]
    config: Option<PathBuf>,
}

/// A group of detections from one detector.
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) events: Vec<DetectionEvent>,
}

/// What one detector's stream achieved.
pub(crate) struct Sent {
    /// Detector name.
    pub(crate) name: String,
    /// Events sent.
    pub(crate) sent: usize,
    /// Events the pipeline acknowledged as durable.
    pub(crate) accepted: u64,
    /// Events refused as invalid, with why.
    pub(crate) rejected: Vec<String>,
    /// Ids of the events sent.
    pub(crate) event_ids: Vec<String>,
}

/// Runs `attackmesh demo`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = Config::read(args.config.as_deref(), &process_env())?;
    if args.config.is_none() && !process_env().contains_key("ATTACKMESH_TELEMETRY__LOG_LEVEL") {
        // The summary is the demo's output; services only speak up about problems.
        config.telemetry.log_level = "warn".into();
    }
    let mut sources: Vec<Source> = scenario::intrusion(chrono::Utc::now() - chrono::Duration::hours(1))
        .into_iter()
        .map(|d| Source {
            name: d.name.to_owned(),
            events: d.events,
        })
        .collect();
    for spec in &args.replay {
        sources.push(replay(spec)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(demo(args, config, sources))
}

fn replay(spec: &str) -> anyhow::Result<Source> {
    let (format, path) = spec.split_once(':').context("--replay wants FORMAT:PATH")?;
    let format: Format = format.parse().map_err(|e| anyhow::anyhow!("--replay {spec}: {e}"))?;
    let path = PathBuf::from(path);
    let reader = open_path(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut events = Vec::new();
    for record in Reader::new(format, reader, path.display().to_string()) {
        match record.result {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(e) => eprintln!("{}:{}: {e}", path.display(), record.line),
        }
    }
    Ok(Source {
        name: format!(
            "{} {}",
            format.name(),
            path.file_name()
                .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
        ),
        events,
    })
}

async fn demo(args: Args, config: Config, sources: Vec<Source>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let telemetry = attackmesh_runtime::telemetry::init(&config.telemetry, "attackmesh-demo")?;
    let pipeline = Pipeline::start(config, &args.out).await?;
    let result = play(&args, &pipeline, sources, started).await;
    if result.is_ok() && args.serve {
        print_endpoints(&pipeline);
        tokio::signal::ctrl_c().await?;
    }
    let stopped = pipeline.stop().await;
    telemetry.shutdown();
    let code = result?;
    stopped?;
    Ok(code)
}

async fn play(args: &Args, pipeline: &Pipeline, sources: Vec<Source>, started: Instant) -> anyhow::Result<ExitCode> {
    // Each detector streams on its own connection, all at once, as they would in a SOC.
    let mut streams = tokio::task::JoinSet::new();
    for (i, source) in sources.into_iter().enumerate() {
        let client = pipeline.ingest_client().await?;
        streams.spawn(async move { (i, send(client, source).await) });
    }
    let mut sent: Vec<Option<Sent>> = Vec::new();
    while let Some(joined) = streams.join_next().await {
        let (i, outcome) = joined.context("a detector task panicked")?;
        if sent.len() <= i {
            sent.resize_with(i + 1, || None);
        }
        sent[i] = Some(outcome?);
    }
    let sent: Vec<Sent> = sent.into_iter().flatten().collect();
    let accepted: u64 = sent.iter().map(|s| s.accepted).sum();
    pipeline.wait_delivered(accepted, DELIVERY_TIMEOUT).await?;
    let canonical = args.out.join(pipeline::ENRICHED);
    pipeline.wait_findings(accepted, &canonical, FINDINGS_TIMEOUT).await?;

    let enriched = read_enriched(&canonical)?;
    let findings: Vec<EnrichedEvent> = enriched
        .iter()
        .filter(|e| e.source_service == attackmesh::CORRELATION_DETECTOR)
        .cloned()
        .collect();
    let by_detector = group_by_detector(&sent, enriched);
    // Campaigns from what was delivered, then their alerts through siem-export to every sink.
    let kb = attackmesh_attack::Kb::embedded()?;
    let delivered: Vec<&EnrichedEvent> = by_detector.iter().flat_map(|(_, events)| events).collect();
    let campaigns = campaign::build(&kb, &delivered)?;
    campaign::write(&args.out, &kb, &campaigns)?;
    let alerts: Vec<EnrichedEvent> = campaigns
        .iter()
        .map(|c| attackmesh_campaign::campaign_alert(&kb, c))
        .collect();
    let alerted = if alerts.is_empty() {
        0
    } else {
        pipeline.export(alerts).await?
    };
    let accepted = accepted + alerted;
    let sinks = pipeline.wait_delivered(accepted, DELIVERY_TIMEOUT).await?;

    let stix = args.out.join("stix-bundle.json");
    let stix_objects = export_stix(&pipeline.config, &stix).await?;
    let report = report::write(&args.out, &by_detector, stix, stix_objects)?;
    let pending: Vec<&attackmesh::proto::SinkStatus> = sinks
        .iter()
        .filter(|s| s.queue_depth > 0 || s.delivered + s.dead_lettered < accepted)
        .collect();
    report.print(&report::Run {
        campaigns: &campaigns,
        detectors: &sent,
        by_detector: &by_detector,
        sinks: &sinks,
        accepted,
        taxii_objects: &pipeline.taxii_objects,
        elapsed: started.elapsed(),
    });
    print_findings(&findings);
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "\nnot everything was delivered within {} s: {}",
            DELIVERY_TIMEOUT.as_secs(),
            names.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams one detector's events over Ingest, resending batches answered RETRY, until every
/// batch has a DURABLE acknowledgement.
async fn send(mut client: IngestServiceClient<Authed>, source: Source) -> anyhow::Result<Sent> {
    let mut events = source.events;
    for event in &mut events {
        attackmesh::validate::prepare_detection(event);
    }
    let event_ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let mut batches: BTreeMap<u64, Vec<DetectionEvent>> = events
        .chunks(BATCH)
        .enumerate()
        .map(|(i, chunk)| (i as u64, chunk.to_vec()))
        .collect();
    let (tx, rx) = mpsc::channel(batches.len().max(1));
    let request = |batch_id: u64, events: &[DetectionEvent]| IngestRequest {
        batch_id,
        events: events.to_vec(),
        trace_context: attackmesh_runtime::telemetry::inject_map(),
    };
    for (id, events) in &batches {
        tx.send(request(*id, events)).await?;
    }
    let mut responses = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
    let mut accepted = 0;
    let mut rejected = Vec::new();
    while !batches.is_empty() {
        let response = responses
            .message()
            .await?
            .context("the enrichment service closed the stream early")?;
        if response.status == AckStatus::Retry as i32 {
            let wait = response
                .retry_after
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::from_millis(200));
            tokio::time::sleep(wait).await;
            let events = batches.get(&response.batch_id).context("RETRY for an unknown batch")?;
            tx.send(request(response.batch_id, events)).await?;
            continue;
        }
        batches
            .remove(&response.batch_id)
            .context("acknowledgement for an unknown batch")?;
        accepted += u64::from(response.accepted);
        for r in response.rejections {
            let why: Vec<String> = r
                .violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect();
            rejected.push(format!("{}: {}", r.event_id, why.join("; ")));
        }
    }
    Ok(Sent {
        name: source.name,
        sent: event_ids.len(),
        accepted,
        rejected,
        event_ids,
    })
}

/// The correlation findings: behaviour only visible across the events above.
fn print_findings(findings: &[EnrichedEvent]) {
    println!(
        "\nCorrelation findings (stateful rules across events): {}",
        findings.len()
    );
    for f in findings {
        let source = f.source.as_ref().map(|s| s.ip.as_str()).unwrap_or_default();
        println!(
            "  {:<40} {:<22} source {source}  events {}",
            f.event_type,
            f.technique_ids.join(", "),
            f.attributes
                .get("correlation.events")
                .map(String::as_str)
                .unwrap_or("?")
        );
    }
}

fn read_enriched(path: &std::path::Path) -> anyhow::Result<Vec<EnrichedEvent>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        let event: EnrichedEvent =
            attackmesh::json::from_json(&line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        out.push(event);
    }
    Ok(out)
}

/// The delivered events by the detector that sent them (latest revision of each event), in the
/// detectors' order.
fn group_by_detector(sent: &[Sent], enriched: Vec<EnrichedEvent>) -> Vec<(String, Vec<EnrichedEvent>)> {
    let mut latest: HashMap<String, EnrichedEvent> = HashMap::new();
    for event in enriched {
        match latest.get(&event.event_id) {
            Some(seen) if seen.revision >= event.revision => {}
            _ => {
                latest.insert(event.event_id.clone(), event);
            }
        }
    }
    sent.iter()
        .map(|s| {
            let events = s.event_ids.iter().filter_map(|id| latest.remove(id)).collect();
            (s.name.clone(), events)
        })
        .collect()
}

async fn export_stix(config: &Config, path: &std::path::Path) -> anyhow::Result<usize> {
    let store = attackmesh_intel::Store::open(config.intel.db_url().expose())
        .await
        .context("cannot open the intel store")?;
    let mut buf = Vec::new();
    let objects = attackmesh_intel::export_bundle(&store, &config.intel.default_collection_id(), &mut buf)
        .await
        .context("STIX export failed")?;
    std::fs::write(path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(objects)
}

fn print_endpoints(pipeline: &Pipeline) {
    println!("\nThe pipeline keeps running; Ctrl-C stops it.");
    // One line scripts can read: the live matrix and the analyst token that opens it
    // (also accepted as `<URL>#token=<token>`).
    println!("ui: {} token: {}", pipeline.ui, pipeline.analyst_token);
    println!(
        "  ingest (enrichment)  http://{}  token {}",
        pipeline.enrichment, pipeline.detector_token
    );
    println!("  attribution          http://{}", pipeline.attribution);
    println!("  siem-export          http://{}", pipeline.siem_export);
    println!("  intel                http://{}", pipeline.intel);
    println!("  TAXII 2.1 objects    {}", pipeline.taxii_objects);
    println!("  admin token          {}", pipeline.admin_token);
    println!("  analyst token        {}", pipeline.analyst_token);
    println!(
        "  e.g. attackmesh ship --endpoint http://{} --token-file <file with the token> --format suricata-eve eve.json",
        pipeline.enrichment
    );
}
