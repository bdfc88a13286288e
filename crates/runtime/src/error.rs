//! Errors of the runtime crate.

use std::path::PathBuf;

/// Everything the runtime can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is not valid YAML/JSON or does not fit the schema.
    #[error("invalid configuration: {0}")]
    ConfigInvalid(String),
    /// A secret file (tokens, keys, certificates) could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    Secret {
        /// What was being loaded.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (never contains the secret itself).
        reason: String,
    },
    /// Telemetry could not be initialised.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// The gRPC server failed.
    #[error("server: {0}")]
    Server(#[from] tonic::transport::Error),
    /// An I/O error outside configuration loading.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Process exit code for this error: 64 (EX_USAGE) for configuration problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ConfigRead { .. } | Error::ConfigInvalid(_) | Error::Secret { .. } => 64,
            _ => 1,
        }
    }
}

/// Every runtime failure is a fault of the server: the policy logs it and tells clients nothing
/// of it.
impl attackmesh::error::ServiceError for Error {
    fn error_code(&self) -> attackmesh::error::ServiceErrorCode {
        attackmesh::error::ServiceErrorCode::Internal
    }
}
