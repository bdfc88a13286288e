//! `attackmesh intel export`: writes the latest version of every object of an intel collection
//! as one STIX 2.1 bundle (for partners without TAXII, or for stix2-validator).
//! `attackmesh intel flow` writes a campaign's Attack Flow (see `intel_flow`).

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use attackmesh_runtime::{config::process_env, secret::Secret};

use crate::config::Config;

/// Arguments of `attackmesh intel`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write a collection as one STIX 2.1 bundle.
    Export(ExportArgs),
    /// Write a campaign's Attack Flow 2.0 bundle (from a campaigns.ndjson).
    Flow(super::intel_flow::FlowArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Output file (`-` for standard output); written whole or not at all.
    #[arg(long, short)]
    out: PathBuf,
    /// Collection id; default: the configured default collection.
    #[arg(long)]
    collection: Option<String>,
    /// Store URL (`sqlite:PATH` or `postgres://…`); default: the configured `intel.db`.
    #[arg(long)]
    db: Option<Secret>,
    /// Configuration file (YAML or JSON); `ATTACKMESH_…` variables override it.
    #[arg(long, short, env = "ATTACKMESH_CONFIG")]
    config: Option<PathBuf>,
}

/// Runs `attackmesh intel`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Export(args) => export(args),
        Command::Flow(args) => super::intel_flow::flow(args),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (db, collection) = match (args.db, args.collection) {
        (Some(db), Some(c)) => (db, c),
        (db, c) => {
            let config = Config::load(args.config.as_deref(), &process_env())?;
            (
                db.unwrap_or_else(|| config.intel.db_url()),
                c.unwrap_or_else(|| config.intel.default_collection_id()),
            )
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = runtime
        .block_on(attackmesh_intel::Store::open(db.expose()))
        .context("cannot open the intel store")?;
    if args.out.as_os_str() == "-" {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        runtime
            .block_on(attackmesh_intel::export_bundle(&store, &collection, &mut out))
            .context("export failed")?;
        return Ok(ExitCode::SUCCESS);
    }
    let tmp = args.out.with_extension("partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let written = runtime.block_on(attackmesh_intel::export_bundle(&store, &collection, &mut out));
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).context("export failed");
        }
    };
    out.flush()?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {written} objects of collection {collection} to {}",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
