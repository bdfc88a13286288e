//! A gRPC call written byte by byte over HTTP/2, for what a generated client never sends: a
//! message that stops half way, bytes that are not a protobuf message, a stream left silent.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;

/// One call in progress: the request side stays open until [`RawCall::send`] ends it.
pub struct RawCall {
    send: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
}

/// How a call ended: the `grpc-status` code and `grpc-message`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStatus {
    pub code: i32,
    pub message: String,
}

/// Opens `path` (`/attackmesh.v1.IngestService/Ingest`) on `addr` as the holder of `token`.
pub async fn raw_call(addr: SocketAddr, path: &str, token: &str) -> RawCall {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    RawCall { send, response }
}

/// A gRPC length-prefixed message frame announcing `len` bytes (uncompressed).
pub fn frame_header(len: u32) -> Vec<u8> {
    let mut header = vec![0u8];
    header.extend_from_slice(&len.to_be_bytes());
    header
}

/// `payload` framed as one whole gRPC message.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(payload.len() as u32);
    out.extend_from_slice(payload);
    out
}

impl RawCall {
    /// Sends `data` as the server's flow control allows; `end` closes the request side. Stops,
    /// without failing, once the server has ended the call: a server may answer a bad request
    /// and close the stream before the rest of it arrives (the answer is [`RawCall::status`]).
    pub async fn send(&mut self, data: &[u8], end: bool) {
        let mut rest = Bytes::copy_from_slice(data);
        while !rest.is_empty() {
            self.send.reserve_capacity(rest.len());
            let Some(Ok(granted)) = futures::future::poll_fn(|cx| self.send.poll_capacity(cx)).await else {
                return;
            };
            let chunk = rest.split_to(granted.min(rest.len()));
            if self.send.send_data(chunk, false).is_err() {
                return;
            }
        }
        if end {
            let _ = self.send.send_data(Bytes::new(), true);
        }
    }

    /// Waits for the end of the call and returns its status (from trailers-only headers or
    /// from the trailers after the answers).
    pub async fn status(self) -> RawStatus {
        let _send = self.send;
        let response = self.response.await.unwrap();
        let from = |headers: &http::HeaderMap| {
            let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
            let message = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .map(percent_decode)
                .unwrap_or_default();
            Some(RawStatus { code, message })
        };
        if let Some(status) = from(response.headers()) {
            return status;
        }
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            let Ok(data) = data else { break };
            let _ = body.flow_control().release_capacity(data.len());
        }
        let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
        from(&trailers).unwrap_or(RawStatus {
            code: -1,
            message: "no grpc-status".into(),
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
