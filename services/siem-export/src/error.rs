//! The siem-export crate's one error type and its place in the error policy
//! ([`attackmesh::error`]), which alone turns it into what clients see.
//!
//! Messages name the file, sink or setting at fault so an operator can act; they never carry
//! event payloads or secrets (sink credentials are [`attackmesh_runtime::secret::Secret`]s and
//! never printed). Clients are told only that a queue is full (and when to resend); the rest is
//! logged.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use attackmesh::error::{ServiceError, ServiceErrorCode};

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
        /// When to resend (`queue.retry_after`).
        retry_after: Duration,
    },
    /// A queue's disk has no space left (or the quota is used up): the batch was refused.
    #[error("no space left for the queue of sink `{sink}`: {source}")]
    DiskFull {
        /// The sink whose queue could not grow.
        sink: String,
        /// The cause.
        source: std::io::Error,
        /// When to resend (`queue.retry_after`).
        retry_after: Duration,
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
    /// Data on disk is in a format this release does not read (a newer one, or not its own).
    #[error(transparent)]
    Format(#[from] attackmesh_runtime::format::FormatError),
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

    /// `self` as [`Error::DiskFull`] of `sink` when it is an I/O error of a full disk.
    pub(crate) fn disk_full_of(self, sink: &str, retry_after: Duration) -> Self {
        match self {
            Error::Io { source, .. } if crate::disk::is_disk_full(&source) => Error::DiskFull {
                sink: sink.to_owned(),
                source,
                retry_after,
            },
            other => other,
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

impl ServiceError for Error {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Error::QueueFull { .. } | Error::DiskFull { .. } => ServiceErrorCode::ResourceExhausted,
            Error::Io { .. } | Error::Sink { .. } => ServiceErrorCode::Unavailable,
            Error::Runtime(e) => e.error_code(),
            Error::Config(_) | Error::DeadLetter(_) | Error::Format(_) => ServiceErrorCode::Internal,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::QueueFull { retry_after, .. } | Error::DiskFull { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A full queue is named (so an operator reading the sender's log knows which sink lags),
    /// its sizes are not.
    fn public_message(&self) -> Option<String> {
        match self {
            Error::QueueFull { sink, .. } => Some(format!("queue of sink `{sink}` is full; resend later")),
            Error::DiskFull { sink, .. } => Some(format!("no space left for the queue of sink `{sink}`; resend later")),
            _ => None,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        attackmesh::error::to_status(&err)
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn a_full_queue_says_when_to_resend() {
        let status = tonic::Status::from(Error::QueueFull {
            sink: "elasticsearch".into(),
            bytes: 1024,
            max_bytes: 1024,
            retry_after: Duration::from_secs(7),
        });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "queue of sink `elasticsearch` is full; resend later");
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(7)));
    }

    #[test]
    fn config_and_file_errors_are_not_told_to_clients() {
        let status = tonic::Status::from(Error::Config(
            "sinks.splunk.token_file: /run/secrets/hec unreadable".into(),
        ));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("/run/secrets"), "{}", status.message());
        assert!(!status.message().contains("token_file"), "{}", status.message());
        let status = tonic::Status::from(Error::io(
            "fsync",
            Path::new("/var/lib/attackmesh/queue/elasticsearch/00001.seg"),
            std::io::Error::other("disk gone"),
        ));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("/var/lib"), "{}", status.message());
    }
}
