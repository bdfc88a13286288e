//! `attackmesh enrich`: attributes detector records offline and prints enriched events.
//!
//! Each file is parsed with the contract's parsers (`attackmesh::formats`), every event is
//! attributed by the embedded engine (or one built from `--kb`/`--rules-dir`), and one canonical
//! JSON `EnrichedEvent` line per event is written to stdout in input order. A record that does
//! not parse or validate is reported on stderr as `PATH:LINE: message` and skipped. The exit
//! code is 0 unless a file could not be opened or read (66), after all files were tried.

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
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut code = ExitCode::SUCCESS;
    for path in &args.paths {
        match enrich_file(&engine, format, path, &mut out) {
            Ok(()) => {}
            Err(Failure::Input(message)) => {
                eprintln!("{}: {message}", path.display());
                code = ExitCode::from(EXIT_NO_INPUT);
            }
            Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(code),
            Err(Failure::Output(e)) => return Err(e).context("writing to stdout"),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(code),
    }
}

enum Failure {
    Input(String),
    Output(io::Error),
}

fn enrich_file(engine: &Engine, format: Format, path: &Path, out: &mut impl Write) -> Result<(), Failure> {
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
        attackmesh::json::write_json_line(&enriched, &mut line_buf);
        out.write_all(&line_buf).map_err(Failure::Output)?;
    }
    Ok(())
}
