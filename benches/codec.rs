//! The gRPC codec on both sides of a stream, through tonic's own framing: requests decoded from
//! a body of gRPC frames as a server's `Streaming` reads them, and encoded into frames as a
//! client's `EncodeBody` writes them. `attackmesh` is the project's codec
//! (`attackmesh::codec::ProstCodec`: each message decoded from its whole frame, room for it
//! reserved before encoding); `tonic_prost` is the stock codec, measured in the same run.
//!
//! Run with `cargo bench -p attackmesh --bench codec`. Criterion's elements/s are events per
//! second on one core, in Export batches of 500 events: attributed events of the first-org
//! Suricata sample (left out without the shared data) and the test kit's fixture events. The
//! `detections_suricata` group decodes Attribute requests of that sample's detections (as
//! attribution receives them; enrichment decodes Ingest requests the same way): events per
//! second of decoding and freeing whole 500-event messages, the largest single cost of
//! attribution on real records.

#![allow(missing_docs)]

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use attackmesh::{
    codec::{EncodedExport, ProstCodec},
    proto::{AttributeRequest, DetectionEvent, EnrichedEvent, ExportRequest},
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use futures::{StreamExt, executor::block_on, stream};
use http_body::{Body, Frame};
use prost::{Message, bytes::Bytes};
use tonic::{
    Status,
    codec::{Codec, EncodeBody, Streaming},
};

const BATCH: usize = 500;
/// Export requests per measured stream.
const REQUESTS: usize = 8;

/// A request body already received whole: the gRPC frames of a stream's messages.
struct Received(Option<Bytes>);

impl Body for Received {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
    }
}

/// `REQUESTS` Export requests of `events`, framed as they cross the wire (no compression).
fn framed(request: &ExportRequest) -> Bytes {
    let message = request.encode_to_vec();
    let mut body = Vec::with_capacity(REQUESTS * (message.len() + 5));
    for _ in 0..REQUESTS {
        body.push(0);
        body.extend_from_slice(&u32::try_from(message.len()).expect("a batch under 4 GiB").to_be_bytes());
        body.extend_from_slice(&message);
    }
    Bytes::from(body)
}

/// Events decoded from a stream's body with `codec`'s decoder.
fn decode<C>(mut codec: C, body: Bytes) -> usize
where
    C: Codec<Decode = ExportRequest>,
{
    let mut streaming = Streaming::new_request(codec.decoder(), Received(Some(body)), None, Some(usize::MAX));
    block_on(async {
        let mut events = 0;
        while let Some(request) = streaming.message().await.expect("a well-formed stream") {
            events += request.events.len();
        }
        events
    })
}

/// Bytes of the frames `codec`'s encoder makes of `requests`.
fn encode<C, T>(mut codec: C, requests: Vec<T>) -> usize
where
    C: Codec<Encode = T>,
    T: Send + 'static,
{
    let body = EncodeBody::new_client(codec.encoder(), stream::iter(requests).map(Ok), None, Some(usize::MAX));
    block_on(async {
        let mut body = std::pin::pin!(body);
        let mut bytes = 0;
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if let Ok(data) = frame.expect("an encodable stream").into_data() {
                bytes += data.len();
            }
        }
        bytes
    })
}

fn bench(c: &mut Criterion, group: &str, events: &[EnrichedEvent]) {
    if events.is_empty() {
        return;
    }
    let request = ExportRequest {
        batch_id: 1,
        events: events.iter().cycle().take(BATCH).cloned().collect(),
        ..Default::default()
    };
    // What enrichment sends: each event encoded once as it is made.
    let encoded = EncodedExport {
        batch_id: 1,
        events: request
            .events
            .iter()
            .map(|ev| Bytes::from(ev.encode_to_vec()))
            .collect(),
        ..Default::default()
    };
    let body = framed(&request);
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements((REQUESTS * BATCH) as u64));
    group.bench_function("decode/attackmesh", |b| {
        b.iter(|| decode(ProstCodec::<ExportRequest, ExportRequest>::default(), body.clone()))
    });
    group.bench_function("decode/tonic_prost", |b| {
        b.iter(|| {
            decode(
                tonic_prost::ProstCodec::<ExportRequest, ExportRequest>::default(),
                body.clone(),
            )
        })
    });
    for (name, codec) in [
        ("encode_events/attackmesh", Side::Ours),
        ("encode_events/tonic_prost", Side::Stock),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || vec![encoded.clone(); REQUESTS],
                |requests| match codec {
                    Side::Ours => encode(ProstCodec::<EncodedExport, EncodedExport>::default(), requests),
                    Side::Stock => encode(
                        tonic_prost::ProstCodec::<EncodedExport, EncodedExport>::default(),
                        requests,
                    ),
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Which codec a benchmark uses.
#[derive(Clone, Copy)]
enum Side {
    Ours,
    Stock,
}

/// Attribute requests of `detections` decoded from whole messages, as the codec's decoder
/// decodes a received one (prost's generated code over one contiguous buffer), and freed.
fn bench_detections(c: &mut Criterion, detections: &[DetectionEvent]) {
    if detections.is_empty() {
        return;
    }
    let request = AttributeRequest {
        batch_id: 1,
        events: detections.iter().cycle().take(BATCH).cloned().collect(),
        trace_context: [(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]
        .into(),
        compact_for_attack_version: "18.1".into(),
    };
    let message = Bytes::from(request.encode_to_vec());
    let mut group = c.benchmark_group("detections_suricata");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("decode_attribute_request", |b| {
        b.iter(|| AttributeRequest::decode(message.clone()).expect("decodes").events.len())
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let suricata = attackmesh_testkit::data::first_org_attributed();
    bench(c, "codec_suricata", &suricata);
    bench_detections(c, &attackmesh_testkit::data::first_org_detections());
    let fixtures: Vec<_> = (0..BATCH as u64).map(attackmesh_testkit::fixtures::event).collect();
    bench(c, "codec_fixture", &fixtures);
}

criterion_group!(benches, codec);
attackmesh_testkit::criterion_main!(benches);
