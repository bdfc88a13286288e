//! Raw gRPC calls to any method path: protobuf bytes in, status out.

use std::{net::SocketAddr, time::Duration};

use bytes::{Buf, BufMut};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

/// Passes protobuf bytes through unchanged, so any method can be called by path.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `path` on `addr` with one request message (`body`, protobuf bytes; empty = all
/// defaults) and `authorization`; returns the first status the call ends with (`Ok` when it
/// answered without error) and the error message, if any.
pub async fn call(addr: SocketAddr, path: &str, authorization: Option<&str>, body: Vec<u8>) -> (Code, String) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter(vec![body]));
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), async {
        let mut stream = grpc.streaming(request, path, RawCodec).await?.into_inner();
        while stream.message().await?.is_some() {}
        Ok::<(), Status>(())
    })
    .await;
    match result {
        Ok(Ok(())) => (Code::Ok, String::new()),
        Ok(Err(status)) => (status.code(), status.message().to_owned()),
        Err(_) => (Code::DeadlineExceeded, "no answer in 15s".into()),
    }
}
