//! Prometheus metrics: one process-wide registry, and an HTTP listener serving `/metrics`.
//!
//! Each crate keeps its metrics in a `LazyLock` static that registers itself here on first use,
//! so several services in one process (`serve all`, tests) never register a name twice.
//! Metric names are constants in the crate that owns them; label values never carry secrets.

use std::{
    future::Future,
    sync::{LazyLock, Mutex},
};

use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;

use crate::error::Error;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::with_prefix("attackmesh")));

/// Registers a metric under `attackmesh_<name>`; call once per name (from a `LazyLock`).
pub fn register<M>(name: &str, help: &str, metric: M)
where
    M: prometheus_client::registry::Metric,
{
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.register(name, help, metric);
    }
}

/// The current metrics in the Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    if let Ok(registry) = REGISTRY.lock() {
        let _ = encode(&mut out, &registry);
    }
    out
}

/// Router answering `GET /metrics`.
pub fn router() -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                render(),
            )
        }),
    )
}

/// Serves an HTTP router in plaintext with the default limits on `listener` until `shutdown`
/// resolves (in-flight requests finish); [`crate::http::serve`] also takes TLS and limits.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    crate::http::serve(listener, router, crate::http::HttpOptions::default(), shutdown).await
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn registered_metrics_are_rendered_with_the_prefix() {
        let c: Counter = Counter::default();
        register("test_things", "Things counted by a test", c.clone());
        c.inc_by(3);
        let text = render();
        assert!(text.contains("attackmesh_test_things_total 3"), "{text}");
    }
}
