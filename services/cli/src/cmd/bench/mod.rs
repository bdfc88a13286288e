//! `attackmesh bench pipeline`: streams generated detections through the real pipeline
//! (enrichment → attribution, enrichment → siem-export with its durable queue and a sink) and
//! through a no-op baseline that makes the same gRPC hops without work, in the same run, and
//! reports throughput, latency from detector send to sink-durable acknowledgement, and peak
//! memory per service. With `--replay FORMAT:PATH` the events of a real detector file, repeated
//! to `--events`, go through the same two stacks after the generated ones, and the report gives
//! both side by side in the same shape.
//!
//! The services run as child processes of this binary (`--processes separate`, as deployed) or
//! inside this process (`--processes single`). Everything lives in a temporary directory that
//! is removed afterwards; nothing listens beyond 127.0.0.1. Timing goals are read off the
//! report, not asserted here.
//!
//! A soak (`--duration 10m --rate 10000`) sends at a steady rate for that long and reports, every
//! `--report-every`, one JSON line with the interval's throughput, latency and the resident memory
//! of each service; the summary compares the first interval with the last (drift).

use std::{collections::BTreeMap, io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use attackmesh::proto::ingest_service_client::IngestServiceClient;
use attackmesh_runtime::{config::process_env, shutdown};
use serde::Serialize;
use tonic::transport::Channel;

use crate::config::Config;

mod correlation;
mod drive;
mod noop;
mod procs;
mod replay;
mod sink;
mod soak;
mod stack;

use drive::{Outcome, Percentiles, Plan, Slice};
use replay::{Replay, Workload};
use sink::HecReceiver;
use soak::{Drift, Interval};
use stack::{Setup, Stack};

/// Arguments of `attackmesh bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Measure throughput, latency and memory of the pipeline against a no-op baseline.
    Pipeline(PipelineArgs),
    /// Run one no-op service of the baseline (started by `bench pipeline`).
    #[command(hide = true)]
    NoopHop(NoopHopArgs),
}

/// Where the services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Processes {
    /// One child process per service, as deployed.
    Separate,
    /// All services inside the benchmark process.
    Single,
}

/// Line shape of the file sink (`siem_export.file.shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FileShape {
    /// Canonical JSON of the enriched event.
    Canonical,
    /// The ECS document.
    Ecs,
    /// The Splunk HEC envelope.
    Hec,
}

impl FileShape {
    /// The config value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FileShape::Canonical => "canonical",
            FileShape::Ecs => "ecs",
            FileShape::Hec => "hec",
        }
    }

    /// Where a line of this shape holds the event's id (a JSON pointer).
    pub(crate) fn event_id_pointer(self) -> &'static str {
        match self {
            FileShape::Canonical => "/event_id",
            FileShape::Ecs => "/event/id",
            FileShape::Hec => "/event/event_id",
        }
    }
}

/// Where siem-export delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Sink {
    /// The NDJSON file sink, in the run's temporary directory.
    File,
    /// The Splunk HEC sink, posting to a receiver inside the benchmark process.
    Http,
}

#[derive(Debug, clap::Args)]
struct PipelineArgs {
    /// Events to send (after a short warm-up that is not counted).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per ingest batch (1 to 10000).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batches sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Steady rate in events per second (open loop, latency from each batch's scheduled send);
    /// as fast as acknowledgements allow when unset.
    #[arg(long)]
    rate: Option<f64>,
    /// Soak: send at `--rate` for this long (e.g. `10m`) instead of `--events`, reporting every
    /// `--report-every` (JSON lines on stdout) and the drift from the first interval to the
    /// last; the no-op baseline is skipped.
    #[arg(long, value_parser = parse_duration, requires = "rate")]
    duration: Option<Duration>,
    /// Length of a soak's reporting interval.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    report_every: Duration,
    /// Run the services as child processes or inside this process.
    #[arg(long, value_enum, default_value_t = Processes::Separate)]
    processes: Processes,
    /// Sink behind siem-export.
    #[arg(long, value_enum, default_value_t = Sink::File)]
    sink: Sink,
    /// What each line of the file sink holds.
    #[arg(long, value_enum, default_value_t = FileShape::Canonical)]
    file_shape: FileShape,
    /// Also replay a real detector file, `FORMAT:PATH` as `attackmesh ship --format` reads it
    /// (`suricata-eve:eve.json`), its events repeated to `--events`; reported beside the
    /// generated events.
    #[arg(long, value_name = "FORMAT:PATH")]
    replay: Option<String>,
    /// Print one JSON object on stdout (the human summary still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Skip the no-op baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Also measure what correlation adds per event (engine and the replica's durable apply),
    /// over `--entities` distinct sources.
    #[arg(long)]
    correlation: bool,
    /// Distinct entities of the correlation phase.
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
}

