use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use attackmesh::proto::{
    EventRejection, FieldViolation, ListCollectionsRequest, ListCollectionsResponse, ShareEventsRequest,
    ShareEventsResponse, ShareIndicatorsRequest, ShareIndicatorsResponse,
    intel_service_server::{IntelService, IntelServiceServer},
};
use attackmesh_runtime::{backoff::Backoff, peer::PeerConfig, secret::Secret};
use tonic::{Request, Response, Status};

use super::{service::outcome_of, *};
use crate::sinks::{ItemOutcome, QueuedEvent, Sink};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What the fake intel saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    traceparent: Option<String>,
    collection_id: String,
    event_ids: Vec<String>,
}

/// How the fake intel answers a call.
type Answer = dyn Fn(&ShareEventsRequest) -> Result<ShareEventsResponse, Status> + Send + Sync;

/// An intel that records calls and answers with `answer`.
#[derive(Clone)]
struct FakeIntel {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answer>,
}

#[tonic::async_trait]
impl IntelService for FakeIntel {
    async fn share_indicators(
        &self,
        _: Request<ShareIndicatorsRequest>,
    ) -> Result<Response<ShareIndicatorsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn list_collections(
        &self,
        _: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn share_events(
        &self,
        request: Request<ShareEventsRequest>,
    ) -> Result<Response<ShareEventsResponse>, Status> {
        let header = |k: &str| {
            request
                .metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let seen = Seen {
            authorization: header("authorization"),
            traceparent: header("traceparent"),
            collection_id: request.get_ref().collection_id.clone(),
            event_ids: request.get_ref().events.iter().map(|e| e.event_id.clone()).collect(),
        };
        self.seen.lock().unwrap().push(seen);
        (self.answer)(request.get_ref()).map(Response::new)
    }
}

async fn fake(
    answer: impl Fn(&ShareEventsRequest) -> Result<ShareEventsResponse, Status> + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let intel = FakeIntel {
        seen: seen.clone(),
        answer: Arc::new(answer),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IntelServiceServer::new(intel))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), seen)
}

fn queued(i: u64, confidence: f64) -> Arc<QueuedEvent> {
    let mut event = attackmesh_testkit::fixtures::event(i);
    event.confidence_score = confidence;
    Arc::new(QueuedEvent {
        seq: i,
        event: Arc::new(event.into()),
        trace_context: Arc::new(HashMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())])),
        enqueued_at_micros: 0,
        compact_for: None,
    })
}

fn config(endpoint: &str) -> IntelSinkConfig {
    IntelSinkConfig {
        peer: PeerConfig {
            endpoints: vec![endpoint.into()],
            token: Some(Secret::new("run-token-value")),
            ..Default::default()
        },
        collection_id: "shared".into(),
        ..Default::default()
    }
}

async fn sink(config: &IntelSinkConfig) -> IntelSink {
    let sink = IntelSink::new(config).unwrap();
    sink.start().await.unwrap();
    sink
}

#[tokio::test]
async fn a_batch_is_one_call_with_token_and_trace_and_rejections_become_dead_letters() {
    let (endpoint, seen) = fake(|req| {
        Ok(ShareEventsResponse {
            accepted: req.events.len() as u32 - 1,
            rejections: vec![EventRejection {
                index: 1,
                event_id: req.events[1].event_id.clone(),
                violations: vec![FieldViolation {
                    field: "revision".into(),
                    description: "must be at least 1".into(),
                }],
            }],
            ..Default::default()
        })
    })
    .await;
    let mut c = config(&endpoint);
    c.min_confidence = 0.5;
    let sink = sink(&c).await;
    let events = vec![queued(0, 0.9), queued(1, 0.1), queued(2, 0.8), queued(3, 0.7)];
    let outcomes = sink.send(&events).await;
    assert_eq!(
        outcomes,
        vec![
            ItemOutcome::Delivered,
            ItemOutcome::Delivered,
            ItemOutcome::Dead("intel rejected the event: revision: must be at least 1".into()),
            ItemOutcome::Delivered,
        ],
        "the low-confidence event is not sent; the rejection maps back to its event"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].event_ids, vec!["evt-00000000", "evt-00000002", "evt-00000003"]);
    assert_eq!(seen[0].collection_id, "shared");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer run-token-value"));
    assert_eq!(seen[0].traceparent.as_deref(), Some(TRACEPARENT));
}

