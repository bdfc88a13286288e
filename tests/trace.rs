//! One detector batch is one trace (for OTLP logs: the records logged in one span are): the
//! detector's send span is the root, and enrichment's batch span, attribution's batch span, export's batch span, the sink requests that write the
//! events and intel's `ShareEvents` span are its descendants, over real gRPC on 127.0.0.1 and
//! through export's durable queue. Spans are read back from an in-memory exporter and the
//! parent links are walked.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Write as _,
    path::PathBuf,
    time::Duration,
};

use attackmesh::proto::{AckStatus, IngestRequest, ingest_service_client::IngestServiceClient};
use attackmesh_runtime::auth::Role;
use attackmesh_testkit::{Running, Tokens, bind, port_scan, wait_for_sink, with_token};
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The detector's caller name.
const DETECTOR: &str = "det";
/// The admin identity each service calls the next one with.
const PEER: &str = "adm";

/// Attribution, intel, siem-export (a file sink and an intel sink) and enrichment, each on its
/// own port of 127.0.0.1 and on the test's runtime.
struct Cluster {
    dir: tempfile::TempDir,
    tokens: Tokens,
    enrichment: Running<attackmesh_enrichment::Error>,
    _export: Running<attackmesh_siem_export::Error>,
    _intel: Running<attackmesh_intel::Error>,
    _attribution: Running<attackmesh_attribution::Error>,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::new(&[(DETECTOR, Role::Detector), (PEER, Role::Admin)]);

        let config = attackmesh_attribution::AttributionConfig::default();
        let server = tokens.server().await;
        let attribution = Running::start(|listener, shutdown| async move {
            attackmesh_attribution::server::serve(&config, server, listener, shutdown).await
        })
        .await;

        let config = attackmesh_intel::IntelConfig {
            data_dir: dir.path().join("intel"),
            ..Default::default()
        };
        let (server, (taxii, _)) = (tokens.server().await, bind().await);
        let intel = Running::start(|listener, shutdown| async move {
            attackmesh_intel::server::serve(&config, server, listener, taxii, shutdown).await
        })
        .await;

        let mut config = attackmesh_siem_export::SiemExportConfig {
            data_dir: dir.path().join("export"),
            ..Default::default()
        };
        config.file.path = Some(sink_path(&dir));
        config.intel.peer.endpoints = vec![format!("http://{}", intel.addr)];
        config.intel.peer.token = Some(tokens.bearer(PEER).into());
        let server = tokens.server().await;
        let export = Running::start(|listener, shutdown| async move {
            attackmesh_siem_export::server::serve(&config, server, listener, shutdown).await
        })
        .await;

        let token_file = dir.path().join("enrichment.token");
        std::fs::write(&token_file, tokens.bearer(PEER)).unwrap();
        let mut config = attackmesh_enrichment::EnrichmentConfig {
            data_dir: dir.path().join("enrichment"),
            ..Default::default()
        };
        config.attribution.peer.endpoints = vec![format!("http://{}", attribution.addr)];
        config.attribution.peer.token_file = Some(token_file.clone());
        config.export.peer.endpoints = vec![format!("http://{}", export.addr)];
        config.export.peer.token_file = Some(token_file);
        let server = tokens.server().await;
        let enrichment = Running::start(|listener, shutdown| async move {
            attackmesh_enrichment::server::serve(&config, server, listener, None, shutdown).await
        })
        .await;

        Self {
            dir,
            tokens,
            enrichment,
            _export: export,
            _intel: intel,
            _attribution: attribution,
        }
    }

    fn sink(&self) -> PathBuf {
        sink_path(&self.dir)
    }
}

fn sink_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("sink").join("events.ndjson")
}

/// Name of the span the test opens as the detector.
const DETECTOR_SEND: &str = "detector_send";

/// Spans exported synchronously as they end, so they are there when the test looks.
fn install_tracing() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // The guard only flushes; the simple processor has nothing pending, so it may go.
    let _guard = attackmesh_runtime::telemetry::init_traces_only(provider, "info").unwrap();
    exporter
}

