//! One detector batch is one trace: the detector's send span is the root, and enrichment's
//! batch span, attribution's batch span, export's batch span and the sink request that writes
//! the events are its descendants, over real gRPC on 127.0.0.1 and through export's durable
//! queue. Spans are read back from an in-memory exporter and the parent links are walked.

#![allow(clippy::unwrap_used)]

#[path = "../services/enrichment/tests/common/mod.rs"]
mod common;

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Write as _,
    time::Duration,
};

use attackmesh::proto::{AckStatus, IngestRequest};
use common::{Cluster, DETECTOR_TOKEN, port_scan, wait_for_sink, with_token};
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_detector_batch_is_one_trace_through_every_hop() {
    let exporter = install_tracing();
    let cluster = Cluster::start().await;
    for (n, carrier) in [Carrier::Batch, Carrier::Metadata].into_iter().enumerate() {
        exporter.reset();
        one_trace(&cluster, &exporter, n, carrier).await;
    }
}

async fn one_trace(cluster: &Cluster, exporter: &InMemorySpanExporter, n: usize, carrier: Carrier) {
    let mut client = cluster.ingest_client().await;
    let detector = tracing::info_span!("detector_send");
    let trace_id = detector.context().span().span_context().trace_id();
    let detector_id = detector.context().span().span_context().span_id();
    assert_ne!(trace_id, TraceId::INVALID, "the test's tracer is installed");
    let ids: BTreeSet<String> = (0..3).map(|i| format!("trace-{n}-{i}")).collect();
    let context = detector.in_scope(attackmesh_runtime::telemetry::inject_map);
    let batch = IngestRequest {
        batch_id: 1,
        events: ids.iter().map(|id| port_scan(id, "203.0.113.80")).collect(),
        trace_context: match carrier {
            Carrier::Batch => context.clone(),
            Carrier::Metadata => HashMap::new(),
        },
    };
    let mut request = with_token(tokio_stream::iter(vec![batch]), DETECTOR_TOKEN);
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
    drop(detector);
    assert_eq!(answer.status, AckStatus::Durable as i32, "{answer:?}");
    assert_eq!(answer.accepted, 3);
    wait_for_sink(&cluster.sink(), &ids, |_| true).await;

    // The sink request span ends just after the file is written; give it a moment.
    let wanted = ["ingest_batch", "attribute_batch", "export_batch", "sink_request"];
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = exporter.get_finished_spans().unwrap();
        let done = |name: &str| {
            spans
                .iter()
                .any(|s| s.name == name && s.span_context.trace_id() == trace_id)
        };
        if done(DETECTOR_SEND) && wanted.iter().all(|n| done(n)) {
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
}
