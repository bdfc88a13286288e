//! Process signals: SIGTERM and SIGINT start a graceful shutdown.

use std::future::Future;

/// Registers SIGTERM and SIGINT handlers now and returns a future that resolves on the first
/// of them. Call it before serving, so a signal that arrives during start-up is not missed.
pub fn signals() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
    })
}
