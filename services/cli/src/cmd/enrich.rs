//! `attackmesh enrich`: attributes detector records offline and prints enriched events.
//!
//! Each file is parsed with the contract's parsers (`attackmesh::formats`), every event is
//! attributed by the embedded engine (or one built from `--kb`/`--rules-dir`), and one canonical
//! JSON `EnrichedEvent` line per event is written to stdout in input order. A record that does
//! not parse or validate is reported on stderr as `PATH:LINE: message` and skipped. The exit
//! code is 0 unless a file could not be opened or read (66), after all files were tried.
//!
//! Then the correlation rules (the built-in network behaviours, plus the packs under
//! `--rules-dir`'s `correlation/` when it exists) run over every event of every file in event-time
//! order, and each finding is written as one more `EnrichedEvent` line (detector
//! `attackmesh-correlation`, attributed like any detection) after the one-line-per-record output,
//! which stays exactly as without correlation. `--no-correlation` leaves them out.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use attackmesh::enriched_event;
use attackmesh::formats::{self, Format, Reader};
use attackmesh_attack::Engine;
use attackmesh_attribution::AttributionConfig;

/// Exit code when an input file cannot be opened or read (sysexits EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;

/// Arguments of `attackmesh enrich`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Record format: suricata-eve, zeek, cowrie, falco, wazuh, ndjson, evtx, evtx-json or
    /// winlogbeat.
    #[arg(long)]
    format: String,
    /// Knowledge base to use instead of the embedded one (compact KB or ATT&CK bundle).
    #[arg(long, value_name = "PATH")]
    kb: Option<PathBuf>,
    /// Directory of rule packs applied over the embedded packs (Sigma rules under its `sigma/`).
    #[arg(long, value_name = "DIR")]
    rules_dir: Option<PathBuf>,
    /// Do not run the correlation rules after the per-record output.
    #[arg(long)]
    no_correlation: bool,
    /// Files to attribute (gzip'd files are read transparently).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `attackmesh enrich`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e| attackmesh_runtime::Error::ConfigInvalid(format!("--format: {e}")))?;
    let config = AttributionConfig {
        kb_path: args.kb,
        rules_dir: args.rules_dir,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| attackmesh_runtime::Error::ConfigInvalid(e.to_string()))?;
    let engine = config.build_engine().context("building the attribution engine")?;
    let mut correlation = match args.no_correlation {
        true => None,
        false => Some(correlation_engine(config.rules_dir.as_deref())?),
    };
    let mut seen = Vec::new();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut code = ExitCode::SUCCESS;
    for path in &args.paths {
        let keep = correlation.is_some().then_some(&mut seen);
        match enrich_file(&engine, format, path, keep, &mut out) {
            Ok(()) => {}
            Err(Failure::Input(message)) => {
                eprintln!("{}: {message}", path.display());
                code = ExitCode::from(EXIT_NO_INPUT);
            }
            Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(code),
            Err(Failure::Output(e)) => return Err(e).context("writing to stdout"),
        }
    }
    if let Some(correlation) = &mut correlation {
        match write_findings(&engine, correlation, seen, &mut out) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(code),
            other => other.context("writing to stdout")?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(code),
    }
}

/// The correlation engine of the default `correlation` section, with the packs of
/// `<rules_dir>/correlation/` when that directory exists.
fn correlation_engine(rules_dir: Option<&Path>) -> anyhow::Result<attackmesh_correlation::Engine> {
    let config = attackmesh_correlation::CorrelationConfig {
        rules_dir: rules_dir.map(|d| d.join("correlation")).filter(|d| d.is_dir()),
        ..Default::default()
    };
    config
        .engine()
        .map_err(|e| attackmesh_runtime::Error::ConfigInvalid(e.to_string()).into())
}

/// Runs the correlation rules over `events` in event-time order (input order among equal
/// times) and writes each finding, attributed, as one more line.
fn write_findings(
    engine: &Engine,
    correlation: &mut attackmesh_correlation::Engine,
    mut events: Vec<attackmesh::proto::EnrichedEvent>,
    out: &mut impl Write,
) -> io::Result<()> {
    events.sort_by_key(|e| e.timestamp.as_ref().map(|t| (t.seconds, t.nanos)));
    let mut findings = Vec::new();
    for event in &events {
        correlation.observe(event, attackmesh_correlation::Shard::default(), &mut findings);
    }
    let mut line_buf = Vec::with_capacity(4096);
    for finding in findings {
        let attribution = engine.attribute(&finding);
        line_buf.clear();
        attackmesh::json::write_enriched_event(&enriched_event(finding, attribution, 1), true, &mut line_buf);
        line_buf.push(b'\n');
        out.write_all(&line_buf)?;
    }
    Ok(())
}

enum Failure {
    Input(String),
    Output(io::Error),
}

fn enrich_file(
    engine: &Engine,
    format: Format,
    path: &Path,
    mut keep: Option<&mut Vec<attackmesh::proto::EnrichedEvent>>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let input = formats::open_path(path).map_err(|e| Failure::Input(format!("cannot open: {e}")))?;
    let name = path.display().to_string();
    let mut line_buf = Vec::with_capacity(4096);
    for record in Reader::new(format, input, name.clone()) {
        let mut event = match record.result {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(formats::ParseError::AtLine { error, .. }) if matches!(*error, formats::ParseError::Io(_)) => {
                return Err(Failure::Input(format!("read error at line {}: {error}", record.line)));
            }
            Err(e) => {
                eprintln!("{name}:{}: {}", record.line, e.kind());
                continue;
            }
        };
        attackmesh::validate::prepare_detection(&mut event);
        if let Err(violations) = attackmesh::validate::detection_event(&event) {
            let summary: Vec<String> = violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect();
            eprintln!("{name}:{}: invalid event: {}", record.line, summary.join("; "));
            continue;
        }
        let attribution = engine.attribute(&event);
        let enriched = enriched_event(event, attribution, 1);
        line_buf.clear();
        attackmesh::json::write_enriched_event(&enriched, true, &mut line_buf);
        line_buf.push(b'\n');
        out.write_all(&line_buf).map_err(Failure::Output)?;
        if let Some(keep) = keep.as_deref_mut() {
            keep.push(enriched);
        }
    }
    Ok(())
}
