//! The attribution crate's one error type and its single mapping to gRPC status codes.
//!
//! Messages name what is wrong (file, rule id, technique id) so an operator can fix it; they
//! never carry event payloads.

use attackmesh::proto::FieldViolation;

/// Everything that can go wrong in the attribution crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The knowledge base could not be read, decoded or imported.
    #[error("knowledge base: {0}")]
    Kb(String),
    /// A rule pack is invalid; `rule` names the offending rule when there is one.
    #[error("rule pack {file}{}: {message}", rule.as_ref().map(|r| format!(" rule `{r}`")).unwrap_or_default())]
    Pack {
        /// File (or embedded pack name) the pack came from.
        file: String,
        /// Rule id inside the pack.
        rule: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A request was malformed.
    #[error("invalid argument: {}", summary(.0))]
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
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A pack-level error (no rule).
    pub(crate) fn pack(file: &str, message: impl Into<String>) -> Self {
        Error::Pack {
            file: file.to_owned(),
            rule: None,
            message: message.into(),
        }
    }

    /// A rule-level error.
    pub(crate) fn rule(file: &str, rule: &str, message: impl Into<String>) -> Self {
        Error::Pack {
            file: file.to_owned(),
            rule: Some(rule.to_owned()),
            message: message.into(),
        }
    }

    /// One invalid field.
    pub(crate) fn invalid(field: &str, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        }])
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

fn summary(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .take(3)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(violations) => attackmesh::validate::to_status("", &violations),
            Error::NotFound(message) => tonic::Status::not_found(message),
            other => {
                tracing::error!(error = %other, "attribution request failed");
                tonic::Status::internal("attribution failed; see the attribution service log")
            }
        }
    }
}
