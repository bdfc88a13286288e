//! `attackmesh health`: asks a service's gRPC health endpoint whether it is SERVING and exits 0
//! only then. For probes where the listener speaks TLS (kubelet's native gRPC probes cannot),
//! `helm test`, and scripts; it reads nothing but the files named on its command line.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use attackmesh_runtime::tls::PeerTls;
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Arguments of `attackmesh health`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address of the service's gRPC listener, `HOST:PORT`.
    #[arg(long)]
    addr: String,
    /// Service to ask about, e.g. `attackmesh.v1.AttributionService`; empty: the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    /// PEM CA bundle that the server's certificate must chain to; turns TLS on.
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// PEM client certificate to present (for listeners that require mutual TLS).
    #[arg(long, requires_all = ["tls_key_file", "tls_ca_file"])]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--tls-cert-file`.
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Name expected in the server's certificate (default: the host of `--addr`).
    #[arg(long, requires = "tls_ca_file")]
    tls_server_name: Option<String>,
    /// Deadline for connecting and for the answer, e.g. `2s`.
    #[arg(long, default_value = "5s", value_parser = humantime_serde::re::humantime::parse_duration)]
    timeout: Duration,
}

/// Runs `attackmesh health`: exit 0 when SERVING, 1 otherwise (the status or the error is printed).
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(check(&args))?;
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check(args: &Args) -> anyhow::Result<ServingStatus> {
    let (host, _port) = args.addr.rsplit_once(':').context("--addr must be HOST:PORT")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = PeerTls {
        cert_file: args.tls_cert_file.clone(),
        key_file: args.tls_key_file.clone(),
        ca_file: args.tls_ca_file.clone(),
        server_name: args.tls_server_name.clone(),
    }
    .client(host)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", args.addr))
        .with_context(|| format!("--addr `{}` is not HOST:PORT", args.addr))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).context("tls")?;
    }
    let channel = tokio::time::timeout(args.timeout, endpoint.connect())
        .await
        .with_context(|| format!("{}: no connection within {:?}", args.addr, args.timeout))?
        .with_context(|| format!("{}: cannot connect", args.addr))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .with_context(|| format!("{}: health check of `{}` failed", args.addr, args.service))?;
    Ok(answer.into_inner().status())
}
