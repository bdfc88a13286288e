use std::collections::HashMap;

use attackmesh::proto::{EnrichedEvent, ExportRequest};
use attackmesh_testkit::fixtures;
use prost::Message;

use super::*;

fn request() -> ExportRequest {
    ExportRequest {
        batch_id: 42,
        events: (0..3).map(fixtures::event).collect(),
        trace_context: HashMap::from([("traceparent".to_owned(), "00-ab-cd-01".to_owned())]),
        compact_for_attack_version: "18.1".into(),
    }
}

#[test]
fn a_batch_reads_as_an_export_request_and_an_export_request_as_a_batch() {
    let request = request();
    let batch = EncodedExport::decode(request.encode_to_vec().as_slice()).unwrap();
    assert_eq!(batch.batch_id, 42);
    assert_eq!(batch.trace_context, request.trace_context);
    let events: Vec<EnrichedEvent> = batch
        .events
        .iter()
        .map(|b| EnrichedEvent::decode(b.clone()).unwrap())
        .collect();
    assert_eq!(events, request.events);
    assert_eq!(EncodedExport::from(request.clone()), batch);
    assert_eq!(
        ExportRequest::decode(batch.encode_to_vec().as_slice()).unwrap(),
        request
    );
    assert_eq!(
        batch.encode_to_vec(),
        request.encode_to_vec(),
        "the same bytes either way"
    );
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let mut server = ExportServer::new(ExportState::new(Vec::new(), std::time::Duration::from_secs(1)));
    let request = http::Request::builder()
        .uri("/attackmesh.v1.ExportService/Import")
        .body(Body::default())
        .unwrap();
    let response = server.call(request).await.unwrap();
    assert_eq!(
        response.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(b"12".as_slice())
    );
}
