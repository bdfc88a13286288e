//! HTTP listeners beside gRPC (Falco input, TAXII, metrics), plaintext or TLS with the same
//! certificate, client CA and ALPN as the gRPC listeners, and the one way an error is answered
//! over HTTP ([`error_response`]).
//!
//! TLS handshakes run in their own tasks, bounded by [`HANDSHAKE_TIMEOUT`], so a client that
//! stalls mid-handshake never holds up other connections. A failed handshake (wrong CA, missing
//! client certificate under mutual TLS, plaintext on a TLS port) closes that connection only.
//! This module does no authentication: routers call
//! [`Authenticator::check_http`](crate::auth::Authenticator::check_http).

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use attackmesh::error::ErrorAnswer;
use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

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

/// Answers an error over HTTP under the error policy: the answer's status, `Retry-After` (whole
/// seconds, at least 1) when it carries a wait, `WWW-Authenticate` when it carries a challenge,
/// and `body` as `media_type` (each surface formats its own body from the answer).
pub fn error_response(answer: &ErrorAnswer, media_type: &'static str, body: String) -> Response {
    let mut response = (answer.http_status(), body).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(media_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Some(after) = answer.retry_after {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    if let Some(value) = answer.challenge.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// [`error_response`] with the JSON body of attackmesh's own HTTP surfaces:
/// `{"error": message}`, plus `violations` (`field`, `description`) for invalid input.
pub fn json_error(answer: &ErrorAnswer) -> Response {
    let mut body = serde_json::json!({ "error": answer.message });
    if !answer.violations.is_empty() {
        body["violations"] = answer
            .violations
            .iter()
            .map(|v| serde_json::json!({"field": v.field, "description": v.description}))
            .collect();
    }
    error_response(answer, "application/json", body.to_string())
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

#[cfg(test)]
mod tests {
    use attackmesh::error::{ErrorAnswer, ServiceErrorCode};

    use super::*;

    #[test]
    fn errors_carry_the_policy_status_wait_and_challenge() {
        let busy = ErrorAnswer::new(ServiceErrorCode::Unavailable, "export is slow")
            .with_retry_after(Duration::from_millis(1500));
        let response = json_error(&busy);
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));

        let mut denied = ErrorAnswer::new(ServiceErrorCode::Unauthenticated, "unknown token");
        denied.challenge = Some("Bearer");
        let response = error_response(&denied, "text/plain", "no".into());
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain");
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }
}
