//! The gRPC codec of every attackmesh service and client (generated code names it): prost
//! encoding, with bytes that do not decode as the expected message reported as
//! `INVALID_ARGUMENT` (the sender's mistake: truncated, wrong wire type, nested past the
//! recursion limit) rather than tonic's `INTERNAL`, which would send callers looking for a bug
//! on the server. Both sides use it, so a client that receives an undecodable answer sees
//! `INVALID_ARGUMENT` too, with the decoder's reason. A client that retries a broken answer and
//! gives up on a refusal uses [`ClientCodec`], whose decoding errors are `INTERNAL` as tonic's are.
//!
//! Both reserve room for a whole message before encoding it (see [`ProstEncoder`]).

use std::{collections::HashMap, marker::PhantomData};

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{self, DecodeContext, WireType},
};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Prost encoding; decoding failures are `INVALID_ARGUMENT`.
pub type ProstCodec<T, U> = Prost<T, U, false>;

/// [`ProstCodec`] with decoding failures as `INTERNAL`, as tonic reports them: for a client that
/// resends a batch whose answer did not decode and gives up on `INVALID_ARGUMENT`.
pub type ClientCodec<T, U> = Prost<T, U, true>;

/// The prost codec behind [`ProstCodec`] and [`ClientCodec`]: `INTERNAL` decoding failures when
/// `INTERNAL_DECODE_ERRORS`, `INVALID_ARGUMENT` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Prost<T, U, const INTERNAL_DECODE_ERRORS: bool>(PhantomData<(T, U)>);

impl<T, U, const INTERNAL_DECODE_ERRORS: bool> Default for Prost<T, U, INTERNAL_DECODE_ERRORS> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U, const INTERNAL_DECODE_ERRORS: bool> Codec for Prost<T, U, INTERNAL_DECODE_ERRORS>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        let status = if INTERNAL_DECODE_ERRORS {
            Status::internal
        } else {
            Status::invalid_argument
        };
        ProstDecoder(PhantomData, status)
    }
}

/// A gRPC call handler for a service routed by hand (one that reads a request as a type of its
/// own): this codec, gzip accepted and sent, and `max_message_bytes` as the limit both ways, as
/// every generated attackmesh service is set up.
pub fn grpc<T, U>(max_message_bytes: usize) -> tonic::server::Grpc<ProstCodec<T, U>>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    tonic::server::Grpc::new(ProstCodec::default())
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// Prost encoding into room reserved for the whole message first. Tonic's prost encoder lets
/// the frame buffer grow as the message is written: a batch of hundreds of events (hundreds of
/// KB to a few MB) was copied into a new allocation at every doubling.
#[derive(Debug)]
pub struct ProstEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ProstEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Prost decoding of a message taken whole from the receive buffer (without a copy), so the
/// decoder reads fields from one contiguous `Bytes`: read through tonic's `DecodeBuf`, every
/// field's advance went through two buffer layers. Failures get the decoder's reason and the
/// codec's status code.
#[derive(Debug)]
pub struct ProstDecoder<U>(PhantomData<U>, fn(String) -> Status);

impl<U: Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let message = buf.copy_to_bytes(buf.remaining());
        U::decode(message)
            .map(Some)
            .map_err(|error| (self.1)(error.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// `attackmesh.v1.ExportRequest` with its events left encoded: field numbers and wire types are
/// the contract's (`repeated EnrichedEvent` and `repeated bytes` are both length-delimited), so
/// every client's `ExportRequest` decodes as this and this encodes as that `ExportRequest`. A
/// sender encodes each event once, as it is made; a receiver keeps the bytes that arrived.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct EncodedExport {
    /// Caller-chosen batch number, echoed in the acknowledgement.
    pub batch_id: u64,
    /// The events, each an encoded `EnrichedEvent`.
    pub events: Vec<Bytes>,
    /// W3C trace context of the batch.
    pub trace_context: HashMap<String, String>,
    /// The ATT&CK release whose knowledge base fills the events' details in, when they are
    /// compact; empty when they are full.
    pub compact_for_attack_version: String,
}

impl From<crate::proto::ExportRequest> for EncodedExport {
    /// Encodes each event, as a client would send it.
    fn from(request: crate::proto::ExportRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            events: request.events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect(),
            trace_context: request.trace_context,
            compact_for_attack_version: request.compact_for_attack_version,
        }
    }
}

