//! `attackmesh serve <service|all>`: runs services on their configured listeners until SIGTERM/SIGINT.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    process::ExitCode,
};

use anyhow::Context as _;
use attackmesh_runtime::{
    auth::{Role, TokenEntry, hash_token},
    config::process_env,
    data_dir,
    peer::PeerConfig,
    secret_file,
    server::{GrpcServer, ServeOptions},
    shutdown, telemetry,
    token::new_token,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A service `serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Service {
    /// ATT&CK attribution (knowledge base, rule packs, actor ranking).
    Attribution,
    /// Detector ingest and enrichment.
    Enrichment,
    /// Delivery to Elasticsearch, Splunk HEC, files and intel.
    SiemExport,
    /// STIX 2.1 / TAXII 2.1 intel sharing.
    Intel,
    /// Stateful rules over entities (one replica).
    Correlation,
    /// Every service in this process.
    All,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Attribution => "attribution",
            Service::Enrichment => "enrichment",
            Service::SiemExport => "siem-export",
            Service::Intel => "intel",
            Service::Correlation => "correlation",
            Service::All => "all",
        }
    }

    fn expand(self) -> Vec<Service> {
        match self {
            Service::All => vec![
                Service::Attribution,
                Service::Enrichment,
                Service::SiemExport,
                Service::Intel,
                Service::Correlation,
            ],
            one => vec![one],
        }
    }

    /// The data directory the service writes, with its setting, when it uses one.
    fn data_dir(self, config: &Config) -> Option<(&'static str, &Path)> {
        match self {
            Service::Enrichment if config.enrichment.reattribute.enabled => {
                Some(("enrichment.data_dir", &config.enrichment.data_dir))
            }
            Service::SiemExport => Some(("siem_export.data_dir", &config.siem_export.data_dir)),
            Service::Intel if config.intel.db.is_none() => Some(("intel.data_dir", &config.intel.data_dir)),
            Service::Correlation => Some(("correlation.data_dir", &config.correlation.data_dir)),
            _ => None,
        }
    }

    fn addr(self, config: &Config) -> SocketAddr {
        match self {
            Service::Attribution | Service::All => config.listen.attribution,
            Service::Enrichment => config.listen.enrichment,
            Service::SiemExport => config.listen.siem_export,
            Service::Intel => config.listen.intel,
            Service::Correlation => config.listen.correlation,
        }
    }
}

/// Arguments of `attackmesh serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which service to run.
    #[arg(value_enum)]
    service: Service,
    /// Configuration file (YAML or JSON); `ATTACKMESH_…` variables override it.
    #[arg(long, short, env = "ATTACKMESH_CONFIG")]
    config: Option<PathBuf>,
    /// Load and validate the configuration (with the data directories of the services named),
    /// warn about secret files other users can read, print `configuration ok`, and exit (64
    /// when invalid).
    #[arg(long)]
    check_config: bool,
}

/// Runs `attackmesh serve`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), &process_env())?;
    for service in args.service.expand() {
        if let Some((setting, dir)) = service.data_dir(&config) {
            data_dir::check(setting, dir)?;
        }
    }
    let exposed = secret_file::check_all(config.secret_files());
    if args.check_config {
        for e in &exposed {
            eprintln!("warning: {e}");
        }
        println!("configuration ok");
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config, args.service, &exposed))
}

