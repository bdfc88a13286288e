//! Server wiring: health (starting NOT_SERVING), reflection, authentication, TLS, and a graceful
//! drain bounded by a grace period. Services add their tonic services and call
//! [`GrpcServer::serve`] with a bound listener and a shutdown future.

use std::{future::Future, time::Duration};

use tokio::net::TcpListener;
use tonic::{server::NamedService, service::RoutesBuilder, transport::Server};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    auth::{AuthLayer, Authenticator},
    config::RuntimeConfig,
    error::Error,
    http::{HttpLimits, HttpOptions},
    tls::ListenerTls,
};

/// What every listener needs besides its services.
#[derive(Clone)]
pub struct ServeOptions {
    /// Token checks and RBAC.
    pub auth: Authenticator,
    /// Listener TLS (server-only or mutual) for gRPC and the HTTP listeners beside it;
    /// plaintext when `None`.
    pub tls: Option<ListenerTls>,
    /// Timeouts and connection caps of the HTTP listeners beside gRPC.
    pub http: HttpLimits,
    /// Longest wait for in-flight calls after shutdown starts.
    pub grace: Duration,
}

impl ServeOptions {
    /// How HTTP listeners beside these servers serve (see [`GrpcServer::http_options`]).
    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            tls: self.tls.clone(),
            limits: self.http,
        }
    }

    /// Builds options from the shared runtime config (reads token and TLS files).
    pub fn from_config(config: &RuntimeConfig) -> Result<Self, Error> {
        Ok(Self {
            auth: Authenticator::new(&config.auth)?,
            tls: config.tls.listener()?,
            http: config.http,
            grace: config.shutdown_grace,
        })
    }
}

/// Marks services SERVING or NOT_SERVING in gRPC health.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    names: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl Health {
    /// Marks `S` and the server as a whole SERVING.
    pub async fn serving<S: NamedService>(&self) {
        self.reporter.set_serving::<S>().await;
        self.reporter.set_service_status("", ServingStatus::Serving).await;
    }

    /// Marks `S` and the server as a whole NOT_SERVING (a dependency is down).
    pub async fn not_serving<S: NamedService>(&self) {
        self.reporter.set_not_serving::<S>().await;
        self.reporter.set_service_status("", ServingStatus::NotServing).await;
    }

    async fn all_not_serving(&self) {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        for name in names.into_iter().chain([""]) {
            self.reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
    }
}

/// A gRPC server under construction.
pub struct GrpcServer {
    routes: RoutesBuilder,
    health: Health,
    options: ServeOptions,
}

impl GrpcServer {
    /// Starts a server with health (everything NOT_SERVING) and reflection for the attackmesh schema.
    pub async fn new(options: ServeOptions) -> Result<Self, Error> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        reporter.set_service_status("", ServingStatus::NotServing).await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(attackmesh::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let v1 = reflection
            .build_v1()
            .map_err(|e| Error::ConfigInvalid(format!("reflection: {e}")))?;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(attackmesh::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let v1alpha = reflection
            .build_v1alpha()
            .map_err(|e| Error::ConfigInvalid(format!("reflection: {e}")))?;
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service).add_service(v1).add_service(v1alpha);
        Ok(Self {
            routes,
            health: Health {
                reporter,
                names: Default::default(),
            },
            options,
        })
    }

    /// Handle to flip health as dependencies come and go.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The token checks of this server, for HTTP endpoints served beside it.
    pub fn authenticator(&self) -> Authenticator {
        self.options.auth.clone()
    }

    /// How HTTP listeners beside this server (Falco input, TAXII, metrics) serve: TLS exactly
    /// when gRPC has it, and the configured limits; pass it to [`crate::http::serve`].
    pub fn http_options(&self) -> HttpOptions {
        self.options.http_options()
    }

    /// Adds a service; it reports NOT_SERVING until [`Health::serving`] is called for it.
    pub async fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.health.reporter.set_not_serving::<S>().await;
        if let Ok(mut names) = self.health.names.lock() {
            names.push(S::NAME);
        }
        self.routes.add_service(service);
        self
    }

    /// Serves on `listener` until `shutdown` resolves, then reports NOT_SERVING, stops accepting,
    /// and waits at most the grace period for in-flight calls before closing them.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let local = listener.local_addr()?;
        let builder = Server::builder()
            .tcp_nodelay(true)
            // The windows a caller grants this server's answers, granted to its requests too.
            .initial_stream_window_size(Some(crate::client::STREAM_WINDOW))
            .initial_connection_window_size(Some(crate::client::CONNECTION_WINDOW))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        // Token files rotate without a restart for as long as this server runs.
        let _token_watch = self.options.auth.watch();
        // TLS is done here rather than by tonic, so each handshake takes the certificate of the moment.
        let incoming = crate::incoming::incoming(listener, self.options.tls.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let router = builder
            .layer(AuthLayer::new(self.options.auth.clone()))
            .add_routes(self.routes.routes());
        let server = router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
        tokio::pin!(server);
        tracing::info!(addr = %local, tls = self.options.tls.is_some(), "grpc server listening");
        tokio::select! {
            result = &mut server => return result.map_err(Error::from),
            () = shutdown => {}
        }
        self.health.all_not_serving().await;
        let _ = stop_tx.send(());
        match tokio::time::timeout(self.options.grace, server).await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => {
                tracing::warn!(grace = ?self.options.grace, "grace period over, closing remaining calls");
                Ok(())
            }
        }
    }
}
