//! The intel crate's one error type and its place in the error policy ([`attackmesh::error`]),
//! which alone turns it into a gRPC status or (through the TAXII layer) an HTTP answer.
//!
//! Storage errors are split by what a client can do about them: a busy, locked, full or
//! unreachable database is [`Error::StorageUnavailable`] (retry later); anything else the
//! database says is [`Error::Storage`], a fault of this service. Messages name what is wrong
//! (collection, field, remote target) so an operator can fix it; they never carry credentials,
//! tokens or database passwords, and the policy keeps server faults' messages from clients.

use std::time::Duration;

use attackmesh::{
    error::{ServiceError, ServiceErrorCode},
    proto::FieldViolation,
};

/// Wait suggested to clients when storage or a dependency is unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

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
    /// The storage engine is busy, locked, full or unreachable: retrying later may succeed.
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    /// What is stored prevents the request (e.g. a stored version no later one can follow).
    #[error("{0}")]
    Conflict(String),
    /// The storage engine failed in a way retrying does not fix.
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
        use rusqlite::ErrorCode;
        let message = format!("sqlite: {err}");
        match err.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure,
            ) => Error::StorageUnavailable(message),
            _ => Error::Storage(message),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        // The Display of a postgres error never includes the connection string.
        let message = format!("postgres: {err}");
        // SQLSTATE classes a retry can get past: connection exceptions, insufficient
        // resources, operator intervention (shutdown, starting up), serialisation failures.
        let transient = err.code().is_some_and(|state| {
            let code = state.code();
            ["08", "53", "57P", "40001", "40P01"]
                .iter()
                .any(|prefix| code.starts_with(prefix))
        });
        let unreachable =
            err.code().is_none() && std::error::Error::source(&err).is_some_and(|cause| cause.is::<std::io::Error>());
        if transient || unreachable || err.is_closed() {
            Error::StorageUnavailable(message)
        } else {
            Error::Storage(message)
        }
    }
}

impl ServiceError for Error {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Error::InvalidArgument(_) => ServiceErrorCode::BadRequest,
            Error::NotFound(_) => ServiceErrorCode::NotFound,
            Error::PermissionDenied(_) => ServiceErrorCode::PermissionDenied,
            Error::Conflict(_) => ServiceErrorCode::Conflict,
            Error::StorageUnavailable(_) | Error::Unavailable(_) => ServiceErrorCode::Unavailable,
            Error::Runtime(e) => e.error_code(),
            Error::Config(_) | Error::Storage(_) | Error::Stix(_) | Error::Attack(_) | Error::Io(_) => {
                ServiceErrorCode::Internal
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        matches!(self, Error::StorageUnavailable(_) | Error::Unavailable(_)).then_some(RETRY_AFTER)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None).into()
    }

    #[test]
    fn busy_or_locked_storage_is_unavailable_and_other_failures_are_internal() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_FULL,
        ] {
            let err = sqlite(code);
            assert!(matches!(err, Error::StorageUnavailable(_)), "{err}");
            assert_eq!(err.error_code(), ServiceErrorCode::Unavailable);
            assert_eq!(err.retry_after(), Some(RETRY_AFTER));
        }
        let err = sqlite(rusqlite::ffi::SQLITE_CONSTRAINT);
        assert!(matches!(err, Error::Storage(_)), "{err}");
        assert_eq!(err.error_code(), ServiceErrorCode::Internal);
    }

    #[test]
    fn storage_details_never_reach_grpc_clients() {
        let status = tonic::Status::from(Error::StorageUnavailable("sqlite: database is locked".into()));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("sqlite"), "{}", status.message());
        let status = tonic::Status::from(Error::Storage("sqlite: no such table: objects".into()));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("objects"), "{}", status.message());
    }
}