async fn serve(mut config: Config, which: Service, exposed: &[secret_file::Exposed]) -> anyhow::Result<ExitCode> {
    let telemetry = telemetry::init(&config.telemetry, &format!("attackmesh-{}", which.name()))?;
    secret_file::warn_all(exposed);
    if which == Service::All {
        wire_correlation(&mut config);
        admit_run_tokens(&mut config)?;
    }
    let signals = shutdown::signals()?;
    let stop = CancellationToken::new();
    // The allocator's free pages go back to the system once per process, whatever it serves.
    let trim = tokio::spawn(attackmesh_runtime::memory::run(stop.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for service in which.expand() {
        let addr = service.addr(&config);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for {}", service.name()))?;
        tasks.spawn(start(service, config.clone(), listener, stop.clone()).await?);
    }
    if let Some(addr) = config.listen.metrics {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        let options = ServeOptions::from_config(&config.runtime())?.http_options();
        let stop = stop.clone().cancelled_owned();
        tasks.spawn(async move {
            attackmesh_runtime::http::serve(listener, attackmesh_runtime::metrics::router(), options, stop).await?;
            Ok(())
        });
    }
    let mut failed = false;
    tokio::select! {
        () = signals => {}
        Some(joined) = tasks.join_next() => failed |= report(joined),
    }
    stop.cancel();
    while let Some(joined) = tasks.join_next().await {
        failed |= report(joined);
    }
    let _ = trim.await;
    telemetry.shutdown();
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// In one process, correlation is on: export's correlation sink reaches this process's
/// correlation listener unless `siem_export.correlation.endpoints` names replicas.
pub(crate) fn wire_correlation(config: &mut Config) {
    if !config.siem_export.correlation.enabled() {
        config.siem_export.correlation.peer.endpoints = vec![format!("http://{}", config.listen.correlation)];
    }
}

/// In one process, every link in use without a token or token file (enrichment's to attribution
/// and export, whose endpoints default to this process's listeners; the intel sink's and intel's
/// to attribution when they have endpoints) presents a token made for this run, one per calling
/// service, admitted as admin under the service's name.
pub(crate) fn admit_run_tokens(config: &mut Config) -> anyhow::Result<()> {
    let Config {
        auth,
        enrichment,
        siem_export,
        intel,
        correlation,
        listen,
        ..
    } = config;
    if siem_export.correlation.enabled() && !correlation.enrichment.has_endpoints() {
        correlation.enrichment.endpoints = vec![format!("http://{}", listen.enrichment)];
    }
    if siem_export.correlation.enabled() && correlation.build_campaigns && !correlation.export.has_endpoints() {
        correlation.export.endpoints = vec![format!("http://{}", listen.siem_export)];
    }
    // (caller, its links, whether a link without endpoints is still used)
    let callers: [(&str, Vec<&mut PeerConfig>, bool); 4] = [
        (
            "enrichment",
            vec![&mut enrichment.attribution.peer, &mut enrichment.export.peer],
            true,
        ),
        (
            "siem-export",
            vec![&mut siem_export.intel.peer, &mut siem_export.correlation.peer],
            false,
        ),
        ("intel", vec![&mut intel.attribution], false),
        (
            "correlation",
            vec![&mut correlation.enrichment, &mut correlation.export],
            false,
        ),
    ];
    for (name, links, defaulted) in callers {
        let mut links: Vec<_> = links
            .into_iter()
            .filter(|l| l.has_no_token() && (defaulted || l.has_endpoints()))
            .collect();
        if links.is_empty() {
            continue;
        }
        let token = new_token()?;
        auth.tokens.push(TokenEntry {
            name: name.into(),
            role: Role::Admin,
            sha256: hash_token(token.expose()),
        });
        for link in &mut links {
            link.token = Some(token.clone());
        }
    }
    Ok(())
}

fn report(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> bool {
    match joined {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "service stopped with an error");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "service task panicked");
            true
        }
    }
}

type ServiceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Builds one service on a bound listener; the returned future serves until `stop` is cancelled.
pub(crate) async fn start(
    service: Service,
    config: Config,
    listener: TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<ServiceFuture> {
    let options = ServeOptions::from_config(&config.runtime())?;
    let shutdown = stop.cancelled_owned();
    Ok(match service {
        Service::Attribution => {
            let server = GrpcServer::new(options).await?;
            Box::pin(async move {
                attackmesh_attribution::server::serve(&config.attribution, server, listener, shutdown).await?;
                Ok(())
            })
        }
        Service::Enrichment => {
            let server = GrpcServer::new(options).await?;
            let mut enrichment = config.enrichment.clone();
            // Unset endpoints mean the neighbours' listen addresses of this same config.
            enrichment.default_endpoints(config.listen.attribution, config.listen.siem_export);
            enrichment.attribution.peer.inherit_tls(&config.tls);
            enrichment.export.peer.inherit_tls(&config.tls);
            let http = match enrichment.http_listen {
                Some(addr) => Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr} for falco http"))?,
                ),
                None => None,
            };
            Box::pin(async move {
                attackmesh_enrichment::server::serve(&enrichment, server, listener, http, shutdown).await?;
                Ok(())
            })
        }
        Service::Intel => {
            let server = GrpcServer::new(options).await?;
            let addr = config.intel.http_listen;
            let http = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for taxii"))?;
            let mut intel = config.intel.clone();
            intel.attribution.inherit_tls(&config.tls);
            Box::pin(async move {
                attackmesh_intel::server::serve(&intel, server, listener, http, shutdown).await?;
                Ok(())
            })
        }
        Service::SiemExport => {
            let server = GrpcServer::new(options).await?;
            let mut export = config.siem_export.clone();
            export.intel.peer.inherit_tls(&config.tls);
            export.correlation.peer.inherit_tls(&config.tls);
            // Technique ids are checked against the release attribution attributes with.
            if export.kb_path.is_none() {
                export.kb_path.clone_from(&config.attribution.kb_path);
            }
            Box::pin(async move {
                attackmesh_siem_export::server::serve(&export, server, listener, shutdown).await?;
                Ok(())
            })
        }
        Service::Correlation => {
            let server = GrpcServer::new(options).await?;
            let mut correlation = config.correlation.clone();
            // Unset: findings go to the enrichment listener of this same config.
            if !correlation.enrichment.has_endpoints() {
                correlation.enrichment.endpoints = vec![format!("http://{}", config.listen.enrichment)];
            }
            // Unset: campaign alerts go to the siem-export listener of this same config.
            if correlation.build_campaigns && !correlation.export.has_endpoints() {
                correlation.export.endpoints = vec![format!("http://{}", config.listen.siem_export)];
            }
            correlation.enrichment.inherit_tls(&config.tls);
            correlation.export.inherit_tls(&config.tls);
            // Campaigns rank groups with the release attribution attributes with.
            if correlation.kb_path.is_none() {
                correlation.kb_path.clone_from(&config.attribution.kb_path);
            }
            Box::pin(async move {
                attackmesh_correlation::server::serve(&correlation, server, listener, shutdown).await?;
                Ok(())
            })
        }
        Service::All => anyhow::bail!("`all` is expanded before services start"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use attackmesh_runtime::secret::Secret;

    use super::*;

    #[test]
    fn serve_all_gives_each_calling_service_a_run_token_where_a_link_has_none() {
        let mut config = Config::default();
        config.siem_export.intel.peer.endpoints = vec!["http://127.0.0.1:50054".into()];
        config.intel.attribution.token = Some(Secret::new("given"));
        config.intel.attribution.endpoints = vec!["http://127.0.0.1:50051".into()];
        admit_run_tokens(&mut config).unwrap();

        let names: Vec<&str> = config.auth.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["enrichment", "siem-export"], "intel brought its own token");
        let enrichment = config.enrichment.attribution.peer.token.clone().unwrap();
        assert_eq!(config.enrichment.export.peer.token.as_ref(), Some(&enrichment));
        let export = config.siem_export.intel.peer.token.clone().unwrap();
        assert_ne!(enrichment, export, "one token per calling service");
        assert_eq!(config.auth.tokens[0].sha256, hash_token(enrichment.expose()));
        assert_eq!(config.auth.tokens[0].role, Role::Admin);
        assert_eq!(
            config.intel.attribution.token.as_ref().map(Secret::expose),
            Some("given")
        );

        // Links not in use (no intel sink, the embedded attribution engine) get nothing.
        let mut config = Config::default();
        admit_run_tokens(&mut config).unwrap();
        assert_eq!(config.auth.tokens.len(), 1);
        assert!(config.siem_export.intel.peer.token.is_none() && config.intel.attribution.token.is_none());
    }
}
