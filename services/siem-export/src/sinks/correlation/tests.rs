use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use attackmesh::proto::{
    Endpoint, ObserveRequest, ObserveResponse,
    correlation_service_server::{CorrelationService, CorrelationServiceServer},
};
use attackmesh_runtime::{peer::PeerConfig, secret::Secret};
use tonic::{Request, Response, Status};

use super::*;
use crate::sinks::{ItemOutcome, QueuedEvent, Sink};
use attackmesh::held::EventView;

/// What a fake replica saw: (replica_index, replica_count, event ids) per call.
type Seen = Arc<Mutex<Vec<(u32, u32, Vec<String>)>>>;

/// A replica that records (replica_index, replica_count, event ids) and answers `fail` or ok.
#[derive(Clone)]
struct FakeReplica {
    seen: Seen,
    fail: bool,
}

#[tonic::async_trait]
impl CorrelationService for FakeReplica {
    async fn observe(&self, request: Request<ObserveRequest>) -> Result<Response<ObserveResponse>, Status> {
        let r = request.into_inner();
        let ids = r.events.iter().map(|e| e.event_id.clone()).collect();
        self.seen.lock().unwrap().push((r.replica_index, r.replica_count, ids));
        if self.fail {
            return Err(Status::unavailable("disk full"));
        }
        Ok(Response::new(ObserveResponse::default()))
    }
}

async fn replica(fail: bool) -> (String, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CorrelationServiceServer::new(FakeReplica {
                seen: seen.clone(),
                fail,
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), seen)
}

fn queued(i: u64, src: &str, service: &str) -> Arc<QueuedEvent> {
    let mut event = attackmesh_testkit::fixtures::event(i);
    event.source = Some(Endpoint {
        ip: src.into(),
        ..Default::default()
    });
    event.destination = None;
    event.source_service = service.into();
    Arc::new(QueuedEvent {
        seq: i,
        event: Arc::new(event.into()),
        trace_context: Arc::new(HashMap::new()),
        enqueued_at_micros: 0,
        compact_for: None,
    })
}

fn config(endpoints: Vec<String>) -> CorrelationSinkConfig {
    CorrelationSinkConfig {
        peer: PeerConfig {
            endpoints,
            token: Some(Secret::new("run-token-value")),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn every_entity_meets_on_one_replica_and_findings_are_not_sent_back() {
    let (a, seen_a) = replica(false).await;
    let (b, seen_b) = replica(false).await;
    let sink = CorrelationSink::new(&config(vec![a, b])).unwrap();
    sink.start().await.unwrap();
    let sources: Vec<String> = (0..40).map(|i| format!("10.0.{}.{}", i / 7, i % 7)).collect();
    let mut events: Vec<_> = (0..200u64)
        .map(|i| queued(i, &sources[i as usize % 40], "zeek"))
        .collect();
    events.push(queued(999, "10.0.0.1", attackmesh::CORRELATION_DETECTOR));
    let outcomes = sink.send(&events).await;
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Delivered), "{outcomes:?}");
    let mut replica_of: HashMap<String, u32> = HashMap::new();
    let mut total = 0;
    for seen in [&seen_a, &seen_b] {
        for (index, count, ids) in seen.lock().unwrap().iter() {
            assert_eq!(*count, 2);
            for id in ids {
                assert_ne!(id, "evt-00000999", "a finding went back to correlation");
                let n: usize = id.trim_start_matches("evt-").parse().unwrap();
                let entity = sources[n % 40].clone();
                total += 1;
                assert_eq!(
                    *replica_of.entry(entity.clone()).or_insert(*index),
                    *index,
                    "{entity} split"
                );
            }
        }
    }
    assert_eq!(total, 200, "each event once (one entity each)");
    assert_eq!(
        replica_of.values().collect::<std::collections::BTreeSet<_>>().len(),
        2,
        "both replicas own some"
    );
}

#[tokio::test]
async fn a_replica_that_fails_gets_its_events_retried_and_only_those() {
    let (a, _) = replica(false).await;
    let (b, _) = replica(true).await;
    let sink = CorrelationSink::new(&config(vec![a, b])).unwrap();
    sink.start().await.unwrap();
    let events: Vec<_> = (0..50u64).map(|i| queued(i, &format!("10.1.0.{i}"), "zeek")).collect();
    let outcomes = sink.send(&events).await;
    for (e, o) in events.iter().zip(&outcomes) {
        let owner = attackmesh_runtime::partition::owner(&e.event.event().source.as_ref().unwrap().ip, 2);
        assert_eq!(
            matches!(o, ItemOutcome::Retry(why) if why.contains("disk full")),
            owner == 1,
            "{o:?}"
        );
    }
}

#[test]
fn balanced_names_are_refused() {
    let err = config(vec!["dns:///corr-headless:50056".into()])
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("each replica"), "{err}");
    config(vec!["http://corr-0.corr:50056".into()]).validate().unwrap();
}
