//! gRPC for tests: channels and requests with a bearer token, waiting for a server's health, and
//! a service future running on the test's runtime until the test stops it.

use std::{fmt::Debug, future::Future, net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Longest wait for a server's health: building the ATT&CK engine takes a while in a debug
/// build on a busy machine.
const HEALTH_WAIT: Duration = Duration::from_secs(90);

/// A plaintext channel to `addr` that connects on first use.
pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy()
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Waits until the server at `addr` reports SERVING in gRPC health.
pub async fn wait_serving(addr: SocketAddr) {
    wait_health(addr, ServingStatus::Serving).await;
}

/// Waits until the server at `addr` reports `want` for itself as a whole, following gRPC
/// health's `Watch` stream (a refused or broken connection is tried again after a short pause);
/// panics when it does not within 90 s.
pub async fn wait_health(addr: SocketAddr, want: ServingStatus) {
    let mut health = HealthClient::new(channel(addr));
    let watch = async {
        loop {
            if let Ok(answer) = health.watch(HealthCheckRequest::default()).await {
                let mut updates = answer.into_inner();
                while let Ok(Some(update)) = updates.message().await {
                    if update.status == want as i32 {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(HEALTH_WAIT, watch).await.is_err() {
        panic!("{addr} never reported {want:?}");
    }
}

/// Resolves when the test stops a [`Running`] service or drops it: the shutdown future a
/// service's `serve` takes.
pub type Shutdown = WaitForCancellationFutureOwned;

/// A service running on a task of the test's runtime. Dropping it starts the service's graceful
/// shutdown without waiting for it; [`Running::stop`] waits.
pub struct Running<E> {
    /// The gRPC address the service listens on.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Debug + Send + 'static> Running<E> {
    /// Runs `serve(listener, shutdown)` on a listener of its own; see [`Running::start_on`].
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        Self::start_on(crate::bind().await.0, serve).await
    }

    /// Runs `serve(listener, shutdown)` on a task and waits until the service reports SERVING
    /// in gRPC health; panics when the service ends first.
    pub async fn start_on<F, Fut>(listener: TcpListener, serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let mut task = tokio::spawn(serve(listener, stop.clone().cancelled_owned()));
        tokio::select! {
            () = wait_serving(addr) => {}
            ended = &mut task => panic!("the service on {addr} ended before serving: {ended:?}"),
        }
        Self {
            addr,
            stop,
            task: Some(task),
        }
    }

    /// A plaintext channel to the service.
    pub fn channel(&self) -> Channel {
        channel(self.addr)
    }

    /// Starts the graceful shutdown, waits for the service to end and returns what it returned.
    pub async fn stop(mut self) -> Result<(), E> {
        self.stop.cancel();
        let task = self.task.take().unwrap();
        task.await.unwrap()
    }
}

impl<E> Drop for Running<E> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