#[tokio::test]
async fn only_low_confidence_events_send_nothing() {
    let (endpoint, seen) = fake(|_| Ok(ShareEventsResponse::default())).await;
    let mut c = config(&endpoint);
    c.min_confidence = 0.95;
    let outcomes = sink(&c).await.send(&[queued(0, 0.9)]).await;
    assert_eq!(outcomes, vec![ItemOutcome::Delivered]);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn failures_are_retried_and_a_refused_batch_is_dead() {
    let (endpoint, _) = fake(|_| Err(Status::unavailable("store busy"))).await;
    let outcomes = sink(&config(&endpoint)).await.send(&[queued(0, 1.0)]).await;
    assert!(
        matches!(&outcomes[0], ItemOutcome::Retry(why) if why.contains("Unavailable") && why.contains("store busy"))
    );
    for (code, dead) in [
        (tonic::Code::Unavailable, false),
        (tonic::Code::DeadlineExceeded, false),
        (tonic::Code::ResourceExhausted, false),
        (tonic::Code::Internal, false),
        (tonic::Code::Unknown, false),
        (tonic::Code::Unauthenticated, false),
        (tonic::Code::PermissionDenied, false),
        (tonic::Code::NotFound, false),
        (tonic::Code::InvalidArgument, true),
    ] {
        let outcome = outcome_of(&Status::new(code, "why"));
        assert_eq!(matches!(outcome, ItemOutcome::Dead(_)), dead, "{code:?}: {outcome:?}");
    }
    // Nobody listening: retried, with a reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let outcomes = sink(&config(&format!("http://{closed}")))
        .await
        .send(&[queued(0, 1.0)])
        .await;
    assert!(matches!(&outcomes[0], ItemOutcome::Retry(_)), "{outcomes:?}");
}

#[tokio::test]
async fn the_token_file_is_reread_and_never_shows_in_errors_or_debug() {
    let (endpoint, seen) = fake(|_| Err(Status::unauthenticated("unknown token"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intel.token");
    std::fs::write(&path, "first-token-value\n").unwrap();
    let mut c = config(&endpoint);
    c.peer.token = None;
    c.peer.token_file = Some(path.clone());
    let sink = sink(&c).await;
    let outcomes = sink.send(&[queued(0, 1.0)]).await;
    let ItemOutcome::Retry(why) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(why.contains("token_file"), "{why}");
    std::fs::write(&path, "second-token-value").unwrap();
    sink.send(&[queued(0, 1.0)]).await;
    let auth: Vec<_> = seen.lock().unwrap().iter().map(|s| s.authorization.clone()).collect();
    assert_eq!(
        auth,
        vec![
            Some("Bearer first-token-value".into()),
            Some("Bearer second-token-value".into())
        ]
    );
    std::fs::remove_file(&path).unwrap();
    let outcomes = sink.send(&[queued(0, 1.0)]).await;
    let shown = format!("{outcomes:?} {c:?}");
    assert!(
        !shown.contains("token-value") && shown.contains("intel.token"),
        "{shown}"
    );
}

#[test]
fn config_is_checked_and_https_needs_a_ca() {
    let bad = |f: fn(&mut IntelSinkConfig)| {
        let mut c = config("http://intel:50054");
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    config("http://intel:50054").validate().unwrap();
    config("dns:///intel-headless.ns.svc:50054").validate().unwrap();
    IntelSinkConfig::default().validate().unwrap();
    assert!(bad(|c| c.peer.endpoints = vec!["ftp://intel:50054".into()]).contains("intel.endpoints"));
    assert!(bad(|c| c.peer.endpoints = vec!["intel".into()]).contains("port"));
    assert!(bad(|c| c.min_confidence = 1.5).contains("intel.min_confidence"));
    assert!(
        bad(|c| {
            c.peer.token = None;
            c.peer.token_file = Some("/does/not/exist".into());
        })
        .contains("intel.token_file")
    );
    let Err(err) = IntelSink::new(&config("https://intel:443")) else {
        panic!("https without a CA")
    };
    assert!(err.to_string().contains("tls.ca_file"), "{err}");
    let shown = format!("{:?}", config("http://intel:50054"));
    assert!(!shown.contains("run-token-value"), "{shown}");
}

#[test]
fn the_link_may_set_its_own_request_timeout_and_backoff() {
    let base = crate::config::RetryConfig::default();
    let mut c = config("http://intel:50054");
    assert_eq!(c.retry(&base), base, "unset: the retry section's");
    c.peer.request_timeout = Some(std::time::Duration::from_secs(5));
    c.peer.backoff = Some(Backoff::new(
        std::time::Duration::from_millis(20),
        std::time::Duration::from_secs(2),
    ));
    let retry = c.retry(&base);
    assert_eq!(retry.request_timeout, std::time::Duration::from_secs(5));
    assert_eq!(retry.backoff(), c.peer.backoff.unwrap());
    assert_eq!(retry.max_duration, base.max_duration);
}
