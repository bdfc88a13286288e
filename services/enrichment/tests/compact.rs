//! Compact attributions between enrichment and attribution, over real gRPC: enrichment asks for
//! them with its knowledge base's release and fills them in, and the events it delivers are the
//! very events it delivers when attribution answers in full (as a service that predates the
//! option does). Export batches go compact only while export names enrichment's own release, and
//! a real siem-export writes what they carry exactly as it writes the full events.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use attackmesh::{
    formats::Format,
    proto::{
        AttributeRequest, AttributeResponse, AttributionStatus, DetectionEvent, DetectorKind, EnrichedEvent,
        GetGroupRequest, GetGroupResponse, GetKnowledgeBaseInfoRequest, GetKnowledgeBaseInfoResponse,
        GetTechniqueRequest, GetTechniqueResponse, IngestRequest, MapPatternsRequest, MapPatternsResponse,
        attribution_service_client::AttributionServiceClient, attribution_service_server::AttributionService,
    },
};
use attackmesh_testkit::{channel, wait_serving, with_token};
use common::*;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

/// What passed through a [`Relay`]: each request's compact option and each answer's form.
#[derive(Default)]
struct Relayed {
    asked: Vec<String>,
    compact: Vec<bool>,
}

/// An attribution service that relays `Attribute` to the real one; as `older`, it drops the
/// compact option on the way, as a service that predates it would ignore it.
#[derive(Clone)]
struct Relay {
    upstream: SocketAddr,
    older: bool,
    relayed: Arc<Mutex<Relayed>>,
}

type Answers = std::pin::Pin<Box<dyn futures::Stream<Item = Result<AttributeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AttributionService for Relay {
    type AttributeStream = Answers;

    async fn attribute(&self, request: Request<Streaming<AttributeRequest>>) -> Result<Response<Answers>, Status> {
        let (older, asked, answered) = (self.older, self.relayed.clone(), self.relayed.clone());
        let requests = request
            .into_inner()
            .filter_map(|r| futures::future::ready(r.ok()))
            .map(move |mut r| {
                asked.lock().unwrap().asked.push(r.compact_for_attack_version.clone());
                if older {
                    r.compact_for_attack_version.clear();
                }
                r
            });
        let answers = AttributionServiceClient::new(channel(self.upstream))
            .attribute(with_token(requests, ADMIN_TOKEN))
            .await?
            .into_inner()
            .map(move |answer| {
                if let Ok(a) = &answer {
                    answered.lock().unwrap().compact.push(a.compact);
                }
                answer
            });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn map_patterns(&self, _: Request<MapPatternsRequest>) -> Result<Response<MapPatternsResponse>, Status> {
        Err(Status::unimplemented("relay"))
    }

    async fn get_technique(&self, _: Request<GetTechniqueRequest>) -> Result<Response<GetTechniqueResponse>, Status> {
        Err(Status::unimplemented("relay"))
    }

    async fn get_group(&self, _: Request<GetGroupRequest>) -> Result<Response<GetGroupResponse>, Status> {
        Err(Status::unimplemented("relay"))
    }

    async fn get_knowledge_base_info(
        &self,
        _: Request<GetKnowledgeBaseInfoRequest>,
    ) -> Result<Response<GetKnowledgeBaseInfoResponse>, Status> {
        Err(Status::unimplemented("relay"))
    }
}

/// Real Suricata, Cowrie and Zeek records (when the shared data is there) and an event whose
/// hints name a revoked technique and enough of APT29's for candidate groups, with fixed ids.
fn detections() -> Vec<DetectionEvent> {
    let mut events = Vec::new();
    if let Some(dir) = attackmesh_testkit::shared_data() {
        let samples = dir.join("samples");
        for (format, path, take) in [
            (
                Format::SuricataEve,
                samples.join("suricata/first-org-conf-2015.eve.ndjson"),
                200,
            ),
            (Format::Cowrie, samples.join("cowrie/cowrie_local_session.json"), 80),
            (Format::Zeek, samples.join("zeek/zat-0.4.9/notice.log"), 40),
        ] {
            let records = attackmesh_testkit::sample_events(format, &path);
            events.extend(records.into_iter().take(take).map(|(_, ev)| ev));
        }
    }
    let mut hinted = attackmesh_testkit::event("falco.alert", DetectorKind::BehaviouralAnalysis, "custom rule", &[]);
    let kb = attackmesh_attack::Kb::embedded().unwrap();
    hinted.technique_hints = std::iter::once("T1073".to_owned())
        .chain(kb.group("G0016").unwrap().techniques.iter().take(8).cloned())
        .collect();
    events.push(hinted);
    for (i, ev) in events.iter_mut().enumerate() {
        ev.event_id = format!("compact-{i:04}");
    }
    events
}

/// Ingests `events` through enrichment wired to attribution through a [`Relay`]; returns what
/// export received (by event id, `enriched_at` cleared) and what the relay saw.
async fn deliver(events: &[DetectionEvent], older: bool) -> (BTreeMap<String, EnrichedEvent>, Relayed) {
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let attribution = start_attribution(any);
    wait_serving(attribution.addr).await;
    let relay = Relay {
        upstream: attribution.addr,
        older,
        relayed: Arc::default(),
    };
    let relay_proc = start_relay(relay.clone());
    wait_serving(relay_proc.addr).await;
    let export = CapturingExport::default();
    let export_proc = start_capturing_export(any, export.clone());
    let enrichment = start_enrichment(any, enrichment_config(dir.path(), relay_proc.addr, export_proc.addr));
    wait_serving(enrichment.addr).await;

    let mut client = attackmesh::proto::ingest_service_client::IngestServiceClient::new(channel(enrichment.addr));
    let batches = events
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| IngestRequest {
            batch_id: i as u64,
            events: chunk.to_vec(),
            ..Default::default()
        })
        .collect();
    let answers = ingest(&mut client, DETECTOR_TOKEN, batches).await.unwrap();
    let accepted: u32 = answers.iter().map(|a| a.accepted).sum();
    assert_eq!(accepted as usize, events.len(), "{answers:?}");

    let delivered = export
        .events
        .lock()
        .unwrap()
        .drain(..)
        .map(|mut ev| {
            ev.enriched_at = None;
            (ev.event_id.clone(), ev)
        })
        .collect();
    drop((enrichment, export_proc, relay_proc, attribution));
    let relayed = std::mem::take(&mut *relay.relayed.lock().unwrap());
    (delivered, relayed)
}

