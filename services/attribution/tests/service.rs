//! The attribution service over real gRPC on 127.0.0.1:0: a two-batch Attribute stream that
//! survives a hot reload of the rules directory, batch limits, undecodable batches, real
//! detections attributed as the engine attributes them, MapPatterns and lookups.

use std::time::Duration;

use attackmesh::proto::attribution_service_client::AttributionServiceClient;
use attackmesh::proto::{
    AttributeRequest, AttributionStatus, DetectorKind, GetGroupRequest, GetKnowledgeBaseInfoRequest,
    GetTechniqueRequest, MapPatternsRequest,
};
use attackmesh_attack::{Engine, RulePack};
use attackmesh_attribution::{AttributionConfig, AttributionState, grpc_service, watch_rules};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;

struct Running {
    client: AttributionServiceClient<Channel>,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    rules: tempfile::TempDir,
    state: AttributionState,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

const PROBE_PACK: &str = "pack: lab\nversion: 1.0.0\nrules:\n  - id: probe\n    event_type: lab_probe\n    techniques: [{ id: T1046, confidence: 0.7 }]\n";
const PROBE_PACK_V2: &str = "pack: lab\nversion: 2.0.0\nrules:\n  - id: probe\n    event_type: lab_probe\n    techniques: [{ id: T1595.001, confidence: 0.8 }]\n";

async fn start(max_batch: usize) -> Running {
    start_with(max_batch, &[]).await
}

/// Starts the service over a rules directory holding the lab pack and `files` (relative paths).
async fn start_with(max_batch: usize, files: &[(&str, &str)]) -> Running {
    let rules = tempfile::tempdir().expect("tempdir");
    std::fs::write(rules.path().join("lab.yaml"), PROBE_PACK).expect("write pack");
    for (path, text) in files {
        let path = rules.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let config = AttributionConfig {
        rules_dir: Some(rules.path().to_path_buf()),
        reload_interval: Duration::from_millis(100),
        max_batch,
        ..Default::default()
    };
    config.validate().expect("valid config");
    let engine = config.build_engine().expect("engine");
    let state = AttributionState::new(engine, &config);
    let (listener, addr) = attackmesh_testkit::bind().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let (watch_stop_tx, watch_stop) = oneshot::channel::<()>();
    let service = grpc_service(state.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
                let _ = watch_stop_tx.send(());
            })
            .await
            .expect("server");
    });
    tokio::spawn(watch_rules(
        rules.path().to_path_buf(),
        config.reload_interval,
        state.engine.clone(),
        async {
            let _ = watch_stop.await;
        },
    ));
    let client = AttributionServiceClient::new(attackmesh_testkit::channel(addr));
    Running {
        client,
        addr,
        stop: Some(stop),
        rules,
        state,
    }
}

fn probe_batch(batch_id: u64) -> AttributeRequest {
    AttributeRequest {
        batch_id,
        events: vec![
            attackmesh_testkit::event("lab_probe", DetectorKind::TrafficMonitor, "probe", &[]),
            attackmesh_testkit::event(
                "cowrie.login.failed",
                DetectorKind::Decoy,
                "login attempt [root/root] failed",
                &[],
            ),
            attackmesh_testkit::event("heartbeat", DetectorKind::Other, "nothing", &[]),
        ],
        ..Default::default()
    }
}

