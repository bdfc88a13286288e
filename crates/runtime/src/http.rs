//! HTTP listeners beside gRPC (Falco input, TAXII, metrics), plaintext or TLS with the same
//! certificate, client CA and ALPN as the gRPC listeners.
//!
//! TLS handshakes run in their own tasks, bounded by [`HANDSHAKE_TIMEOUT`], so a client that
//! stalls mid-handshake never holds up other connections. A failed handshake (wrong CA, missing
//! client certificate under mutual TLS, plaintext on a TLS port) closes that connection only.
//! This module does no authentication: routers check tokens themselves.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::error::Error;

/// Longest time a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes completed but not yet taken by the server.
const ACCEPT_BACKLOG: usize = 64;

/// Serves `router` on `listener` until `shutdown` resolves (in-flight requests finish); with
/// `tls`, every connection must complete a TLS handshake first.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr()?;
    match tls {
        None => {
            tracing::info!(%addr, tls = false, "http listener up");
            axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
        }
        Some(config) => {
            tracing::info!(%addr, tls = true, "http listener up");
            let tls = TlsListener::start(listener, TlsAcceptor::from(config));
            axum::serve(tls, router).with_graceful_shutdown(shutdown).await?;
        }
    }
    Ok(())
}

/// A listener yielding connections whose TLS handshake has completed.
struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(ACCEPT_BACKLOG);
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, tx));
        Self {
            addr,
            ready,
            accept_task,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handed = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = handed.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        });
        if ready.is_closed() {
            return;
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task never ends while the listener lives; wait for shutdown instead.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
