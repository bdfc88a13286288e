//! Splunk HTTP Event Collector sink: batches of concatenated JSON event envelopes under a byte
//! cap, `Authorization: Splunk <token>`, Splunk's status codes (HEC_FORMAT), and indexer
//! acknowledgement on a request channel when enabled.
//!
//! HEC has no idempotency key: a batch retried after a lost answer can be indexed twice (each
//! copy carries `event_id`, so searches can dedup). Indexer acknowledgement narrows this to
//! batches whose acknowledgement timed out.

mod config;
mod encode;
mod service;

pub use config::SplunkHecConfig;
pub use service::SplunkHecSink;

/// Kind name of this sink.
pub const KIND: &str = "splunk_hec";
