//! The attribution service over real gRPC on 127.0.0.1: authentication, roles, validation errors,
//! health and graceful shutdown, as a detector author or operator would see them.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use attackmesh::proto::{
    AttributeRequest, DetectionEvent, Endpoint, GetKnowledgeBaseInfoRequest, GetTechniqueRequest,
    attribution_service_client::AttributionServiceClient,
};
use attackmesh_attribution::AttributionConfig;
use attackmesh_runtime::auth::Role;
use attackmesh_testkit::{Running, Tokens, with_token};
use tonic::Code;

/// Callers: a detector, an analyst and an admin, presenting `det-token`, `ana-token` and
/// `adm-token`.
fn tokens() -> Tokens {
    Tokens::new(&[("det", Role::Detector), ("ana", Role::Analyst), ("adm", Role::Admin)])
}

/// Attribution on 127.0.0.1, SERVING.
async fn start() -> Running<attackmesh_attribution::Error> {
    let server = tokens().server().await;
    Running::start(|listener, shutdown| async move {
        attackmesh_attribution::server::serve(&AttributionConfig::default(), server, listener, shutdown).await
    })
    .await
}

fn event(ip: &str) -> DetectionEvent {
    DetectionEvent {
        event_id: "it-1".into(),
        timestamp: Some(chrono::Utc::now().into()),
        source_service: "netmon".into(),
        detector_kind: 1,
        event_type: "port_scan".into(),
        source: Some(Endpoint {
            ip: ip.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn tokens_and_roles_are_enforced_per_rpc() {
    let s = start().await;
    let mut client = AttributionServiceClient::new(s.channel());

    let err = client
        .get_knowledge_base_info(GetKnowledgeBaseInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = client
        .get_knowledge_base_info(with_token(GetKnowledgeBaseInfoRequest {}, "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    let err = client
        .get_technique(with_token(GetTechniqueRequest { id: "T1046".into() }, "det-token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = client
        .attribute(with_token(
            tokio_stream::iter(vec![AttributeRequest::default()]),
            "ana-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "analysts may not stream batches: {err}"
    );

    let got = client
        .get_technique(with_token(GetTechniqueRequest { id: "T1110.001".into() }, "ana-token"))
        .await
        .unwrap();
    assert_eq!(got.into_inner().technique.unwrap().name, "Password Guessing");
    let info = client
        .get_knowledge_base_info(with_token(GetKnowledgeBaseInfoRequest {}, "det-token"))
        .await
        .unwrap();
    assert_eq!(info.into_inner().attack_version, "18.1");

    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_field_is_invalid_argument_naming_the_field() {
    use tonic_types::StatusExt;
    let s = start().await;
    let mut client = AttributionServiceClient::new(s.channel());
    let batch = AttributeRequest {
        batch_id: 7,
        events: vec![event("10.0.0.1"), event("10.0.0.300")],
        ..Default::default()
    };
    let mut stream = client
        .attribute(with_token(tokio_stream::iter(vec![batch]), "adm-token"))
        .await
        .unwrap()
        .into_inner();
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("events[1].source.ip"), "{}", err.message());
    let details = err.get_error_details();
    let fields: Vec<_> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, vec!["events[1].source.ip"]);

    let good = AttributeRequest {
        batch_id: 8,
        events: vec![event("10.0.0.1")],
        ..Default::default()
    };
    let mut stream = client
        .attribute(with_token(tokio_stream::iter(vec![good]), "adm-token"))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    assert_eq!(response.batch_id, 8);
    assert_eq!(response.attributions[0].technique_ids, vec!["T1046"]);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_within_grace_even_with_open_streams() {
    let s = start().await;
    let mut client = AttributionServiceClient::new(s.channel());
    // An open stream that never ends must not hold shutdown beyond the grace period.
    let (tx, rx) = tokio::sync::mpsc::channel::<AttributeRequest>(1);
    let _open = client
        .attribute(with_token(tokio_stream::wrappers::ReceiverStream::new(rx), "adm-token"))
        .await
        .unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), s.stop()).await;
    assert!(finished.is_ok(), "server did not stop within its grace period");
    drop(tx);
}