fn start_relay(relay: Relay) -> Proc {
    start_stub_attribution("127.0.0.1:0".parse().unwrap(), relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enriched_events_from_compact_answers_equal_those_from_full_answers() {
    let events = detections();
    let (compact, relayed) = deliver(&events, false).await;
    let release = attackmesh_attack::Kb::embedded().unwrap().attack_version().to_owned();
    assert!(!relayed.asked.is_empty() && relayed.asked.iter().all(|v| *v == release));
    assert!(
        !relayed.compact.is_empty() && relayed.compact.iter().all(|c| *c),
        "attribution answered compact"
    );

    let (full, relayed) = deliver(&events, true).await;
    assert!(
        !relayed.compact.is_empty() && relayed.compact.iter().all(|c| !*c),
        "without the option, attribution answered in full"
    );

    assert_eq!(compact.len(), events.len());
    assert!(
        compact
            .values()
            .all(|e| e.attribution_status != AttributionStatus::Degraded as i32)
    );
    let techniques = compact
        .values()
        .flat_map(|e| &e.metadata.as_ref().unwrap().techniques)
        .collect::<Vec<_>>();
    assert!(techniques.len() > 50 && techniques.iter().all(|t| !t.name.is_empty() && !t.tactics.is_empty()));
    let hinted = &compact[&format!("compact-{:04}", events.len() - 1)];
    let metadata = hinted.metadata.as_ref().unwrap();
    assert!(metadata.techniques.iter().any(|t| t.replaces_revoked_id == "T1073"));
    assert!(metadata.threat_actors.iter().all(|a| !a.name.is_empty()) && !metadata.threat_actors.is_empty());
    for (id, event) in &full {
        assert_eq!(compact.get(id), Some(event), "{id}");
    }
    assert_eq!(compact.len(), full.len());
}

/// Ingests each of `batches` on its own call, one after another, so each is exported before the
/// next is attributed.
async fn ingest_one_by_one(enrichment: SocketAddr, batches: Vec<Vec<DetectionEvent>>) {
    let mut client = attackmesh::proto::ingest_service_client::IngestServiceClient::new(channel(enrichment));
    for (i, events) in batches.into_iter().enumerate() {
        let n = events.len();
        let request = IngestRequest {
            batch_id: i as u64,
            events,
            ..Default::default()
        };
        let answers = ingest(&mut client, DETECTOR_TOKEN, vec![request]).await.unwrap();
        assert_eq!(answers[0].accepted as usize, n, "{answers:?}");
    }
}

/// Ingests `batches` one by one through enrichment to a capturing export that names
/// `attack_version`; returns each batch's compact mark and the events export received.
async fn export_naming(attack_version: &str, batches: Vec<Vec<DetectionEvent>>) -> (Vec<String>, Vec<EnrichedEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let attribution = start_attribution(any);
    wait_serving(attribution.addr).await;
    let export = CapturingExport {
        attack_version: attack_version.into(),
        ..Default::default()
    };
    let export_proc = start_capturing_export(any, export.clone());
    let enrichment = start_enrichment(any, enrichment_config(dir.path(), attribution.addr, export_proc.addr));
    wait_serving(enrichment.addr).await;
    ingest_one_by_one(enrichment.addr, batches).await;
    drop((enrichment, export_proc, attribution));
    let marks = std::mem::take(&mut *export.compact_for.lock().unwrap());
    let events = std::mem::take(&mut *export.events.lock().unwrap());
    (marks, events)
}

fn port_scans(batch: usize) -> Vec<DetectionEvent> {
    (0..3)
        .map(|i| {
            let mut ev = attackmesh_testkit::port_scan(&format!("scan-{batch}-{i}"), "203.0.113.9");
            ev.technique_hints = vec!["T1046".into()];
            ev
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_batches_go_compact_only_while_export_names_this_release() {
    let release = attackmesh_attack::Kb::embedded().unwrap().attack_version().to_owned();
    let (marks, events) = export_naming(&release, (0..3).map(port_scans).collect()).await;
    // The first batch is full: no answer has named a release yet.
    assert_eq!(marks, ["", release.as_str(), release.as_str()]);
    for ev in &events {
        let techniques = &ev.metadata.as_ref().unwrap().techniques;
        assert!(
            !techniques.is_empty() && ev.technique_ids.len() == techniques.len(),
            "{ev:?}"
        );
        assert!(!ev.metadata.as_ref().unwrap().rule_pack_version.is_empty());
        let compact = ev.event_id.starts_with("scan-1") || ev.event_id.starts_with("scan-2");
        assert_eq!(techniques.iter().all(|t| t.name.is_empty()), compact, "{ev:?}");
    }

    for other in ["17.0", ""] {
        let (marks, events) = export_naming(other, (0..3).map(port_scans).collect()).await;
        assert_eq!(marks, ["", "", ""], "export naming `{other}`");
        assert!(
            events
                .iter()
                .flat_map(|e| &e.metadata.as_ref().unwrap().techniques)
                .all(|t| !t.name.is_empty())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_export_writes_the_compact_hop_as_the_full_events() {
    let events = detections();
    let (full, _) = deliver(&events, true).await;

    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let attribution = start_attribution(any);
    let export = start_export(any, dir.path());
    wait_serving(attribution.addr).await;
    wait_serving(export.addr).await;
    let enrichment = start_enrichment(any, enrichment_config(dir.path(), attribution.addr, export.addr));
    wait_serving(enrichment.addr).await;
    ingest_one_by_one(
        enrichment.addr,
        events.chunks(50).map(<[DetectionEvent]>::to_vec).collect(),
    )
    .await;
    let sink = sink_path(dir.path());
    let read = || std::fs::read_to_string(&sink).unwrap_or_default();
    for _ in 0..300 {
        if read().lines().count() >= events.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let written: BTreeMap<String, EnrichedEvent> = read()
        .lines()
        .map(|line| {
            let mut ev: EnrichedEvent = attackmesh::json::from_json(line).unwrap();
            ev.enriched_at = None;
            (ev.event_id.clone(), ev)
        })
        .collect();
    drop((enrichment, export, attribution));
    assert_eq!(written.len(), events.len());
    for (id, event) in &full {
        let mut want = event.clone();
        // The sink writes the event without its `original` record by default.
        if written[id].original.is_empty() {
            want.original.clear();
        }
        assert_eq!(written.get(id), Some(&want), "{id}");
    }
}