/// The finished spans as an indented tree (roots first), for failure messages.
fn render_tree(spans: &[SpanData]) -> String {
    let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
    let mut out = String::new();
    fn walk(spans: &[SpanData], parent: SpanId, depth: usize, out: &mut String) {
        for s in spans.iter().filter(|s| s.parent_span_id == parent) {
            let _ = writeln!(
                out,
                "{:indent$}{} trace={} span={}",
                "",
                s.name,
                s.span_context.trace_id(),
                s.span_context.span_id(),
                indent = depth * 2
            );
            walk(spans, s.span_context.span_id(), depth + 1, out);
        }
    }
    // Roots: no parent, or a parent that was not recorded here (a remote or unfinished one).
    for root in spans
        .iter()
        .filter(|s| s.parent_span_id == SpanId::INVALID || !ids.contains(&s.parent_span_id))
    {
        let _ = writeln!(
            out,
            "{} trace={} span={} parent={}",
            root.name,
            root.span_context.trace_id(),
            root.span_context.span_id(),
            root.parent_span_id
        );
        walk(spans, root.span_context.span_id(), 1, &mut out);
    }
    out
}

/// Names from the span called `name` (the only one in `trace`) up to its root, following
/// `parent_span_id`; `None` when there is no such span.
fn ancestry(spans: &[SpanData], trace: TraceId, name: &str) -> Option<Vec<String>> {
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let mut span = by_id.values().find(|s| s.name == name)?;
    let mut chain = vec![span.name.to_string()];
    while span.parent_span_id != SpanId::INVALID {
        match by_id.get(&span.parent_span_id) {
            Some(parent) => {
                chain.push(parent.name.to_string());
                span = parent;
            }
            None => {
                chain.push(format!("<missing parent {}>", span.parent_span_id));
                break;
            }
        }
    }
    Some(chain)
}

