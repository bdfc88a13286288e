//! `attackmesh siem`: content that makes attackmesh's ATT&CK attribution visible inside the SIEMs
//! its sinks deliver to.
//!
//! - `siem elastic-rules --out rules.ndjson`: Kibana detection rules (import file), one per
//!   ATT&CK technique the loaded rule packs and Sigma rules can attribute, each promoting the
//!   Elasticsearch sink's alerts of that technique with the technique in its `threat` mapping.
//! - `siem splunk-app --out attackmesh.tgz`: the Splunk app for the HEC sink's
//!   `attackmesh:alert` events (CIM mapping, risk-based alerting, ATT&CK dashboard).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use attackmesh_attack::{Engine, Kb};
use attackmesh_siem_export::content::{
    elastic::{RuleOptions, rules_ndjson},
    splunk::app_tgz,
};

/// Arguments of `attackmesh siem`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Kibana detection rules (NDJSON import file): one query rule per ATT&CK technique.
    ElasticRules {
        /// Where to write the import file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Index pattern the rules search: the Elasticsearch sink's index or data stream;
        /// repeatable.
        #[arg(long, value_name = "PATTERN", default_value = "attackmesh-alerts*")]
        index: Vec<String>,
        /// Import the rules enabled (they are imported disabled otherwise).
        #[arg(long)]
        enabled: bool,
        /// Knowledge base instead of the embedded one (compact KB or ATT&CK bundle).
        #[arg(long, value_name = "PATH")]
        kb: Option<PathBuf>,
        /// Rules directory applied over the embedded packs and Sigma rules, as the attribution
        /// service's `rules_dir`.
        #[arg(long, value_name = "DIR")]
        rules_dir: Option<PathBuf>,
    },
    /// The Splunk app for the `attackmesh:alert` source type, as an installable `.tgz`.
    SplunkApp {
        /// Where to write the app archive.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Runs `attackmesh siem`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::ElasticRules {
            out,
            index,
            enabled,
            kb,
            rules_dir,
        } => {
            let kb = Kb::open(kb.as_deref()).context("loading the knowledge base")?;
            let engine =
                Engine::with_rules_dir(kb, rules_dir.as_deref()).context("compiling the rule packs and Sigma rules")?;
            let bytes = rules_ndjson(&engine, &RuleOptions { index, enabled });
            write(&out, &bytes)?;
            eprintln!(
                "wrote {}: {} rules (ATT&CK {})",
                out.display(),
                engine.emittable_techniques().len(),
                engine.kb().attack_version()
            );
        }
        Command::SplunkApp { out } => {
            let bytes = app_tgz(env!("CARGO_PKG_VERSION")).context("building the app archive")?;
            write(&out, &bytes)?;
            eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
