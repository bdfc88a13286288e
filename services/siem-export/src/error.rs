//! The siem-export crate's one error type and its single mapping to gRPC status codes.
//!
//! Messages name the file, sink or setting at fault so an operator can act; they never carry
//! event payloads or secrets (sink credentials are [`crate::config::Secret`]s and never printed).

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the siem-export crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid siem_export config: {0}")]
    Config(String),
    /// A queue, dead-letter or sink file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `append to`, `fsync`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A queue refused a batch because it is at its size bound.
    #[error("queue of sink `{sink}` is full ({bytes} bytes on disk, bound {max_bytes})")]
    QueueFull {
        /// The sink whose queue is full.
        sink: String,
        /// Bytes the queue holds.
        bytes: u64,
        /// Its configured bound.
        max_bytes: u64,
    },
    /// A sink could not be set up (HTTP client, CA file, index template).
    #[error("sink `{sink}`: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// What failed (secrets removed).
        message: String,
    },
    /// A dead-letter entry was not found or cannot be replayed.
    #[error("dead letter: {0}")]
    DeadLetter(String),
    /// The shared runtime (listener, TLS, health) failed.
    #[error(transparent)]
    Runtime(#[from] attackmesh_runtime::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// A sink error.
    pub(crate) fn sink(sink: &str, message: impl Into<String>) -> Self {
        Error::Sink {
            sink: sink.to_owned(),
            message: message.into(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::QueueFull { .. } => tonic::Status::resource_exhausted(err.to_string()),
            Error::Config(message) => tonic::Status::failed_precondition(message),
            other => {
                tracing::error!(error = %other, "siem export request failed");
                tonic::Status::unavailable("export queue unavailable; see the siem-export service log")
            }
        }
    }
}
