//! The enrichment crate's one error type and its single mapping to gRPC status codes.
//!
//! Backpressure is an error too: [`Error::Retry`] and [`Error::Exhausted`] carry how long to
//! wait, sent to clients as `RetryInfo`. Messages never carry event payloads or secrets.

use std::time::Duration;

use attackmesh::proto::FieldViolation;

/// Everything that can go wrong in the enrichment crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid enrichment config: {0}")]
    Config(String),
    /// A request was malformed.
    #[error("invalid argument: {}", attackmesh::validate::summary(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// Downstream is slow, full or unavailable: nothing was taken, resend after `after`.
    #[error("{message} (retry in {after:?})")]
    Retry {
        /// How long to wait.
        after: Duration,
        /// Why.
        message: String,
    },
    /// A limit on streams or in-flight work refuses a whole call.
    #[error("{message}")]
    Exhausted {
        /// How long to wait.
        after: Duration,
        /// Which limit.
        message: String,
    },
    /// The service is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// A peer refused our credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// A record could not be parsed (shipper).
    #[error(transparent)]
    Parse(#[from] attackmesh::formats::ParseError),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A gRPC call failed in a way no retry can fix.
    #[error("{0}")]
    Rpc(String),
    /// The shared runtime (listener, TLS, health) failed.
    #[error(transparent)]
    Runtime(#[from] attackmesh_runtime::Error),
    /// The knowledge base for degraded mode could not be loaded.
    #[error(transparent)]
    Attack(#[from] attackmesh_attack::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// One invalid field.
    pub(crate) fn invalid(field: &str, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        }])
    }
}

fn with_retry(code: tonic::Code, message: String, after: Duration) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(after)))
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(violations) => attackmesh::validate::to_status("", &violations),
            Error::Retry { after, message } => with_retry(tonic::Code::Unavailable, message, after),
            Error::Exhausted { after, message } => with_retry(tonic::Code::ResourceExhausted, message, after),
            Error::Unavailable(message) => with_retry(tonic::Code::Unavailable, message, Duration::from_secs(1)),
            other => {
                tracing::error!(error = %other, "enrichment request failed");
                tonic::Status::internal("enrichment failed; see the enrichment service log")
            }
        }
    }
}
