//! What an Export batch's bytes become, over real tonic behind the runtime's authentication:
//! the queue holds each event as the bytes it arrived as; an event that does not decode fails
//! its batch with `INVALID_ARGUMENT` and nothing of that batch is queued, while the batches
//! before it stay durable; fields this release does not know are accepted and not queued.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use attackmesh::{
    codec::{EncodedExport, ProstCodec},
    proto::{
        AckStatus, EnrichedEvent, ExportResponse, GetSinkStatusRequest, export_service_client::ExportServiceClient,
    },
};
use attackmesh_runtime::auth::Role;
use attackmesh_siem_export::{
    SiemExportConfig,
    queue::{Queue, QueueSettings, ReadItem},
};
use attackmesh_testkit::{Running, Tokens, fixtures, free_addr, with_token};
use bytes::Bytes;
use prost::Message;
use tokio_stream::StreamExt;
use tonic::{Code, Status, codegen::http::uri::PathAndQuery};

const EXPORT: &str = "/attackmesh.v1.ExportService/Export";

/// Export on 127.0.0.1 with one Elasticsearch sink nobody answers: its queue keeps everything.
async fn start(dir: &std::path::Path) -> Running<attackmesh_siem_export::Error> {
    let mut config: SiemExportConfig = common::config(dir);
    config.elasticsearch.url = Some(format!("http://{}", free_addr()));
    let server = Tokens::new(&[("adm", Role::Admin)]).server().await;
    Running::start(|listener, shutdown| async move {
        attackmesh_siem_export::server::serve(&config, server, listener, shutdown).await
    })
    .await
}

/// Sends `batches` (events as given bytes) on one stream: the answers, then how the stream ended.
async fn export(
    running: &Running<attackmesh_siem_export::Error>,
    batches: Vec<EncodedExport>,
) -> (Vec<ExportResponse>, Option<Status>) {
    let mut grpc = tonic::client::Grpc::new(running.channel());
    grpc.ready().await.unwrap();
    let request = with_token(tokio_stream::iter(batches), "adm-token");
    let codec = ProstCodec::<EncodedExport, ExportResponse>::default();
    let mut answers = match grpc.streaming(request, PathAndQuery::from_static(EXPORT), codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut out = Vec::new();
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(a) => out.push(a),
            Err(status) => return (out, Some(status)),
        }
    }
    (out, None)
}

fn batch(batch_id: u64, events: Vec<Bytes>) -> EncodedExport {
    EncodedExport {
        batch_id,
        events,
        trace_context: HashMap::new(),
        ..Default::default()
    }
}

fn encoded(i: u64) -> Bytes {
    Bytes::from(fixtures::event(i).encode_to_vec())
}

/// The bytes of every segment of the dead sink's queue.
fn queued_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("queues").join("elasticsearch")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

fn settings() -> QueueSettings {
    QueueSettings {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 26,
        fsync: Default::default(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn queue_depth(running: &Running<attackmesh_siem_export::Error>) -> u64 {
    let mut client = ExportServiceClient::new(running.channel());
    let status = client
        .get_sink_status(with_token(GetSinkStatusRequest {}, "adm-token"))
        .await
        .unwrap()
        .into_inner();
    status.sinks[0].queue_depth
}

#[tokio::test]
async fn an_event_that_does_not_decode_fails_its_batch_and_nothing_of_it_is_queued() {
    // An unknown field of nested groups 150 deep, beyond the decoder's recursion limit.
    let mut deep = vec![0x7b; 150];
    deep.extend(vec![0x7c; 150]);
    let malformed: [(&str, Vec<u8>); 3] = [
        // Field 1 (`event_id`) announces 50 bytes and carries 3.
        ("truncated", vec![0x0a, 50, b'a', b'b', b'c']),
        // Field 1 sent as a varint instead of a string.
        ("wrong wire type", vec![0x08, 1]),
        ("recursion limit", deep),
    ];
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let mut depth = 0;
    for (n, (what, bad)) in malformed.into_iter().enumerate() {
        let first = n as u64 * 10;
        let good = batch(1, vec![encoded(first), encoded(first + 1)]);
        let bad = batch(2, vec![encoded(first + 2), Bytes::from(bad), encoded(first + 3)]);
        let after = batch(3, vec![encoded(first + 4)]);
        let (answers, end) = export(&running, vec![good, bad, after]).await;
        assert_eq!(
            answers.len(),
            1,
            "{what}: only the batch before the bad one is answered"
        );
        assert_eq!((answers[0].status, answers[0].accepted), (AckStatus::Durable as i32, 2));
        let end = end.unwrap();
        assert_eq!(end.code(), Code::InvalidArgument, "{what}: {end:?}");
        assert!(end.message().starts_with("events[1]: "), "{what}: {}", end.message());
        depth += 2;
        assert_eq!(
            queue_depth(&running).await,
            depth,
            "{what}: the bad batch queued nothing"
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_queue_holds_the_bytes_that_arrived_and_not_fields_this_release_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    // An event whose fields come in another order than this release writes them: the same
    // event, the same length, other bytes.
    let event = fixtures::event(1);
    let rest = EnrichedEvent {
        event_id: String::new(),
        ..event.clone()
    };
    let id = EnrichedEvent {
        event_id: event.event_id.clone(),
        ..Default::default()
    };
    let reordered: Vec<u8> = [rest.encode_to_vec(), id.encode_to_vec()].concat();
    assert_ne!(reordered, event.encode_to_vec());
    // An event with a field of a newer contract (number 900, a string).
    let marker = b"field-of-a-newer-release";
    let known = fixtures::event(2).encode_to_vec();
    let mut newer = known.clone();
    prost::encoding::encode_key(900, prost::encoding::WireType::LengthDelimited, &mut newer);
    prost::encoding::encode_varint(marker.len() as u64, &mut newer);
    newer.extend_from_slice(marker);

    let events = vec![Bytes::from(reordered.clone()), Bytes::from(newer)];
    let (answers, end) = export(&running, vec![batch(1, events)]).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!((answers[0].status, answers[0].accepted), (AckStatus::Durable as i32, 2));
    assert!(answers[0].rejections.is_empty());
    let queued = queued_bytes(dir.path());
    assert!(contains(&queued, &reordered), "the event is queued as it arrived");
    assert!(!contains(&queued, marker), "an unknown field is not queued");
    running.stop().await.unwrap();
    // Both read back as the events that were sent.
    let (queue, _) = Queue::open(
        "elasticsearch",
        &dir.path().join("queues").join("elasticsearch"),
        settings(),
    )
    .unwrap();
    let read = queue.reader().unwrap().read_available(10, usize::MAX).unwrap();
    let events: Vec<EnrichedEvent> = read
        .iter()
        .filter_map(|item| match item {
            ReadItem::Event(e) => Some(e.event.to_event()),
            ReadItem::Damaged { .. } => None,
        })
        .collect();
    assert_eq!(events, [event, EnrichedEvent::decode(known.as_slice()).unwrap()]);
}
