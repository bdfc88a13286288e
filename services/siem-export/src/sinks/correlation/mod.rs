//! Correlation sink: enriched events to the correlation replicas' `Observe` RPC, each event to
//! the replicas that own one of its entities (rendezvous hashing over `endpoints`, in order:
//! list the StatefulSet's pods by ordinal, e.g. `http://attackmesh-correlation-0.<headless>:50056`).
//!
//! An event is delivered once every replica it went to answered: a replica answers only after
//! the batch is durable in its state, so the queue's cursor never passes an event a replica could
//! still lose. Findings of correlation itself are not sent (they would feed back into the
//! windows that raised them); nor are events without any entity (nothing to correlate).

mod config;
mod service;
#[cfg(test)]
mod tests;

pub use config::CorrelationSinkConfig;
pub use service::CorrelationSink;

/// Kind name of this sink.
pub const KIND: &str = "correlation";
