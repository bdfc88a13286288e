//! `attackmesh ship`: the detector-side shipper for log-file detectors (Suricata, Zeek, Cowrie,
//! Falco, Wazuh, canonical NDJSON). The work is done by `attackmesh_enrichment::shipper`; this
//! module only turns arguments into options, shows progress and maps the outcome to an exit code.
//!
//! Exit codes: 0 everything delivered; 1 error (unreachable, refused, unreadable); 2 some records
//! were rejected (each one is printed with file:line and why); 130 stopped before the end.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use attackmesh::formats::Format;
use attackmesh_enrichment::shipper::{Progress, ShipOptions, ship};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Arguments of `attackmesh ship`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Record format: suricata-eve, zeek, cowrie, falco, wazuh, ndjson, evtx, evtx-json or
    /// winlogbeat.
    #[arg(long)]
    format: String,
    /// Keep shipping as the files grow (follows rotation) until SIGINT/SIGTERM.
    #[arg(long)]
    follow: bool,
    /// Ingest endpoint of the enrichment service.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    endpoint: String,
    /// File holding the bearer token (a token with role detector).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA bundle to verify an https:// endpoint.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Directory for per-file checkpoints, so a restart resumes where the last acknowledged
    /// record ended; without it every run ships the files from the start.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Events per batch (1 to 10000).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batches sent before their acknowledgement arrives.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Files to ship (gzip is detected and read transparently).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `attackmesh ship`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e| attackmesh_runtime::Error::ConfigInvalid(format!("--format: {e}")))?;
    let token = match &args.token_file {
        Some(path) => Some(attackmesh_runtime::secret::Secret::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim(),
        )),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let telemetry = attackmesh_runtime::telemetry::TelemetryConfig {
            log_level: "warn".into(),
            ..Default::default()
        };
        let _guard = attackmesh_runtime::telemetry::init(&telemetry, "attackmesh-ship")?;
        let stop = CancellationToken::new();
        let signals = attackmesh_runtime::shutdown::signals()?;
        let on_signal = stop.clone();
        tokio::spawn(async move {
            signals.await;
            on_signal.cancel();
        });
        let mut options = ShipOptions::new(format, args.paths, args.endpoint);
        options.token = token;
        options.ca_file = args.ca_file;
        options.checkpoint_dir = args.checkpoint_dir;
        options.batch = args.batch;
        options.max_in_flight = args.in_flight.max(1);
        options.follow = args.follow;
        options.on_rejected = Some(Box::new(|r| eprintln!("rejected: {r}")));
        let (tx, rx) = watch::channel(Progress::default());
        options.progress = Some(tx);
        let show = std::io::stderr().is_terminal();
        let printer = show.then(|| tokio::spawn(show_progress(rx)));
        let summary = ship(options, stop).await;
        if let Some(printer) = printer {
            printer.abort();
            eprintln!();
        }
        let summary = summary?;
        let p = &summary.progress;
        eprintln!(
            "shipped {} events in {} batches; {} rejected, {} batches resent, {} reconnects{}",
            p.accepted,
            p.batches,
            p.rejected,
            p.resent,
            p.reconnects,
            if summary.interrupted {
                " (stopped before the end)"
            } else {
                ""
            }
        );
        let code = if p.rejected > 0 {
            ExitCode::from(2)
        } else if summary.interrupted && !args.follow {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        };
        Ok::<_, anyhow::Error>(code)
    })
}

async fn show_progress(mut rx: watch::Receiver<Progress>) {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let p = rx.borrow_and_update().clone();
        let rate = p.accepted as f64 / started.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r\x1b[2Kshipped {} events ({} batches, {} rejected) {:.0}/s",
            p.accepted, p.batches, p.rejected, rate
        );
    }
}
