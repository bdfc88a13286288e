//! [`AuthLayer`]: the tower layer that applies an [`Authenticator`] to every request of a gRPC
//! server, answering refusals itself (through the error policy) and recording the [`Caller`] in
//! the extensions of admitted requests.

use std::task::{Context, Poll};

use super::{Authenticator, Caller, Denied};

/// Tower layer applying an [`Authenticator`] to every request of a gRPC server.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    /// Wraps a server's services with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // A value that is not visible ASCII is refused, not taken for a missing token.
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        match self.auth.check(req.uri().path(), header) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    req.extensions_mut().insert(caller);
                }
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(denied) => {
                match &denied {
                    Denied::Unauthenticated { reason, .. } => {
                        tracing::info!(path = %req.uri().path(), reason, "call refused: unauthenticated");
                    }
                    Denied::PermissionDenied { caller, role, .. } => {
                        tracing::info!(path = %req.uri().path(), %caller, %role, "call refused: permission denied");
                    }
                }
                let status = attackmesh::error::to_status(&denied);
                futures::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The caller recorded by [`AuthLayer`] (None only for open RPCs or when no layer ran).
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}
