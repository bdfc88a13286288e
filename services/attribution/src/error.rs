//! The attribution service's one error type and its place in the error policy
//! ([`attackmesh::error`]), which alone turns it into what clients see.
//!
//! Messages name what is wrong (file, rule id, technique id) so an operator can fix it; they
//! never carry event payloads.

use attackmesh::{
    error::{ServiceError, ServiceErrorCode},
    proto::FieldViolation,
};

/// Everything that can go wrong in the attribution service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ATT&CK library failed (knowledge base or rule packs).
    #[error(transparent)]
    Attack(#[from] attackmesh_attack::Error),
    /// A request was malformed.
    #[error("invalid argument: {}", attackmesh::validate::summary(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A looked-up object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The configuration is invalid.
    #[error("invalid attribution config: {0}")]
    Config(String),
    /// The shared runtime (listener, TLS, health) failed.
    #[error(transparent)]
    Runtime(#[from] attackmesh_runtime::Error),
    /// A background task failed.
    #[error("{0}")]
    Internal(String),
}

impl Error {
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
            Error::NotFound(_) => ServiceErrorCode::NotFound,
            Error::Runtime(e) => e.error_code(),
            Error::Attack(_) | Error::Config(_) | Error::Internal(_) => ServiceErrorCode::Internal,
        }
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
