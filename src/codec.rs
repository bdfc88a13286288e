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
#[derive(Debug, Clone, Copy)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
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
        ProstDecoder(PhantomData, Status::invalid_argument)
    }
}

/// [`ProstCodec`] with decoding failures as `INTERNAL`, as tonic reports them: for a client that
/// resends a batch whose answer did not decode and gives up on `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy)]
pub struct ClientCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ClientCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ClientCodec<T, U>
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
        ProstDecoder(PhantomData, Status::internal)
    }
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
}

impl From<crate::proto::ExportRequest> for EncodedExport {
    /// Encodes each event, as a client would send it.
    fn from(request: crate::proto::ExportRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            events: request.events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect(),
            trace_context: request.trace_context,
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
/// `batch_id = 1`, `repeated bytes events = 2` and `map<string, string> trace_context = 3`,
/// except that each event is copied into the request from a borrowed slice. Prost's encoding of
/// a `Bytes` field clones the handle and drops it once copied: two atomic updates, per event, of
/// a reference count that the thread making the events keeps updating as it splits the next
/// ones off the same buffer, so the two threads pass its cache line back and forth.
macro_rules! encoded_batch_message {
    ($name:ident) => {
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
                    _ => return encoding::skip_field(wire_type, tag, buf, ctx),
                };
                result.map_err(|mut error| {
                    error.push(stringify!($name), field);
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
            }

            fn clear(&mut self) {
                self.batch_id = 0;
                self.events.clear();
                self.trace_context.clear();
            }
        }
    };
}

encoded_batch_message!(EncodedExport);
encoded_batch_message!(EncodedIngest);

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
        assert!(error.contains("EncodedIngest.events"), "{error}");
    }
}
