//! The ATT&CK library's one error type.
//!
//! Messages name what is wrong (file, rule id, technique id) so an operator can fix it; they
//! never carry event payloads. How an error reaches a caller (gRPC status, exit code) is the
//! business of the service or command that called the library, not of this crate.

/// Everything that can go wrong in the ATT&CK library.
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
    /// A compact attribution could not be expanded (see [`crate::compact::expand`]).
    #[error("compact attribution: {0}")]
    Compact(String),
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

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
