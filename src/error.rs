//! The one error policy of attackmesh: every service error names a [`ServiceErrorCode`], and
//! this module alone decides what a client is told, over gRPC ([`to_status`]) or HTTP (the
//! status, `Retry-After` and challenge of an [`ErrorAnswer`]).
//!
//! Faults of the caller (bad input, credentials, missing objects) are told as the error displays
//! them. Faults of the server (internal errors, unavailable dependencies, exhausted resources) are
//! logged here with their details and answered with a generic message, unless the service wrote a
//! message meant for clients ([`ServiceError::public_message`]), so paths, SQL and peer errors
//! never reach a client. A wait carried by the error becomes `RetryInfo` (gRPC) or `Retry-After`
//! (HTTP). This module formats no HTTP body: each HTTP surface formats its own from the answer.

use std::time::Duration;

use http::StatusCode;

use crate::proto::FieldViolation;

/// The small set of outcomes every service error maps to, each with one gRPC code and one HTTP
/// status (after Quickwit's `ServiceErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceErrorCode {
    /// The request is malformed or invalid; resending it unchanged fails again.
    BadRequest,
    /// No usable credentials.
    Unauthenticated,
    /// Authenticated, but not allowed to do this.
    PermissionDenied,
    /// The addressed object does not exist (or is invisible to the caller).
    NotFound,
    /// What is stored prevents the request (e.g. a stored version no later one can follow);
    /// resending it unchanged fails again.
    Conflict,
    /// The client accepts no representation this server produces (HTTP `Accept`).
    NotAcceptable,
    /// The request body or message is over a configured size limit.
    PayloadTooLarge,
    /// The request body is in a media type this endpoint does not take.
    UnsupportedMediaType,
    /// A limit (queue bound, streams, rate) refuses the request for now; retry later.
    ResourceExhausted,
    /// The service or one of its dependencies is unavailable for now; retry later.
    Unavailable,
    /// A fault of the server itself; the client can do nothing about it.
    Internal,
}

impl ServiceErrorCode {
    /// The gRPC status code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::BadRequest | Self::NotAcceptable | Self::UnsupportedMediaType => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::Conflict => tonic::Code::FailedPrecondition,
            Self::PayloadTooLarge => tonic::Code::OutOfRange,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// True for faults of the caller, whose errors are told to it as they display.
    pub fn is_client_fault(self) -> bool {
        !matches!(self, Self::ResourceExhausted | Self::Unavailable | Self::Internal)
    }

    /// What a client is told of a server fault whose service wrote no public message.
    fn generic_message(self) -> &'static str {
        match self {
            Self::ResourceExhausted => "too busy; retry later",
            Self::Unavailable => "temporarily unavailable; retry later",
            _ => "internal error; see the service log",
        }
    }
}

/// An error a service answers clients with. Every service's error type implements it; the
/// answer itself is built only by [`ErrorAnswer::from_error`].
pub trait ServiceError: std::error::Error {
    /// The outcome this error stands for.
    fn error_code(&self) -> ServiceErrorCode;

    /// How long the client should wait before resending (gRPC `RetryInfo`, HTTP `Retry-After`).
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// The invalid fields of a [`ServiceErrorCode::BadRequest`] (gRPC `BadRequest` details).
    fn field_violations(&self) -> &[FieldViolation] {
        &[]
    }

    /// A message for the client that the service wrote for a server fault (e.g. which queue is
    /// full), free of internals. `None`, the default: a client fault is told as it displays, a
    /// server fault gets a generic message and its details are logged.
    fn public_message(&self) -> Option<String> {
        None
    }

    /// The `WWW-Authenticate` challenge of an HTTP 401 (ignored by gRPC).
    fn auth_challenge(&self) -> Option<&'static str> {
        None
    }
}

/// What a client is told of an error, whichever the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorAnswer {
    /// The outcome.
    pub code: ServiceErrorCode,
    /// The message for the client (never internal details).
    pub message: String,
    /// How long to wait before resending.
    pub retry_after: Option<Duration>,
    /// Invalid fields of a bad request.
    pub violations: Vec<FieldViolation>,
    /// `WWW-Authenticate` challenge of an HTTP 401.
    pub challenge: Option<&'static str>,
}

impl ErrorAnswer {
    /// An answer written directly for the client (no underlying error to log).
    pub fn new(code: ServiceErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            violations: Vec::new(),
            challenge: None,
        }
    }

    /// The same answer, asking the client to wait `after` before resending.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The answer to `err` under the policy; logs the details of server faults it withholds.
    pub fn from_error<E: ServiceError + ?Sized>(err: &E) -> Self {
        let code = err.error_code();
        let message = match err.public_message() {
            Some(message) => {
                tracing::debug!(?code, error = %err, "request refused");
                message
            }
            None if code.is_client_fault() => {
                tracing::debug!(?code, error = %err, "request refused");
                err.to_string()
            }
            None => {
                if code == ServiceErrorCode::Internal {
                    tracing::error!(error = %err, "request failed");
                } else {
                    tracing::warn!(?code, error = %err, "request failed");
                }
                code.generic_message().to_owned()
            }
        };
        Self {
            code,
            message,
            retry_after: err.retry_after(),
            violations: err.field_violations().to_vec(),
            challenge: err.auth_challenge(),
        }
    }

    /// The HTTP status of this answer.
    pub fn http_status(&self) -> StatusCode {
        self.code.http_status()
    }

    /// The gRPC status: `BadRequest` field violations for invalid arguments, `RetryInfo` when
    /// the answer carries a wait.
    pub fn into_status(self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        if self.code == ServiceErrorCode::BadRequest && !self.violations.is_empty() {
            return crate::validate::to_status("", &self.violations);
        }
        match self.retry_after {
            Some(after) => tonic::Status::with_error_details(
                self.code.grpc_code(),
                self.message,
                ErrorDetails::with_retry_info(Some(after)),
            ),
            None => tonic::Status::new(self.code.grpc_code(), self.message),
        }
    }
}

/// The gRPC status for `err`: the one way a service error becomes a `tonic::Status`.
pub fn to_status<E: ServiceError + ?Sized>(err: &E) -> tonic::Status {
    ErrorAnswer::from_error(err).into_status()
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
