//! `attackmesh navigator`: turns enriched events into an ATT&CK Navigator layer.
//!
//! Reads canonical `EnrichedEvent` JSON lines (files, or stdin when none are given), counts how
//! many events each technique was attributed in, and writes a Navigator layer (format 4.5,
//! `enterprise-attack`) with one entry per technique and tactic, `score` = event count, a
//! gradient from the lowest to the highest count and a legend. Technique ids are checked
//! against the knowledge base: revoked ids count for their replacement, unknown ones are
//! reported on stderr and left out. Lines that do not decode are reported as `PATH:LINE:
//! message` and skipped.

use std::{
    io::{self, BufRead, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use attackmesh::proto::EnrichedEvent;
use attackmesh_attack::Kb;
use attackmesh_attack::navigator::Tally;

/// Arguments of `attackmesh navigator`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Write the layer to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Layer name shown in the Navigator.
    #[arg(long, default_value = "attackmesh detections")]
    name: String,
    /// Knowledge base to use instead of the embedded one (compact KB or ATT&CK bundle).
    #[arg(long, value_name = "PATH")]
    kb: Option<PathBuf>,
    /// Enriched-event JSON lines files; stdin when none are given.
    inputs: Vec<PathBuf>,
}

/// Runs `attackmesh navigator`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kb = Kb::open(args.kb.as_deref()).context("loading the knowledge base")?;
    let mut tally = Tally::default();
    if args.inputs.is_empty() {
        read(&mut tally, "<stdin>", io::stdin().lock(), &kb).context("reading stdin")?;
    } else {
        for path in &args.inputs {
            let file = attackmesh::formats::open_path(path).with_context(|| format!("opening {}", path.display()))?;
            read(&mut tally, &path.display().to_string(), file, &kb)
                .with_context(|| format!("reading {}", path.display()))?;
        }
    }
    let layer = tally.layer(&kb, &args.name);
    let text = serde_json::to_string_pretty(&layer).context("encoding the layer")?;
    match &args.out {
        Some(path) => std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}").context("writing to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts every event of one JSON-lines input; lines that do not decode are reported as
/// `NAME:LINE: message` and skipped.
fn read(tally: &mut Tally, name: &str, input: impl BufRead, kb: &Kb) -> io::Result<()> {
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match attackmesh::json::from_json::<EnrichedEvent>(&line) {
            Ok(event) => {
                for id in tally.add(&event, kb) {
                    eprintln!(
                        "warning: `{id}` is not an active technique of ATT&CK {}; left out",
                        kb.attack_version()
                    );
                }
            }
            Err(e) => eprintln!("{name}:{}: {e}", i + 1),
        }
    }
    Ok(())
}
