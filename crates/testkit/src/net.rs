//! Loopback addresses for tests: a listener on an ephemeral port, and an address that is free
//! for a moment.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listener on an ephemeral port of 127.0.0.1, and its address.
pub async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An address on 127.0.0.1 that was free when asked: for a listener the test cannot hand over
/// (a child process's config file) or one it opens later on purpose (a peer that is down at
/// first). Prefer [`bind`] otherwise, since another process may take the port in between.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
