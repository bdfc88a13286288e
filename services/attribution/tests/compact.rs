//! Compact answers over real gRPC: a client that does not ask gets full attributions, one that
//! asks with the service's own ATT&CK release gets compact ones that expand to exactly the full
//! ones, and one that asks with another release gets full ones.

use attackmesh::formats::Format;
use attackmesh::proto::attribution_service_client::AttributionServiceClient;
use attackmesh::proto::{AttributeRequest, AttributeResponse, DetectionEvent, DetectorKind};
use attackmesh_attack::{Engine, compact};
use attackmesh_attribution::{AttributionConfig, AttributionState, grpc_service};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

/// Real Suricata alerts (when the shared data is there), a Cowrie session, and an event whose
/// hints name a revoked technique and enough of APT29's to rank candidate groups.
fn events(engine: &Engine) -> Vec<DetectionEvent> {
    let mut events = Vec::new();
    if let Some(dir) = attackmesh_testkit::shared_data() {
        let samples = dir.join("samples");
        let suricata = samples.join("suricata/first-org-conf-2015.eve.ndjson");
        let cowrie = samples.join("cowrie/cowrie_local_session.json");
        for (format, path, take) in [(Format::SuricataEve, suricata, 150), (Format::Cowrie, cowrie, 60)] {
            events.extend(
                attackmesh_testkit::sample_events(format, &path)
                    .into_iter()
                    .take(take)
                    .map(|(_, ev)| ev),
            );
        }
    }
    let mut hinted = attackmesh_testkit::event("falco.alert", DetectorKind::BehaviouralAnalysis, "custom rule", &[]);
    let apt29 = engine.kb().group("G0016").expect("APT29");
    hinted.technique_hints = std::iter::once("T1073".to_owned())
        .chain(apt29.techniques.iter().take(8).cloned())
        .collect();
    events.push(hinted);
    for ev in &mut events {
        attackmesh::validate::prepare_detection(ev);
    }
    events
}

#[tokio::test]
async fn compact_answers_only_for_the_service_own_release() {
    let config = AttributionConfig::default();
    let engine = config.build_engine().expect("engine");
    let events = events(&engine);
    let expected: Vec<_> = events.iter().map(|e| engine.attribute(e)).collect();
    let release = engine.kb().attack_version().to_owned();
    let kb = engine.kb().clone();
    let rule_pack_version = engine.rule_pack_version().to_owned();

    let (listener, addr) = attackmesh_testkit::bind().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let service = grpc_service(AttributionState::new(engine, &config));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .expect("server");
    });
    let mut client = AttributionServiceClient::new(attackmesh_testkit::channel(addr));
    let batch = |batch_id: u64, option: &str| AttributeRequest {
        batch_id,
        events: events.clone(),
        compact_for_attack_version: option.to_owned(),
        ..Default::default()
    };
    let batches = vec![batch(1, ""), batch(2, &release), batch(3, "17.0")];
    let mut answers = client
        .attribute(tokio_stream::iter(batches))
        .await
        .expect("stream opens")
        .into_inner();
    let mut next = async || -> AttributeResponse { answers.message().await.expect("answer").expect("not ended") };

    let full = next().await;
    assert!(!full.compact, "no option: full answers");
    assert!(full.rule_pack_version.is_empty(), "full attributions carry their own");
    assert_eq!(full.attributions, expected);
    let techniques = full
        .attributions
        .iter()
        .flat_map(|a| &a.metadata.as_ref().expect("metadata").techniques);
    assert!(techniques.clone().count() > 50);
    assert!(
        techniques
            .clone()
            .all(|t| !t.name.is_empty() && !t.tactics.is_empty() && !t.url.is_empty())
    );

    let compacted = next().await;
    assert!(compacted.compact, "the service's own release: compact answers");
    let actors = compacted
        .attributions
        .iter()
        .flat_map(|a| &a.metadata.as_ref().expect("metadata").threat_actors);
    assert!(actors.clone().count() > 0 && actors.clone().all(|a| a.name.is_empty() && a.aliases.is_empty()));
    assert!(prost::Message::encoded_len(&compacted) < prost::Message::encoded_len(&full));
    assert!(
        compacted
            .attributions
            .iter()
            .all(|a| a.metadata.as_ref().is_some_and(|m| m.rule_pack_version.is_empty())),
        "the rule-pack version is sent once per answer"
    );
    assert_eq!(compacted.rule_pack_version, rule_pack_version);
    let mut expanded = compacted.attributions;
    for a in &mut expanded {
        compact::expand(&kb, a, &compacted.rule_pack_version).expect("expands");
    }
    assert_eq!(expanded, expected);

    let other = next().await;
    assert!(!other.compact, "another release: full answers");
    assert_eq!(other.attributions, expected);
    let _ = stop.send(());
}
