//! `attackmesh token`: create tokens and compute the digests stored in configuration.

use std::{io::Read, process::ExitCode};

use attackmesh_runtime::{
    auth::{Role, hash_token},
    token::new_token,
};

/// Arguments of `attackmesh token`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Generate a random token; prints the token (give it to the caller) and its config entry.
    New {
        /// Caller identity, e.g. `suricata-edge-01`.
        #[arg(long)]
        name: String,
        /// Role: detector, analyst or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Read a token on stdin and print its SHA-256 digest, as `auth.tokens[].sha256` wants it.
    Hash,
}

fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("unknown role `{s}` (detector, analyst, admin)"))
}

/// Runs `attackmesh token`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::New { name, role } => {
            let token = new_token()?;
            println!("token: {}", token.expose());
            println!("# config entry (auth.tokens):");
            println!(
                "- name: {name}\n  role: {role}\n  sha256: {}",
                hash_token(token.expose())
            );
        }
        Action::Hash => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            anyhow::ensure!(!token.trim().is_empty(), "no token on stdin");
            println!("{}", hash_token(&token));
        }
    }
    Ok(ExitCode::SUCCESS)
}
