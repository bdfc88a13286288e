//! File sink: NDJSON lines (canonical EnrichedEvent, ECS document or HEC envelope), synced
//! before a batch counts as delivered, rotated by size, each `(event_id, revision)` written once
//! among the last `dedup_ids` distinct events. The embedded default when no SIEM is configured.

mod config;
mod delivered;
mod encode;
mod service;
#[cfg(test)]
mod tests;

pub(crate) use config::check_name;
pub use config::{DEFAULT_DEDUP_IDS, FileShape, FileSinkConfig, MAX_DEDUP_IDS, PageCache};
pub use service::FileSink;

/// Kind name of this sink.
pub const KIND: &str = "file";