#[derive(Debug, clap::Args)]
struct NoopHopArgs {
    /// Which service to stand in for.
    #[arg(long, value_enum)]
    role: noop::Role,
    /// The product config the pipeline services of the run read.
    #[arg(long)]
    config: PathBuf,
}

/// Runs `attackmesh bench`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.command {
        Command::Pipeline(args) => runtime.block_on(pipeline(args)),
        Command::NoopHop(args) => runtime.block_on(noop_hop(args)),
    }
}

async fn noop_hop(args: NoopHopArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(Some(&args.config), &process_env())?;
    let addr = args.role.addr(&config);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let signals = shutdown::signals()?;
    noop::serve(args.role, &config, listener, signals).await?;
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// Throughput, latency and memory of one phase.
#[derive(Debug, Serialize)]
struct Figures {
    events: u64,
    seconds: f64,
    throughput_eps: f64,
    latency_ms: Percentiles,
    rss_mb: BTreeMap<String, f64>,
    /// CPU microseconds per event by service and in `total`, from after the warm-up until every
    /// event was delivered: unlike throughput, barely affected by what else the machine runs.
    cpu_us_per_event: BTreeMap<String, f64>,
    rejected: u64,
    retried_batches: u64,
}

impl Figures {
    fn new(outcome: &Outcome, rss_mb: BTreeMap<String, f64>, cpu_seconds: BTreeMap<String, f64>) -> Self {
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        let l = outcome.latency;
        let per_event = |seconds: f64| round(seconds * 1e6 / outcome.accepted.max(1) as f64, 1);
        let mut cpu_us_per_event: BTreeMap<String, f64> =
            cpu_seconds.iter().map(|(k, s)| (k.clone(), per_event(*s))).collect();
        cpu_us_per_event.insert("total".to_owned(), per_event(cpu_seconds.values().sum()));
        Self {
            events: outcome.accepted,
            seconds: round(outcome.seconds, 3),
            throughput_eps: round(outcome.accepted as f64 / outcome.seconds.max(1e-9), 0),
            latency_ms: Percentiles {
                p50: round(l.p50, 2),
                p99: round(l.p99, 2),
                p999: round(l.p999, 2),
            },
            rss_mb,
            cpu_us_per_event,
            rejected: outcome.rejected,
            retried_batches: outcome.retried_batches,
        }
    }
}

#[derive(Debug, Serialize)]
struct Ratio {
    throughput: f64,
    latency_p99: f64,
    /// Pipeline CPU per event over the baseline's (the inverse of an efficiency ratio).
    cpu_per_event: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    /// `synthetic` (generated events) or the replayed `FORMAT:PATH`.
    workload: String,
    #[serde(flatten)]
    run: Figures,
    delivered: u64,
    /// Seconds from the last acknowledgement until the sink held every event (polled every
    /// 20 ms): how far the sink was behind when the drive ended. Throughput counts events
    /// acknowledged DURABLE, which the sink may still be writing.
    delivered_after_seconds: f64,
    processes: &'static str,
    sink: &'static str,
    /// Line shape of the file sink (`None` with the HEC sink).
    #[serde(skip_serializing_if = "Option::is_none")]
    file_shape: Option<&'static str>,
    rate: Option<f64>,
    batch: usize,
    in_flight: usize,
    baseline: Option<Figures>,
    ratio_to_baseline: Option<Ratio>,
    /// Soak only: the first reporting interval against the last.
    drift: Option<Drift>,
    /// The same run's replay of a detector file, in the same shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<Box<Report>>,
    /// What correlation adds per event (`--correlation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation: Option<correlation::CorrelationFigures>,
}

async fn pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    if args.events == 0 || args.batch == 0 || args.batch > attackmesh::limits::MAX_BATCH_EVENTS || args.in_flight == 0 {
        bail!("--events and --in-flight must be at least 1, --batch 1 to 10000");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of events per second");
    }
    let mut args = args;
    if let (Some(duration), Some(rate)) = (args.duration, args.rate) {
        if duration < args.report_every || args.report_every < Duration::from_secs(1) {
            bail!("--report-every must be at least 1s and no longer than --duration");
        }
        args.events = ((duration.as_secs_f64() * rate).ceil() as usize).max(1);
        args.no_baseline = true;
    }
    let replay = match &args.replay {
        Some(spec) => {
            let replay = Replay::load(spec)?;
            eprintln!("replaying {} events of {spec}", replay.len());
            Some(Workload::Replay(std::sync::Arc::new(replay)))
        }
        None => None,
    };
    let dir = tempfile::Builder::new().prefix("attackmesh-bench-").tempdir()?;
    let hec = match args.sink {
        Sink::Http => Some(HecReceiver::start().await?),
        Sink::File => None,
    };
    let token = || anyhow::Ok(attackmesh_runtime::token::new_token()?.expose().to_owned());
    let setup = Setup {
        dir: dir.path().to_owned(),
        detector_token: token()?,
        internal_token: token()?,
        sink: args.sink,
        file_shape: args.file_shape,
        hec_url: hec.as_ref().map(|h| h.url.clone()),
    };
    setup.write()?;

    let mut report = measure(&setup, &args, hec.as_ref(), &Workload::Synthetic, "").await?;
    if let Some(replay) = &replay {
        report.replay = Some(Box::new(measure(&setup, &args, hec.as_ref(), replay, "replay-").await?));
    }
    if args.correlation {
        let figures = correlation::measure(args.events, args.entities.max(1), args.batch, dir.path());
        report.correlation = Some(figures.context("correlation")?);
    }
    eprint!("{}", summary(&report));
    if let Some(replay) = &report.replay {
        eprint!("{}", summary(replay));
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the baseline (unless skipped) and the pipeline on `workload`; `prefix` tells the phases'
/// directories apart.
async fn measure(
    setup: &Setup,
    args: &PipelineArgs,
    hec: Option<&HecReceiver>,
    workload: &Workload,
    prefix: &str,
) -> anyhow::Result<Report> {
    let baseline = if args.no_baseline {
        None
    } else {
        let phase = format!("{prefix}baseline");
        let (outcome, rss, cpu, _, _) = run_phase(setup, args, hec, workload, &phase, true)
            .await
            .with_context(|| phase.clone())?;
        Some(Figures::new(&outcome, rss, cpu))
    };
    let phase = format!("{prefix}pipeline");
    let (outcome, rss, cpu, delivery, intervals) = run_phase(setup, args, hec, workload, &phase, false)
        .await
        .with_context(|| phase.clone())?;
    let run = Figures::new(&outcome, rss, cpu);
    let ratio = |a: f64, b: f64| (a / b.max(1e-9) * 1000.0).round() / 1000.0;
    let total_cpu = |f: &Figures| f.cpu_us_per_event.get("total").copied().unwrap_or_default();
    let ratio_to_baseline = baseline.as_ref().map(|b| Ratio {
        throughput: ratio(run.throughput_eps, b.throughput_eps),
        latency_p99: ratio(run.latency_ms.p99, b.latency_ms.p99),
        cpu_per_event: ratio(total_cpu(&run), total_cpu(b)),
    });
    Ok(Report {
        workload: workload.label(),
        run,
        delivered: delivery.events,
        delivered_after_seconds: (delivery.after_seconds * 100.0).round() / 100.0,
        processes: match args.processes {
            Processes::Separate => "separate",
            Processes::Single => "single",
        },
        sink: match args.sink {
            Sink::File => "file",
            Sink::Http => "http",
        },
        file_shape: (args.sink == Sink::File).then_some(args.file_shape.name()),
        rate: args.rate,
        batch: args.batch,
        in_flight: args.in_flight,
        baseline,
        ratio_to_baseline,
        drift: Drift::of(&intervals),
        replay: None,
        correlation: None,
    })
}

/// What the sink held at the end of a phase.
#[derive(Debug, Default, Clone, Copy)]
struct Delivery {
    /// Events the sink holds, the warm-up's left out.
    events: u64,
    /// Seconds from the last acknowledgement until the sink held every event.
    after_seconds: f64,
}

/// Starts one stack, warms it up, drives it and stops it; for the real pipeline also waits
/// until the sink holds every acknowledged event and returns what it holds and when.
async fn run_phase(
    setup: &Setup,
    args: &PipelineArgs,
    hec: Option<&HecReceiver>,
    workload: &Workload,
    phase: &str,
    noop: bool,
) -> anyhow::Result<(
    Outcome,
    BTreeMap<String, f64>,
    BTreeMap<String, f64>,
    Delivery,
    Vec<Interval>,
)> {
    if args.processes == Processes::Single {
        stack::reset_own_peak_rss();
    }
    let stack = Stack::start(setup, args.processes, phase, noop).await?;
    let channel = Channel::from_shared(format!("http://{}", stack.ingest))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = IngestServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let prefix = format!("bench-{}-{phase}", std::process::id());
    // Connections, upstream streams and caches are set up before anything is measured.
    let warmup = Plan {
        events: args.batch * args.in_flight * 2,
        batch: args.batch,
        in_flight: args.in_flight,
        rate: None,
    };
    let warm = drive::drive(
        &mut client,
        &setup.detector_token,
        &format!("{prefix}-warmup"),
        warmup,
        None,
        &mut |_| {},
        workload,
    )
    .await?;
    let cpu_before = stack.cpu_seconds();
    let plan = Plan {
        events: args.events,
        batch: args.batch,
        in_flight: args.in_flight,
        rate: args.rate,
    };
    let mut intervals: Vec<Interval> = Vec::new();
    let mut on_slice = |slice: Slice| {
        let seconds = args.report_every.as_secs_f64();
        let interval = Interval {
            interval: intervals.len() + 1,
            at_seconds: (slice.at_seconds * 10.0).round() / 10.0,
            events: slice.accepted,
            throughput_eps: (slice.accepted as f64 / seconds).round(),
            latency_ms: Percentiles {
                p50: (slice.latency.p50 * 100.0).round() / 100.0,
                p99: (slice.latency.p99 * 100.0).round() / 100.0,
                p999: (slice.latency.p999 * 100.0).round() / 100.0,
            },
            rss_mb: stack.rss_mb(),
        };
        if let Ok(line) = serde_json::to_string(&interval) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
        intervals.push(interval);
    };
    let every = args.duration.map(|_| args.report_every);
    let outcome = drive::drive(
        &mut client,
        &setup.detector_token,
        &prefix,
        plan,
        every,
        &mut on_slice,
        workload,
    )
    .await?;
    let cpu_used = |stack: &Stack| -> BTreeMap<String, f64> {
        let after = stack.cpu_seconds();
        after
            .iter()
            .map(|(k, s)| (k.clone(), s - cpu_before.get(k).copied().unwrap_or_default()))
            .collect()
    };
    if noop {
        let (rss, cpu) = (stack.peak_rss_mb(), cpu_used(&stack));
        stack.stop().await?;
        return Ok((outcome, rss, cpu, Delivery::default(), intervals));
    }
    let acked = warm.accepted + outcome.accepted;
    let drained = std::time::Instant::now();
    sink::wait_delivered(stack.export, &setup.internal_token, acked).await?;
    let after_seconds = drained.elapsed().as_secs_f64();
    let (rss, cpu) = (stack.peak_rss_mb(), cpu_used(&stack));
    stack.stop().await?;
    let held = match hec {
        Some(hec) => hec.received(),
        None => sink::count_events(&setup.sink_dir(phase), setup.file_shape.event_id_pointer())?,
    };
    let delivered = held.saturating_sub(warm.accepted);
    if delivered < outcome.accepted {
        bail!(
            "the sink holds {delivered} of the {} events acknowledged DURABLE",
            outcome.accepted
        );
    }
    Ok((
        outcome,
        rss,
        cpu,
        Delivery {
            events: delivered,
            after_seconds,
        },
        intervals,
    ))
}

fn summary(r: &Report) -> String {
    let line = |what: &str, f: &Figures| {
        let rss: Vec<String> = f.rss_mb.iter().map(|(k, v)| format!("{k} {v} MiB")).collect();
        let cpu: Vec<String> = f.cpu_us_per_event.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!(
            "{what}: {} events in {:.2} s = {:.0} events/s; ack latency p50 {} ms, p99 {} ms, p99.9 {} ms; \
             {} batches resent; peak RSS {}; CPU µs/event {}\n",
            f.events,
            f.seconds,
            f.throughput_eps,
            f.latency_ms.p50,
            f.latency_ms.p99,
            f.latency_ms.p999,
            f.retried_batches,
            rss.join(", "),
            cpu.join(", ")
        )
    };
    let layout = match r.processes {
        "single" => "one process",
        _ => "separate processes",
    };
    let mut text = line(&format!("{} pipeline ({layout}, {} sink)", r.workload, r.sink), &r.run);
    text.push_str(&format!(
        "  the sink holds {} of them, {:.2} s after the last acknowledgement\n",
        r.delivered, r.delivered_after_seconds
    ));
    if let (Some(b), Some(ratio)) = (&r.baseline, &r.ratio_to_baseline) {
        text.push_str(&line("baseline (no-op hops)", b));
        text.push_str(&format!(
            "  pipeline/baseline: throughput {}x, p99 latency {}x, CPU per event {}x\n",
            ratio.throughput, ratio.latency_p99, ratio.cpu_per_event
        ));
    }
    if let Some(drift) = &r.drift {
        text.push_str(&drift.summary());
    }
    if let Some(c) = &r.correlation {
        text.push_str(&correlation::summary(c));
    }
    text
}
