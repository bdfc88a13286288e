//! The intel crate's one error type and its single mapping to gRPC status codes.
//!
//! Messages name what is wrong (collection, field, remote target) so an operator can fix it;
//! they never carry credentials, tokens or database passwords.

use attackmesh::proto::FieldViolation;

/// Everything that can go wrong in the intel crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid intel config: {0}")]
    Config(String),
    /// A request was malformed.
    #[error("invalid argument: {}", attackmesh::validate::summary(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A collection or object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (e.g. write a read-only collection).
    #[error("{0}")]
    PermissionDenied(String),
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A remote service (attribution, a push target) failed or is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// A STIX object could not be built or parsed.
    #[error("stix: {0}")]
    Stix(String),
    /// The knowledge base or attribution engine could not be loaded.
    #[error(transparent)]
    Attack(#[from] attackmesh_attack::Error),
    /// The shared runtime (listener, TLS, health) failed.
    #[error(transparent)]
    Runtime(#[from] attackmesh_runtime::Error),
    /// A file or socket could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::Storage(format!("sqlite: {err}"))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        // The Display of a postgres error never includes the connection string.
        Error::Storage(format!("postgres: {err}"))
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(violations) => attackmesh::validate::to_status("", &violations),
            Error::NotFound(message) => tonic::Status::not_found(message),
            Error::PermissionDenied(message) => tonic::Status::permission_denied(message),
            Error::Unavailable(message) => {
                tracing::warn!(error = %message, "intel dependency unavailable");
                tonic::Status::unavailable("a dependency of the intel service is unavailable; retry later")
            }
            other => {
                tracing::error!(error = %other, "intel request failed");
                tonic::Status::internal("intel request failed; see the intel service log")
            }
        }
    }
}
