//! `attackmesh`: one binary for every service and tool. Subcommands live in `cmd/`; this file
//! only parses arguments and maps errors to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod config;

/// attackmesh: attribute security detections to MITRE ATT&CK and deliver them to SIEMs and intel partners.
#[derive(Parser)]
#[command(name = "attackmesh", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one service (or all of them in one process).
    Serve(cmd::serve::Args),
    /// Attribute a simulated three-detector intrusion over real gRPC and write the results to a folder.
    Demo(cmd::demo::Args),
    /// Ship detector log files to the ingest service.
    Ship(cmd::ship::Args),
    /// Attribute detector records offline and print enriched events as JSON lines.
    Enrich(cmd::enrich::Args),
    /// Inspect or rebuild the ATT&CK knowledge base.
    Kb(cmd::kb::Args),
    /// Turn enriched events into an ATT&CK Navigator layer.
    Navigator(cmd::navigator::Args),
    /// Ask a service's gRPC health endpoint whether it is SERVING.
    Health(cmd::health::Args),
    /// Inspect and replay the siem-export dead-letter queues.
    Dlq(cmd::dlq::Args),
    /// Export an intel collection as one STIX 2.1 bundle.
    Intel(cmd::intel::Args),
    /// Write SIEM content: Kibana detection rules per ATT&CK technique, the Splunk app.
    Siem(cmd::siem::Args),
    /// Manage bearer tokens.
    Token(cmd::token::Args),
    /// Measure the pipeline's throughput, latency and memory against a no-op baseline.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    attackmesh_runtime::memory::tune();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Ship(args) => cmd::ship::run(args),
        Command::Enrich(args) => cmd::enrich::run(args),
        Command::Kb(args) => cmd::kb::run(args),
        Command::Navigator(args) => cmd::navigator::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Siem(args) => cmd::siem::run(args),
        Command::Health(args) => cmd::health::run(args),
        Command::Intel(args) => cmd::intel::run(args),
        Command::Dlq(args) => cmd::dlq::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cmd::exit_code(&err))
        }
    }
}
