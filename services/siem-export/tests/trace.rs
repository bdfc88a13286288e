//! A sink request joins the trace of the Export batch that carried its events: the W3C context
//! stored in the queue record becomes the parent of the `sink_request` span.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use attackmesh_siem_export::{
    config::{BatchConfig, FsyncPolicy, RetryConfig},
    dlq::DeadLetterQueue,
    driver::Driver,
    queue::{EncodedEvent, Queue, QueueSettings},
    sinks::{ItemOutcome, QueuedEvent, Sink},
    status::SinkStats,
};
use attackmesh_testkit::fixtures;
use futures::future::BoxFuture;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Default)]
struct Capture(Mutex<Vec<String>>);

impl Sink for Capture {
    fn kind(&self) -> &'static str {
        "capture"
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let cx = tracing::Span::current().context();
            self.0
                .lock()
                .unwrap()
                .push(cx.span().span_context().trace_id().to_string());
            vec![ItemOutcome::Delivered; events.len()]
        })
    }
}

#[tokio::test]
async fn the_sink_request_is_a_child_of_the_batch_trace() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let settings = QueueSettings {
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        fsync: FsyncPolicy::Batch,
    };
    let (queue, _) = Queue::open("capture", &dir.path().join("q"), settings).unwrap();
    let trace = Arc::new(HashMap::from([(
        "traceparent".to_owned(),
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01"),
    )]));
    let encoded: Vec<_> = (0..3)
        .map(|i| EncodedEvent::new(fixtures::event(i), trace.clone(), 1))
        .collect();
    queue.append(&encoded, 1).unwrap();

    let sink = Arc::new(Capture::default());
    let driver = Driver {
        name: "capture",
        sink: sink.clone(),
        reader: queue.reader().unwrap(),
        dlq: Arc::new(DeadLetterQueue::open(dir.path(), "capture").unwrap()),
        stats: Arc::new(SinkStats::default()),
        batch: BatchConfig::default(),
        retry: RetryConfig::default(),
        kb: attackmesh_attack::Kb::embedded().unwrap(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(driver.run(stop.clone(), Duration::from_secs(1)));
    for _ in 0..500 {
        if !sink.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let seen = sink.0.lock().unwrap().clone();
    assert_eq!(seen, vec![TRACE_ID.to_owned()]);
}
