//! `attackmesh dlq list|show|replay`: inspect and replay the siem-export service's dead letters.
//!
//! Works on the data directory directly (no running service needed). Replay hands entries
//! back to their sink: the running service queues them within a second, a stopped one at its
//! next start. Nothing here deletes a dead letter.

use std::{path::PathBuf, process::ExitCode};

use attackmesh_runtime::config::process_env;
use attackmesh_siem_export::dlq;

use crate::config::Config;

/// Arguments of `attackmesh dlq`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The siem-export data directory; defaults to `siem_export.data_dir` of the configuration.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Configuration file (YAML or JSON); `ATTACKMESH_…` variables override it.
    #[arg(long, short, env = "ATTACKMESH_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List dead letters, oldest first: id, sink, time, state, event id and reason.
    List {
        /// Only this sink (`elasticsearch`, `splunk_hec`, `file`, `file-<name>`, `intel`): one of
        /// the configured sinks.
        #[arg(long)]
        sink: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one dead letter, with its event, as JSON.
    Show {
        /// The entry's id (from `list`).
        id: String,
    },
    /// Hand dead letters back to their sink for delivery (exit 1 when some lines could not be
    /// read, after replaying the others).
    Replay {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// Every entry not replayed yet.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// The entries to replay.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
    },
}

/// Runs `attackmesh dlq`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The sinks a name may refer to: the configured ones; with only --data-dir, those the
    // directory has queues for.
    let (data_dir, known) = match args.data_dir {
        Some(dir) if args.config.is_none() => {
            let known = dlq::served_sinks(&dir)?;
            (dir, known)
        }
        dir => {
            let config = Config::load(args.config.as_deref(), &process_env())?;
            let known = config
                .siem_export
                .sinks()
                .iter()
                .map(|s| s.name().into_owned())
                .collect();
            (dir.unwrap_or(config.siem_export.data_dir), known)
        }
    };
    let mut code = ExitCode::SUCCESS;
    match args.command {
        Command::List { sink, json } => {
            let listing = dlq::list(&data_dir, &known, sink.as_deref())?;
            report_unreadable(&listing.unreadable);
            let entries = listing.entries;
            for l in &entries {
                if json {
                    println!("{}", serde_json::to_string(l)?);
                } else {
                    println!(
                        "{}  {:<13} {}  {:<8} {:<24} {}",
                        l.entry.id,
                        l.entry.sink,
                        l.entry.at,
                        state(l.state),
                        l.entry.event_id.as_deref().unwrap_or("-"),
                        l.entry.reason
                    );
                }
            }
            if !json {
                eprintln!("{} dead letter(s) under {}", entries.len(), data_dir.display());
            }
        }
        Command::Show { id } => {
            let listed = dlq::show(&data_dir, &id)?;
            println!("{}", serde_json::to_string_pretty(&listed)?);
        }
        Command::Replay { sink, all: _, ids } => {
            let report = dlq::replay(&data_dir, &known, sink.as_deref(), &ids)?;
            for (sink, n) in &report.replayed {
                println!("{sink}: {n} event(s) handed back for delivery");
            }
            if report.replayed.is_empty() {
                println!("nothing to replay");
            }
            if report.not_replayable > 0 {
                println!(
                    "{} entr(y/ies) record damaged queue bytes and hold no event to replay",
                    report.not_replayable
                );
            }
            if !report.unreadable.is_empty() {
                report_unreadable(&report.unreadable);
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Tells which dead-letter lines could not be read: their count, then each file's line numbers.
fn report_unreadable(lines: &[dlq::Unreadable]) {
    if lines.is_empty() {
        return;
    }
    eprintln!("warning: {} dead-letter line(s) could not be read:", lines.len());
    let mut by_file: std::collections::BTreeMap<&std::path::Path, Vec<String>> = Default::default();
    for l in lines {
        by_file.entry(&l.path).or_default().push(l.line.to_string());
    }
    for (path, numbers) in by_file {
        eprintln!("  {}: lines {}", path.display(), numbers.join(", "));
    }
}

fn state(s: dlq::ReplayState) -> &'static str {
    match s {
        dlq::ReplayState::Dead => "dead",
        dlq::ReplayState::Pending => "pending",
        dlq::ReplayState::Replayed => "replayed",
    }
}
