//! The enrichment crate's one error type and its place in the error policy
//! ([`attackmesh::error`]), which alone turns it into what clients see.
//!
//! Backpressure is an error too: [`Error::Retry`] and [`Error::Exhausted`] carry how long to
//! wait, sent to clients as `RetryInfo` or `Retry-After`. Messages never carry event payloads or
//! secrets.

use std::time::Duration;

use attackmesh::{
    error::{ServiceError, ServiceErrorCode},
    proto::FieldViolation,
};

/// Wait suggested when the service is stopping: long enough to reconnect to another replica.
pub(crate) const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

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
    /// Data on disk is in a format this release does not read (a newer one, or not its own).
    #[error(transparent)]
    Format(#[from] attackmesh_runtime::format::FormatError),
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

impl ServiceError for Error {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Error::InvalidArgument(_) => ServiceErrorCode::BadRequest,
            Error::Retry { .. } | Error::Unavailable(_) => ServiceErrorCode::Unavailable,
            Error::Exhausted { .. } => ServiceErrorCode::ResourceExhausted,
            Error::Runtime(e) => e.error_code(),
            Error::Config(_)
            | Error::Unauthenticated(_)
            | Error::Parse(_)
            | Error::Io { .. }
            | Error::Rpc(_)
            | Error::Attack(_)
            | Error::Format(_) => ServiceErrorCode::Internal,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Retry { after, .. } | Error::Exhausted { after, .. } => Some(*after),
            Error::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        }
    }

    fn field_violations(&self) -> &[FieldViolation] {
        match self {
            Error::InvalidArgument(violations) => violations,
            _ => &[],
        }
    }

    /// Backpressure messages are written for detectors (which limit, which dependency).
    fn public_message(&self) -> Option<String> {
        match self {
            Error::Retry { message, .. } | Error::Exhausted { message, .. } | Error::Unavailable(message) => {
                Some(message.clone())
            }
            _ => None,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        attackmesh::error::to_status(&err)
    }
}