/// Waits (bounded) until the running engine reports `version` for the lab pack.
async fn wait_for_pack(state: &AttributionState, version: &str) {
    // Compiling the packs takes a while in debug builds on a busy machine: allow 60 s.
    for _ in 0..1200 {
        if state.engine.current().rule_pack_version().contains(version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "rules never reloaded to {version}: {}",
        state.engine.current().rule_pack_version()
    );
}

#[tokio::test]
async fn attribute_stream_survives_hot_reload() {
    let mut s = start(100).await;
    let kb = s.state.engine.current().kb().clone();
    let (tx, rx) = mpsc::channel(4);
    let mut responses = s
        .client
        .attribute(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();

    tx.send(probe_batch(7)).await.expect("send");
    let first = responses.next().await.expect("a response").expect("ok");
    assert_eq!(first.batch_id, 7);
    assert_eq!(first.attributions.len(), 3, "one attribution per event");
    assert_eq!(first.attributions[0].technique_ids, ["T1046"]);
    assert_eq!(first.attributions[1].technique_ids, ["T1110.001"]);
    assert_eq!(first.attributions[2].status, AttributionStatus::NoMatch as i32);
    for a in &first.attributions {
        attackmesh_testkit::assert_only_active(&kb, a, "batch 7");
    }
    assert!(
        first.attributions[0]
            .metadata
            .as_ref()
            .expect("metadata")
            .rule_pack_version
            .contains("lab@1.0.0")
    );

    // Change the pack on disk while the stream is open; a broken pack next to it is refused and
    // the running rules are kept until it is fixed.
    std::fs::write(s.rules.path().join("zz-broken.yaml"), "pack: broken\nversion: 1.0.0\nrules:\n  - id: r\n    event_type: x\n    techniques: [{ id: T0001, confidence: 0.5 }]\n").expect("write");
    std::fs::write(s.rules.path().join("lab.yaml"), PROBE_PACK_V2).expect("write");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        s.state.engine.current().rule_pack_version().contains("lab@1.0.0"),
        "a bad pack set must not replace the running one"
    );
    std::fs::remove_file(s.rules.path().join("zz-broken.yaml")).expect("remove");
    wait_for_pack(&s.state, "lab@2.0.0").await;

    tx.send(probe_batch(8)).await.expect("send on the same stream");
    let second = responses.next().await.expect("a response").expect("ok");
    assert_eq!(second.batch_id, 8);
    assert_eq!(
        second.attributions[0].technique_ids,
        ["T1595.001"],
        "the reloaded pack applies"
    );
    assert!(
        second.attributions[0]
            .metadata
            .as_ref()
            .expect("metadata")
            .rule_pack_version
            .contains("lab@2.0.0")
    );

    drop(tx);
    assert!(responses.next().await.is_none(), "stream ends when the client closes");

    let info = s
        .client
        .get_knowledge_base_info(GetKnowledgeBaseInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(
        (
            info.attack_version.as_str(),
            info.techniques,
            info.subtechniques,
            info.tactics,
            info.groups
        ),
        ("18.1", 216, 475, 14, 172)
    );
    assert!(info.rule_pack_version.contains("lab@2.0.0") && info.rules > 400);
}

const SIGMA_PROBE: &str = "title: Lab probe\nid: 7a1b0000-0000-4000-8000-00000000a001\nstatus: stable\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  selection:\n    Image|endswith: '\\labprobe.exe'\n  condition: selection\nlevel: high\ntags: [attack.TECHNIQUE]\n";

fn sysmon_probe(batch_id: u64) -> AttributeRequest {
    let line = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon"}},"EventID":1,"TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T10:00:00Z"}},"Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"ws01"},"EventData":{"Image":"C:\\lab\\labprobe.exe","CommandLine":"labprobe.exe --run"}}}"##;
    let event = attackmesh::formats::parse_line(
        attackmesh::formats::Format::EvtxJson,
        line,
        &mut attackmesh::formats::ParseState::default(),
    )
    .expect("parses")
    .expect("event");
    AttributeRequest {
        batch_id,
        events: vec![event],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_changed_sigma_rule_is_picked_up_without_dropping_the_stream() {
    let mut s = start_with(100, &[("sigma/probe.yml", &SIGMA_PROBE.replace("TECHNIQUE", "t1057"))]).await;
    let sigma_dir = s.rules.path().join("sigma");
    assert!(
        s.state.engine.current().rule_pack_version().contains("sigma-local@"),
        "the directory's Sigma rules are loaded at start"
    );
    let first_version = watcher_running(&s.state, &sigma_dir).await;

    let (tx, rx) = mpsc::channel(4);
    let mut responses = s
        .client
        .attribute(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    tx.send(sysmon_probe(1)).await.expect("send");
    let first = responses.next().await.expect("a response").expect("ok");
    assert_eq!(first.attributions[0].technique_ids, ["T1057"]);

    // A broken rule next to it is listed, not fatal; the changed rule applies on the same stream.
    std::fs::write(
        sigma_dir.join("broken.yml"),
        "title: Broken\ndetection:\n  condition: nothing\n",
    )
    .expect("write");
    std::fs::write(sigma_dir.join("probe.yml"), SIGMA_PROBE.replace("TECHNIQUE", "t1082")).expect("write");
    wait_for_change(&s.state, &first_version).await;
    let engine = s.state.engine.current();
    assert!(engine.sigma().rejected().any(|r| r.path.ends_with("broken.yml")));
    tx.send(sysmon_probe(2)).await.expect("send on the same stream");
    let second = responses.next().await.expect("a response").expect("ok");
    assert_eq!(second.batch_id, 2);
    assert_eq!(
        second.attributions[0].technique_ids,
        ["T1082"],
        "the changed rule applies"
    );
    let evidence = &second.attributions[0].metadata.as_ref().expect("metadata").techniques[0].evidence[0];
    assert_eq!(evidence.rule_id, "sigma:7a1b0000-0000-4000-8000-00000000a001");
}

/// Makes sure the watcher has taken its first look at the directory: rewrites a rule file
/// (longer each time) until a reload shows, and returns the version then in force.
async fn watcher_running(state: &AttributionState, sigma_dir: &std::path::Path) -> String {
    for n in 1..=120 {
        let before = state.engine.current().rule_pack_version().to_owned();
        let rule = SIGMA_PROBE
            .replace("Lab probe", &format!("Warm-up{}", "!".repeat(n)))
            .replace("a001", "a0ff")
            .replace("labprobe.exe", "matches-nothing.exe")
            .replace("TECHNIQUE", "t1057");
        std::fs::write(sigma_dir.join("warmup.yml"), rule).expect("write");
        for _ in 0..20 {
            let now = state.engine.current().rule_pack_version().to_owned();
            if now != before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("the rules directory is not watched");
}

/// Waits (bounded) until the running engine's rule pack version differs from `before`.
async fn wait_for_change(state: &AttributionState, before: &str) -> String {
    for _ in 0..1200 {
        let now = state.engine.current().rule_pack_version().to_owned();
        if now != before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("rules never reloaded from {before}");
}

#[tokio::test]
async fn oversized_or_invalid_batches_are_invalid_argument() {
    let mut s = start(2).await;
    let stream = tokio_stream::iter(vec![probe_batch(1)]);
    let mut responses = s.client.attribute(stream).await.expect("opens").into_inner();
    let err = responses
        .next()
        .await
        .expect("an item")
        .expect_err("3 events > max_batch 2");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("at most 2 events"), "{}", err.message());

    let mut bad = probe_batch(2);
    bad.events.truncate(1);
    bad.events[0].source_service.clear();
    let mut responses = s
        .client
        .attribute(tokio_stream::iter(vec![bad]))
        .await
        .expect("opens")
        .into_inner();
    let err = responses.next().await.expect("an item").expect_err("invalid event");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("events[0].source_service"), "{}", err.message());
}

#[tokio::test]
async fn map_patterns_and_lookups() {
    let mut s = start(100).await;
    let m = s
        .client
        .map_patterns(MapPatternsRequest {
            patterns: vec!["ET SCAN Potential SSH Scan".into(), "history -c".into(), "hello".into()],
            ..Default::default()
        })
        .await
        .expect("map")
        .into_inner();
    assert_eq!(m.mappings.len(), 3);
    assert!(m.mappings[0].techniques.iter().any(|t| t.id == "T1046"));
    assert_eq!(m.mappings[1].techniques[0].id, "T1070.003");
    assert_eq!(m.mappings[1].techniques[0].name, "Clear Command History");
    assert!(m.mappings[2].techniques.is_empty());

    let revoked = s
        .client
        .get_technique(GetTechniqueRequest { id: "T1073".into() })
        .await
        .expect("found")
        .into_inner();
    assert_eq!(revoked.revoked_id, "T1073");
    let t = revoked.technique.expect("technique");
    assert_eq!((t.id.as_str(), t.parent_id.as_str()), ("T1574.001", "T1574"));
    assert!(!t.deprecated);

    let parent = s
        .client
        .get_technique(GetTechniqueRequest { id: "T1110".into() })
        .await
        .expect("found")
        .into_inner();
    let parent = parent.technique.expect("technique");
    assert!(
        parent.subtechnique_ids.contains(&"T1110.001".to_owned()),
        "{:?}",
        parent.subtechnique_ids
    );
    assert_eq!(parent.tactics[0].shortname, "credential-access");

    let missing = s
        .client
        .get_technique(GetTechniqueRequest { id: "T9999".into() })
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(missing.message(), "technique `T9999` is not in ATT&CK 18.1");
    let empty = s
        .client
        .get_technique(GetTechniqueRequest { id: " ".into() })
        .await
        .expect_err("empty");
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    let group = s
        .client
        .get_group(GetGroupRequest { id: "cozy bear".into() })
        .await
        .expect("found")
        .into_inner();
    let group = group.group.expect("group");
    assert_eq!((group.id.as_str(), group.name.as_str()), ("G0016", "APT29"));
    assert!(group.technique_ids.len() > 50);
    let missing = s
        .client
        .get_group(GetGroupRequest {
            id: "Nobody Bear".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[test]
fn reload_from_dir_keeps_the_engine_on_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = attackmesh_attribution::EngineHandle::new(
        Engine::new(
            attackmesh_attack::Kb::embedded().expect("kb"),
            RulePack::embedded().expect("packs"),
        )
        .expect("engine"),
    );
    std::fs::write(dir.path().join("x.yaml"), "pack: x\nversion: 1.0.0\nrules:\n  - id: r\n    when:\n      - { field: description, regex: '(' }\n    techniques: [{ id: T1046, confidence: 0.5 }]\n").expect("write");
    let before = handle.current().rule_pack_version().to_owned();
    let err = handle.reload_from_dir(dir.path()).expect_err("bad regex");
    assert!(
        err.to_string().contains("x.yaml") && err.to_string().contains("`r`"),
        "{err}"
    );
    assert_eq!(handle.current().rule_pack_version(), before);
}

/// A request message written as given bytes, for what a generated client never sends.
#[derive(Clone, Debug, Default, PartialEq)]
struct Raw(Vec<u8>);

impl prost::Message for Raw {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Sends `batches` as one `Attribute` stream of raw messages and returns its answers up to the
/// first error.
async fn attribute_raw(
    s: &Running,
    batches: Vec<Vec<u8>>,
) -> (Vec<attackmesh::proto::AttributeResponse>, Option<tonic::Status>) {
    let mut grpc = tonic::client::Grpc::new(attackmesh_testkit::channel(s.addr));
    grpc.ready().await.expect("ready");
    let codec = attackmesh::codec::ProstCodec::<Raw, attackmesh::proto::AttributeResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/attackmesh.v1.AttributionService/Attribute");
    let request = tonic::Request::new(tokio_stream::iter(batches.into_iter().map(Raw)));
    let mut stream = match grpc.streaming(request, path, codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut answers = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) => return (answers, None),
            Err(status) => return (answers, Some(status)),
        }
    }
}

#[tokio::test]
async fn undecodable_batches_are_invalid_argument_naming_the_field() {
    use prost::Message as _;
    let s = start(100).await;
    let good = probe_batch(1).encode_to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an event cut short", vec![0x12, 50, 1, 2, 3]),
        ("events as a varint", vec![0x10, 1]),
        (
            "an attribute value that is not UTF-8",
            vec![0x12, 8, 0x6a, 6, 0x0a, 1, b'k', 0x12, 1, 0xff],
        ),
        ("compact_for_attack_version as a varint", vec![0x20, 1]),
    ];
    for (what, bad) in cases {
        let (answers, status) = attribute_raw(&s, vec![good.clone(), bad]).await;
        assert_eq!(answers.len(), 1, "{what}: the batch before is answered");
        assert_eq!(answers[0].attributions.len(), 3, "{what}");
        let status = status.expect("an error");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains("AttributeRequest."), "{what}: {status:?}");
    }
}

/// Real detections sent over gRPC are attributed as the engine attributes the decoded events,
/// full and compact.
#[tokio::test]
async fn detections_over_grpc_are_attributed_as_the_decoded_events() {
    let mut events = attackmesh_testkit::data::real_detections();
    if events.is_empty() {
        events = probe_batch(0).events;
    }
    let s = start(10_000).await;
    let engine = s.state.engine.current();
    for compact in ["", engine.kb().attack_version()] {
        let request = AttributeRequest {
            batch_id: 9,
            events: events.clone(),
            compact_for_attack_version: compact.to_owned(),
            ..Default::default()
        };
        let mut client = s.client.clone();
        let mut responses = client
            .attribute(tokio_stream::iter(vec![request]))
            .await
            .expect("opens")
            .into_inner();
        let answer = responses.next().await.expect("an answer").expect("attributed");
        assert_eq!(answer.compact, !compact.is_empty());
        let expected: Vec<_> = events
            .iter()
            .map(|e| {
                if compact.is_empty() {
                    engine.attribute(e)
                } else {
                    engine.attribute_compact(e)
                }
            })
            .collect();
        assert_eq!(answer.attributions, expected);
    }
}
