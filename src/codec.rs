//! The gRPC codec of every attackmesh service and client (generated code names it): prost
//! encoding, with bytes that do not decode as the expected message reported as
//! `INVALID_ARGUMENT` (the sender's mistake: truncated, wrong wire type, nested past the
//! recursion limit) rather than tonic's `INTERNAL`, which would send callers looking for a bug
//! on the server. Both sides use it, so a client that receives an undecodable answer sees
//! `INVALID_ARGUMENT` too, with the decoder's reason.

use std::{collections::HashMap, marker::PhantomData};

use prost::{Message, bytes::Bytes};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
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
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(tonic_prost::ProstCodec::<T, U>::default().decoder())
    }
}

/// Prost decoding, failures as `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct ProstDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(buf)
            .map_err(|status| Status::invalid_argument(status.message().to_owned()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// `attackmesh.v1.ExportRequest` with its events left encoded: field numbers and wire types are
/// the contract's (`repeated EnrichedEvent` and `repeated bytes` are both length-delimited), so
/// every client's `ExportRequest` decodes as this and this encodes as that `ExportRequest`. A
/// sender encodes each event once, as it is made; a receiver keeps the bytes that arrived.
#[derive(Clone, PartialEq, Message)]
pub struct EncodedExport {
    /// Caller-chosen batch number, echoed in the acknowledgement.
    #[prost(uint64, tag = "1")]
    pub batch_id: u64,
    /// The events, each an encoded `EnrichedEvent`.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub events: Vec<Bytes>,
    /// W3C trace context of the batch.
    #[prost(map = "string, string", tag = "3")]
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
#[derive(Clone, PartialEq, Message)]
pub struct EncodedIngest {
    /// Sender-chosen batch number, echoed in the acknowledgement.
    #[prost(uint64, tag = "1")]
    pub batch_id: u64,
    /// The detections, each an encoded `DetectionEvent`.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub events: Vec<Bytes>,
    /// W3C trace context of the batch.
    #[prost(map = "string, string", tag = "3")]
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
