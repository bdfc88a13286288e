//! HTTP listeners beside gRPC (Falco input, TAXII, metrics), plaintext or TLS with the same
//! certificate, client CA and ALPN as the gRPC listeners, HTTP/1.1 and HTTP/2 alike, and the one
//! way an error is answered over HTTP ([`error_response`]).
//!
//! Every listener holds at most [`HttpLimits::max_connections`] connections (TLS handshakes
//! included); a connection beyond that is closed as soon as it is accepted. A connection that
//! goes [`HttpLimits::header_read_timeout`] without a complete request head (headers arriving
//! slowly, nothing sent yet, idle between requests) is closed, and a TLS handshake has
//! [`HANDSHAKE_TIMEOUT`]: clients that send slowly or not at all cannot pile up connections and
//! file descriptors. A failed handshake (wrong CA, missing client certificate under mutual TLS,
//! plaintext on a TLS port) closes that connection only.
//! This module does no authentication: routers call
//! [`Authenticator::check_http`](crate::auth::Authenticator::check_http).

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use attackmesh::error::ErrorAnswer;
use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body::Frame;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tower::ServiceExt as _;

use crate::{error::Error, incoming::Conn, tls::ListenerTls};

/// Longest time a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Metric: connections closed at accept because the listener was full.
const REFUSED_METRIC: &str = "http_connections_refused";

static REFUSED: LazyLock<Counter> = LazyLock::new(|| {
    let counter = Counter::default();
    crate::metrics::register(
        REFUSED_METRIC,
        "HTTP connections closed as soon as accepted because the listener held http.max_connections",
        counter.clone(),
    );
    counter
});

/// Most connections a listener may be configured to hold.
const MAX_CONNECTIONS_LIMIT: usize = 100_000;

/// Limits every HTTP listener applies against slow and idle clients (the `http` config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Longest a connection may go without a complete request head: while a request's headers
    /// arrive, before the first request and between requests (HTTP/1.1 keep-alive and HTTP/2
    /// alike). The connection is then closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Most connections one listener holds at once, TLS handshakes included; connections beyond
    /// it are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

impl HttpLimits {
    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(Error::ConfigInvalid(format!(
                "http.max_connections: must be 1 to {MAX_CONNECTIONS_LIMIT}"
            )));
        }
        if self.header_read_timeout < Duration::from_millis(10) || self.header_read_timeout > Duration::from_secs(600) {
            return Err(Error::ConfigInvalid(
                "http.header_read_timeout: must be 10ms to 10m".into(),
            ));
        }
        Ok(())
    }
}

/// How an HTTP listener serves: TLS (plaintext when `None`) and its limits.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// Listener TLS, the same certificate and client CA as gRPC.
    pub tls: Option<ListenerTls>,
    /// Timeouts and the connection cap.
    pub limits: HttpLimits,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the requests in flight to finish; with TLS, every connection must complete a TLS handshake
/// first.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr()?;
    let limits = options.limits;
    let max = limits.max_connections.clamp(1, MAX_CONNECTIONS_LIMIT);
    tracing::info!(%addr, tls = options.tls.is_some(), max_connections = max, "http listener up");
    let tls = options.tls;
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            REFUSED.inc();
            tracing::debug!(%peer, max_connections = max, "http listener full; connection closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, router, stop) = (tls.clone(), router.clone(), stop_rx.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(Conn::Plain(tcp), peer, router, limits, stop, slot).await,
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        serve_connection(Conn::Tls(Box::new(stream)), peer, router, limits, stop, slot).await
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection gives its slot back when it ends: all slots free means all done.
    let _all = slots.acquire_many(max as u32).await;
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

/// Serves one connection until it ends, goes idle, or finishes its requests after shutdown.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: axum::Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service = TowerToHyperService::new(Tracked {
        router,
        activity: activity.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut conn = Box::pin(builder.serve_connection(TokioIo::new(io), service));
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow_and_update() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "http connection ended");
                }
                break;
            }
            () = activity.idle(limits.header_read_timeout) => {
                tracing::debug!(%peer, "http connection without a request closed");
                break;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    // The slot is free before the socket closes, so a client that saw the close finds it free.
    drop(slot);
    drop(conn);
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
    state: Mutex<(usize, Instant)>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            state: Mutex::new((0, Instant::now())),
            changed: Notify::new(),
        }
    }
}

impl Activity {
    fn start(self: &Arc<Self>) -> InFlight {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves once no request has been in progress for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let (in_flight, since) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
                (in_flight == 0).then(|| since + timeout)
            };
            match deadline {
                Some(deadline) => tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return,
                    () = notified => {}
                },
                None => notified.await,
            }
        }
    }
}

/// One request in progress, from its head until its response body is sent or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = state.0.saturating_sub(1);
            state.1 = Instant::now();
        }
        self.0.changed.notify_waiters();
    }
}

/// The router, counting the requests in progress on its connection.
#[derive(Clone)]
struct Tracked {
    router: axum::Router,
    activity: Arc<Activity>,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Tracked {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|inner| {
                Body::new(TrackedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted until it is sent.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
