//! Slow and idle clients on an HTTP listener (Falco input, TAXII and metrics all serve through
//! `attackmesh_runtime::http::serve`): unfinished headers and silent connections are closed after
//! the header-read timeout, connections beyond the cap are closed at once, and a complete request
//! is served again as soon as slots free.

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use attackmesh_runtime::http::{HttpLimits, HttpOptions};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

/// Bound on every wait: a connection the server never closes fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

async fn start(limits: HttpLimits) -> (SocketAddr, CancellationToken) {
    let (listener, addr) = attackmesh_testkit::bind().await;
    let stop = CancellationToken::new();
    let options = HttpOptions { tls: None, limits };
    tokio::spawn(attackmesh_runtime::http::serve(
        listener,
        attackmesh_runtime::metrics::router(),
        options,
        stop.clone().cancelled_owned(),
    ));
    (addr, stop)
}

/// Reads until the server closes the connection; what it sent before closing.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&seen).into_owned()
}

async fn get_metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    until_closed(&mut stream).await
}

#[tokio::test]
async fn unfinished_headers_and_silent_connections_are_closed() {
    let (addr, _stop) = start(HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 64,
    })
    .await;
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /metrics HTTP/1.1\r\nhost: te").await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut idle_after_request = TcpStream::connect(addr).await.unwrap();
    idle_after_request
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();

    until_closed(&mut partial).await;
    until_closed(&mut silent).await;
    let answered = until_closed(&mut idle_after_request).await;
    assert!(
        answered.starts_with("HTTP/1.1 200"),
        "the request was answered before the idle connection closed: {answered}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_slots_come_back() {
    let (addr, _stop) = start(HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 3,
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    // The three slots are taken (a complete request on a fourth connection is not served).
    let refused = get_metrics(addr).await;
    assert_eq!(refused, "", "a connection over the cap is closed without an answer");

    for stream in &mut held {
        until_closed(stream).await;
    }
    let answered = get_metrics(addr).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}
