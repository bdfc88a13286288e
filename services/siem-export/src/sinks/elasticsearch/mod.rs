//! Elasticsearch sink: ECS documents for Elastic Security over `_bulk`, gzip, API-key or basic
//! authentication, TLS with a custom CA, and an index template with ECS mappings installed at
//! start-up.
//!
//! Idempotency and revisions: each event is written with `index`, `_id = event_id`,
//! `version = revision`, `version_type = external`. A resend of the same revision answers 409
//! (counted as delivered, nothing duplicated); a re-attributed event (higher revision) replaces
//! the older document; an older revision arriving late can never overwrite a newer one. Plain
//! `create` would make every re-attribution a 409 and keep the superseded document, so it is
//! used only for data streams (which take nothing else).

mod config;
mod encode;
mod service;
pub mod template;
#[cfg(test)]
mod tests;

pub use config::ElasticsearchConfig;
pub use service::ElasticsearchSink;

/// Kind name of this sink.
pub const KIND: &str = "elasticsearch";
