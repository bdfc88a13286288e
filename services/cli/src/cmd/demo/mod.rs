//! `attackmesh demo`: the main job on a laptop. Starts the attribution service on loopback,
//! plays a multi-stage intrusion seen by three simulated detectors (and, optionally, real
//! detector files), attributes every detection over real gRPC, writes the results to a folder
//! and prints what a SOC analyst wants to know first.

mod report;
mod scenario;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Context as _;
use attackmesh::{
    formats::{Format, Reader, open_path},
    proto::{AttributeRequest, DetectionEvent, EnrichedEvent, attribution_service_client::AttributionServiceClient},
};
use attackmesh_runtime::{
    auth::{AuthConfig, Role, TokenEntry, hash_token},
    config::RuntimeConfig,
    server::{GrpcServer, ServeOptions},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataValue, transport::Channel};

use crate::config::Config;

/// Events per `Attribute` batch.
const BATCH: usize = 500;

/// Arguments of `attackmesh demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folder for the results (created; existing result files are replaced).
    #[arg(long, default_value = "attackmesh-demo")]
    out: PathBuf,
    /// Also replay a detector file, as FORMAT:PATH (e.g. `cowrie:cowrie.json`); repeatable.
    #[arg(long = "replay", value_name = "FORMAT:PATH")]
    replay: Vec<String>,
    /// Keep the attribution service running after the demo (until Ctrl-C) and print its address.
    #[arg(long)]
    serve: bool,
}

/// A group of detections from one detector.
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) events: Vec<DetectionEvent>,
}

/// Runs `attackmesh demo`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut sources: Vec<Source> = scenario::intrusion(chrono::Utc::now() - chrono::Duration::hours(1))
        .into_iter()
        .map(|d| Source {
            name: d.name.to_owned(),
            events: d.events,
        })
        .collect();
    for spec in &args.replay {
        sources.push(replay(spec)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(demo(args, sources))
}

fn replay(spec: &str) -> anyhow::Result<Source> {
    let (format, path) = spec.split_once(':').context("--replay wants FORMAT:PATH")?;
    let format: Format = format.parse().map_err(|e| anyhow::anyhow!("--replay {spec}: {e}"))?;
    let path = PathBuf::from(path);
    let reader = open_path(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut events = Vec::new();
    for record in Reader::new(format, reader, path.display().to_string()) {
        match record.result {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(e) => eprintln!("{}:{}: {e}", path.display(), record.line),
        }
    }
    Ok(Source {
        name: format!("{} ({})", format.name(), path.display()),
        events,
    })
}

async fn demo(args: Args, sources: Vec<Source>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let config = Config {
        auth: AuthConfig {
            tokens: vec![TokenEntry {
                name: "demo".into(),
                role: Role::Admin,
                sha256: hash_token(&token),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let options = ServeOptions::from_config(&RuntimeConfig {
        auth: config.auth.clone(),
        ..Default::default()
    })?;
    let server = GrpcServer::new(options).await?;
    let attribution_config = config.attribution.clone();
    let shutdown = stop.clone().cancelled_owned();
    let service = tokio::spawn(async move {
        attackmesh_attribution::server::serve(&attribution_config, server, listener, shutdown).await
    });

    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = AttributionServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    })
    .max_decoding_message_size(attackmesh::limits::MAX_MESSAGE_BYTES);
    let info = client
        .get_knowledge_base_info(attackmesh::proto::GetKnowledgeBaseInfoRequest {})
        .await?
        .into_inner();

    let mut per_source = Vec::new();
    for source in sources {
        let enriched = attribute_all(&mut client, source.events).await?;
        per_source.push((source.name, enriched));
    }
    let elapsed = started.elapsed();
    let report = report::write(&args.out, &per_source)?;
    report.print(&per_source, &info, addr, elapsed);

    if args.serve {
        println!("\nattribution service listening on {addr} (token: {token}); Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    stop.cancel();
    service.await.context("attribution service task")??;
    Ok(ExitCode::SUCCESS)
}

async fn attribute_all<C>(
    client: &mut AttributionServiceClient<C>,
    mut events: Vec<DetectionEvent>,
) -> anyhow::Result<Vec<EnrichedEvent>>
where
    C: tonic::client::GrpcService<tonic::body::Body>,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    for event in &mut events {
        attackmesh::validate::prepare_detection(event);
    }
    let batches: Vec<AttributeRequest> = events
        .chunks(BATCH)
        .enumerate()
        .map(|(i, chunk)| AttributeRequest {
            batch_id: i as u64,
            events: chunk.to_vec(),
            trace_context: Default::default(),
        })
        .collect();
    let expected = batches.len();
    let mut responses = client.attribute(tokio_stream::iter(batches)).await?.into_inner();
    let mut out = Vec::with_capacity(events.len());
    let mut events = events.into_iter();
    let mut received = 0;
    while let Some(response) = responses.message().await? {
        received += 1;
        for attribution in response.attributions {
            let detection = events.next().context("more attributions than events")?;
            out.push(attackmesh_attribution::enriched_event(detection, attribution, 1));
        }
    }
    anyhow::ensure!(
        received == expected,
        "attribution answered {received} of {expected} batches"
    );
    anyhow::ensure!(events.next().is_none(), "some events were not attributed");
    Ok(out)
}
