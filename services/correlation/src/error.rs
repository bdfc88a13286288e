//! The correlation crate's one error type and its place in the error policy
//! ([`attackmesh::error`]), which alone turns it into a gRPC status. Messages name what is wrong
//! (setting, rule, file) and never carry credentials.

use std::time::Duration;

use attackmesh::{
    error::{ServiceError, ServiceErrorCode},
    proto::FieldViolation,
};

/// Wait suggested to the sink when the state cannot be made durable right now.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Everything that can go wrong in the correlation crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration or a rule pack is invalid.
    #[error("invalid correlation config: {0}")]
    Config(String),
    /// A request was malformed.
    #[error("invalid argument: {}", attackmesh::validate::summary(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The state could not be written: the batch is not taken, send it again later.
    #[error("correlation state not durable: {0}")]
    Unavailable(String),
    /// The shared runtime (listener, TLS, health) failed.
    #[error(transparent)]
    Runtime(#[from] attackmesh_runtime::Error),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServiceError for Error {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Error::InvalidArgument(_) => ServiceErrorCode::BadRequest,
            Error::Unavailable(_) => ServiceErrorCode::Unavailable,
            Error::Runtime(e) => e.error_code(),
            Error::Config(_) | Error::Io(_) => ServiceErrorCode::Internal,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        matches!(self, Error::Unavailable(_)).then_some(RETRY_AFTER)
    }

    fn field_violations(&self) -> &[FieldViolation] {
        match self {
            Error::InvalidArgument(violations) => violations,
            _ => &[],
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        attackmesh::error::to_status(&err)
    }
}
