//! The crate's one error type.

/// What can go wrong building campaigns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid campaign configuration: {0}")]
    Config(String),
    /// A snapshot cannot be restored.
    #[error("cannot restore the campaign snapshot: {0}")]
    Snapshot(String),
}