/// `attackmesh.v1.IngestRequest` with its events left encoded, as [`EncodedExport`] is for
/// `ExportRequest`: a detector-side shipper encodes each `DetectionEvent` once, on the thread
/// that parsed it, and a batch is sent (and resent) from those bytes.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct EncodedIngest {
    /// Sender-chosen batch number, echoed in the acknowledgement.
    pub batch_id: u64,
    /// The detections, each an encoded `DetectionEvent`.
    pub events: Vec<Bytes>,
    /// W3C trace context of the batch.
    pub trace_context: HashMap<String, String>,
}

impl From<crate::proto::IngestRequest> for EncodedIngest {
    /// Encodes each event, as a client would send it.
    fn from(request: crate::proto::IngestRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            events: request.events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect(),
            trace_context: request.trace_context,
        }
    }
}

/// The `Message` of a batch of encoded events: what `#[derive(Message)]` generates for
/// `batch_id = 1`, `repeated bytes events = 2` and `map<string, string> trace_context = 3`
/// (and any further string fields named after the type), except that each event is copied into
/// the request from a borrowed slice, and a decoding error names the contract's message it
/// stands for. Prost's encoding of
/// a `Bytes` field clones the handle and drops it once copied: two atomic updates, per event, of
/// a reference count that the thread making the events keeps updating as it splits the next
/// ones off the same buffer, so the two threads pass its cache line back and forth.
macro_rules! encoded_batch_message {
    ($name:ident as $contract:literal $(, $field:ident = $tag:literal)*) => {
        impl Message for $name {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                if self.batch_id != 0 {
                    encoding::uint64::encode(1, &self.batch_id, buf);
                }
                for event in &self.events {
                    encoding::encode_key(2, WireType::LengthDelimited, buf);
                    encoding::encode_varint(event.len() as u64, buf);
                    buf.put_slice(event);
                }
                encoding::hash_map::encode(
                    encoding::string::encode,
                    encoding::string::encoded_len,
                    encoding::string::encode,
                    encoding::string::encoded_len,
                    3,
                    &self.trace_context,
                    buf,
                );
                $(
                    if !self.$field.is_empty() {
                        encoding::string::encode($tag, &self.$field, buf);
                    }
                )*
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                let (result, field) = match tag {
                    1 => (
                        encoding::uint64::merge(wire_type, &mut self.batch_id, buf, ctx),
                        "batch_id",
                    ),
                    2 => (
                        encoding::bytes::merge_repeated(wire_type, &mut self.events, buf, ctx),
                        "events",
                    ),
                    3 => (
                        encoding::hash_map::merge(
                            encoding::string::merge,
                            encoding::string::merge,
                            &mut self.trace_context,
                            buf,
                            ctx,
                        ),
                        "trace_context",
                    ),
                    $($tag => (
                        encoding::string::merge(wire_type, &mut self.$field, buf, ctx),
                        stringify!($field),
                    ),)*
                    _ => return encoding::skip_field(wire_type, tag, buf, ctx),
                };
                result.map_err(|mut error| {
                    error.push($contract, field);
                    error
                })
            }

            fn encoded_len(&self) -> usize {
                (if self.batch_id != 0 {
                    encoding::uint64::encoded_len(1, &self.batch_id)
                } else {
                    0
                }) + encoding::bytes::encoded_len_repeated(2, &self.events)
                    + encoding::hash_map::encoded_len(
                        encoding::string::encoded_len,
                        encoding::string::encoded_len,
                        3,
                        &self.trace_context,
                    )
                    $(+ if self.$field.is_empty() {
                        0
                    } else {
                        encoding::string::encoded_len($tag, &self.$field)
                    })*
            }

            fn clear(&mut self) {
                self.batch_id = 0;
                self.events.clear();
                self.trace_context.clear();
                $(self.$field.clear();)*
            }
        }
    };
}

