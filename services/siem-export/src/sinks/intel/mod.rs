//! Intel sink: enriched events to the intel service's `ShareEvents` RPC over gRPC, where their
//! indicators become STIX objects in a TAXII collection.
//!
//! Client TLS is the product's `tls` section; the bearer token (role admin) comes from
//! `token_file` (re-read before each request, so it rotates without a restart) or, in
//! `serve all`, from a token made for the run. The events' W3C trace context travels in the
//! request metadata, so intel's spans join the Export batch's trace.

mod config;
mod service;
#[cfg(test)]
mod tests;

pub use config::IntelSinkConfig;
pub use service::IntelSink;

/// Kind name of this sink.
pub const KIND: &str = "intel";
