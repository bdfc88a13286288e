//! File sink: NDJSON lines (canonical EnrichedEvent, ECS document or HEC envelope), synced
//! before a batch counts as delivered, rotated by size. The embedded default when no SIEM is
//! configured.

mod config;
mod encode;
mod service;
#[cfg(test)]
mod tests;

pub(crate) use config::check_name;
pub use config::{FileShape, FileSinkConfig};
pub use service::FileSink;

/// Kind name of this sink.
pub const KIND: &str = "file";