encoded_batch_message!(EncodedExport as "ExportRequest", compact_for_attack_version = 4);
encoded_batch_message!(EncodedIngest as "IngestRequest");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EnrichedEvent, ExportRequest};

    /// The batch messages encode and decode as the contract's requests, empty fields included,
    /// skip fields they do not know, and name the field a decode fails in.
    #[test]
    fn batches_are_the_contract_requests_on_the_wire() {
        let full = ExportRequest {
            batch_id: 9,
            events: vec![
                EnrichedEvent {
                    event_id: "a".into(),
                    ..Default::default()
                },
                EnrichedEvent::default(),
            ],
            trace_context: [("traceparent".to_owned(), "00-x".to_owned())].into(),
            compact_for_attack_version: "18.1".into(),
        };
        for request in [ExportRequest::default(), full] {
            let encoded = EncodedExport::from(request.clone());
            assert_eq!(encoded.encoded_len(), request.encoded_len());
            assert_eq!(encoded.encode_to_vec(), request.encode_to_vec());
            assert_eq!(
                ExportRequest::decode(encoded.encode_to_vec().as_slice()).ok(),
                Some(request.clone())
            );
            let mut with_unknown = request.encode_to_vec();
            encoding::string::encode(99, &"from a later release".to_owned(), &mut with_unknown);
            assert_eq!(EncodedExport::decode(with_unknown.as_slice()).ok(), Some(encoded));
        }
        let mut wrong_type = Vec::new();
        encoding::uint64::encode(2, &5, &mut wrong_type);
        let error = EncodedIngest::decode(wrong_type.as_slice()).unwrap_err().to_string();
        assert!(error.contains("IngestRequest.events"), "{error}");
    }

    /// A body of gRPC frames, received whole.
    struct Received(Option<Bytes>);

    impl http_body::Body for Received {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
            std::task::Poll::Ready(self.0.take().map(|data| Ok(http_body::Frame::data(data))))
        }
    }

    /// What `codec` decodes from `messages`, each framed as gRPC sends it, until the first error.
    fn decode_frames<C: Codec<Decode = ExportRequest>>(
        mut codec: C,
        messages: &[Vec<u8>],
    ) -> (Vec<ExportRequest>, Option<Status>) {
        let mut body = Vec::new();
        for message in messages {
            body.push(0);
            body.extend_from_slice(&(message.len() as u32).to_be_bytes());
            body.extend_from_slice(message);
        }
        let mut stream =
            tonic::codec::Streaming::new_request(codec.decoder(), Received(Some(Bytes::from(body))), None, None);
        futures::executor::block_on(async {
            let mut decoded = Vec::new();
            loop {
                match stream.message().await {
                    Ok(Some(request)) => decoded.push(request),
                    Ok(None) => return (decoded, None),
                    Err(status) => return (decoded, Some(status)),
                }
            }
        })
    }

    /// Each message of a stream is decoded from its own frame, whatever follows it; a frame
    /// that does not decode is refused as `INVALID_ARGUMENT` by the server's codec and as
    /// `INTERNAL` by the client's, both with the decoder's reason.
    #[test]
    fn frames_decode_whole_and_broken_ones_get_the_codecs_status() {
        let requests: Vec<ExportRequest> = (1..=3)
            .map(|batch_id| ExportRequest {
                batch_id,
                events: vec![EnrichedEvent {
                    event_id: format!("ev-{batch_id}"),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let encoded: Vec<Vec<u8>> = requests.iter().map(Message::encode_to_vec).collect();
        let (decoded, error) = decode_frames(ProstCodec::<ExportRequest, ExportRequest>::default(), &encoded);
        assert_eq!((decoded, error.map(|e| e.code())), (requests.clone(), None));

        // A length-delimited event field whose length runs past the end of its frame.
        let broken = vec![0x12, 0x7f, 0x0a];
        let stream = [encoded[0].clone(), broken, encoded[1].clone()];
        for (decoded, error, code) in [
            {
                let (d, e) = decode_frames(ProstCodec::<ExportRequest, ExportRequest>::default(), &stream);
                (d, e, tonic::Code::InvalidArgument)
            },
            {
                let (d, e) = decode_frames(ClientCodec::<ExportRequest, ExportRequest>::default(), &stream);
                (d, e, tonic::Code::Internal)
            },
        ] {
            assert_eq!(decoded, requests[..1]);
            let error = error.expect("the broken frame is refused");
            assert_eq!(error.code(), code, "{error:?}");
            assert!(error.message().contains("buffer underflow"), "{error:?}");
        }
    }
}