/// How the detector hands its trace context to enrichment.
#[derive(Clone, Copy, Debug)]
enum Carrier {
    /// In the batch's `trace_context` map (what attackmesh's own clients do).
    Batch,
    /// In the Ingest stream's gRPC metadata only (what gRPC-level instrumentation does).
    Metadata,
    /// In each OTLP log record's `trace_id` and `span_id` (what an OpenTelemetry logging SDK
    /// does for records logged inside a span), sent to `LogsService/Export`.
    OtlpRecord,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_detector_batch_is_one_trace_through_every_hop() {
    let exporter = install_tracing();
    let cluster = Cluster::start().await;
    for (n, carrier) in [Carrier::Batch, Carrier::Metadata, Carrier::OtlpRecord]
        .into_iter()
        .enumerate()
    {
        exporter.reset();
        one_trace(&cluster, &exporter, n, carrier).await;
    }
}

async fn one_trace(cluster: &Cluster, exporter: &InMemorySpanExporter, n: usize, carrier: Carrier) {
    let detector = tracing::info_span!("detector_send");
    let trace_id = detector.context().span().span_context().trace_id();
    let detector_id = detector.context().span().span_context().span_id();
    assert_ne!(trace_id, TraceId::INVALID, "the test's tracer is installed");
    let ids = match carrier {
        Carrier::OtlpRecord => send_otlp(cluster, &detector, n).await,
        Carrier::Batch | Carrier::Metadata => send_batch(cluster, &detector, n, carrier).await,
    };
    drop(detector);
    wait_for_sink(&cluster.sink(), &ids, |_| true).await;

    // A span is recorded when it ends: the sink requests end just after the file is written
    // and intel answered, so give them a moment. Wait for the whole tree (every span of the
    // trace with its parent recorded), so that nothing of this batch ends in the next round.
    let wanted = [
        "ingest_batch",
        "attribute_batch",
        "export_batch",
        "sink_request",
        "share_events",
    ];
    let mut spans = Vec::new();
    for _ in 0..600 {
        spans = exporter.get_finished_spans().unwrap();
        let in_trace: Vec<_> = spans.iter().filter(|s| s.span_context.trace_id() == trace_id).collect();
        let done = |name: &str| in_trace.iter().any(|s| s.name == name);
        let recorded: std::collections::HashSet<SpanId> = in_trace.iter().map(|s| s.span_context.span_id()).collect();
        let whole = in_trace
            .iter()
            .all(|s| s.parent_span_id == SpanId::INVALID || recorded.contains(&s.parent_span_id));
        // One sink request per sink: the file and intel.
        let requests = in_trace.iter().filter(|s| s.name == "sink_request").count();
        if done(DETECTOR_SEND) && wanted.iter().all(|n| done(n)) && whole && requests == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tree = render_tree(&spans);

    let root = spans.iter().find(|s| s.name == DETECTOR_SEND).unwrap();
    assert_eq!(root.span_context.span_id(), detector_id);
    for name in wanted {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert!(!found.is_empty(), "{carrier:?}: no `{name}` span was recorded:\n{tree}");
        for s in found {
            assert_eq!(
                s.span_context.trace_id(),
                trace_id,
                "{carrier:?}: `{name}` left the detector's trace:\n{tree}"
            );
        }
    }
    assert_eq!(
        ancestry(&spans, trace_id, "attribute_batch").unwrap(),
        ["attribute_batch", "ingest_batch", DETECTOR_SEND],
        "{carrier:?}: attribution's batch span descends from enrichment's, which descends from the detector's:\n{tree}"
    );
    assert_eq!(
        ancestry(&spans, trace_id, "sink_request").unwrap(),
        ["sink_request", "export_batch", "ingest_batch", DETECTOR_SEND],
        "{carrier:?}: the sink request descends from export's batch span, through the durable queue:\n{tree}"
    );
    assert_eq!(
        ancestry(&spans, trace_id, "share_events").unwrap(),
        [
            "share_events",
            "sink_request",
            "export_batch",
            "ingest_batch",
            DETECTOR_SEND
        ],
        "{carrier:?}: intel's ShareEvents span descends from the intel sink's request:\n{tree}"
    );
}

/// Sends three detections as one Ingest batch inside `detector`; returns their ids.
async fn send_batch(cluster: &Cluster, detector: &tracing::Span, n: usize, carrier: Carrier) -> BTreeSet<String> {
    let mut client = IngestServiceClient::new(cluster.enrichment.channel());
    let ids: BTreeSet<String> = (0..3).map(|i| format!("trace-{n}-{i}")).collect();
    let context = detector.in_scope(attackmesh_runtime::telemetry::inject_map);
    let batch = IngestRequest {
        batch_id: 1,
        events: ids.iter().map(|id| port_scan(id, "203.0.113.80")).collect(),
        trace_context: match carrier {
            Carrier::Batch => context.clone(),
            Carrier::Metadata | Carrier::OtlpRecord => HashMap::new(),
        },
    };
    let mut request = with_token(tokio_stream::iter(vec![batch]), &cluster.tokens.bearer(DETECTOR));
    if let Carrier::Metadata = carrier {
        for (key, value) in &context {
            request.metadata_mut().insert(
                tonic::metadata::MetadataKey::from_bytes(key.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
    }
    let answer = async { client.ingest(request).await.unwrap().into_inner().message().await }
        .instrument(detector.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, AckStatus::Durable as i32, "{answer:?}");
    assert_eq!(answer.accepted, 3);
    ids
}

/// Logs three records inside `detector` and exports them over OTLP with no context in the
/// request's metadata: only the records' ids carry the trace. Returns their event ids.
async fn send_otlp(cluster: &Cluster, detector: &tracing::Span, n: usize) -> BTreeSet<String> {
    use attackmesh::formats::otlp::{
        otlp_from_request,
        proto::{
            collector::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
            common::{AnyValue, any_value::Value},
            logs::{LogRecord, ResourceLogs, ScopeLogs},
        },
    };
    let context = detector.context();
    let span = context.span();
    let span_context = span.span_context();
    let now = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap()).unwrap();
    let records = (0..3)
        .map(|i| LogRecord {
            time_unix_nano: now,
            severity_number: 13,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("port scan trace-{n}-{i}"))),
            }),
            trace_id: span_context.trace_id().to_bytes().to_vec(),
            span_id: span_context.span_id().to_bytes().to_vec(),
            flags: 1,
            ..Default::default()
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let ids = otlp_from_request(request.clone())
        .into_iter()
        .map(|r| r.result.unwrap().event.event_id)
        .collect();
    let mut client = LogsServiceClient::new(cluster.enrichment.channel());
    let answer = client
        .export(with_token(request, &cluster.tokens.bearer(DETECTOR)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);
    ids
}
