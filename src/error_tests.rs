use std::time::Duration;

use tonic_types::StatusExt;

use super::*;

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("invalid argument: {}", crate::validate::summary(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("no such thing")]
    Missing,
    #[error("sqlite: disk I/O error at /var/lib/secret.db")]
    Storage,
    #[error("queue `a` is full (10 of 10 bytes)")]
    Full,
}

impl ServiceError for TestError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            TestError::Invalid(_) => ServiceErrorCode::BadRequest,
            TestError::Missing => ServiceErrorCode::NotFound,
            TestError::Storage => ServiceErrorCode::Unavailable,
            TestError::Full => ServiceErrorCode::ResourceExhausted,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        matches!(self, TestError::Full | TestError::Storage).then_some(Duration::from_secs(3))
    }

    fn field_violations(&self) -> &[FieldViolation] {
        match self {
            TestError::Invalid(violations) => violations,
            _ => &[],
        }
    }

    fn public_message(&self) -> Option<String> {
        matches!(self, TestError::Full).then(|| "queue `a` is full; resend later".to_owned())
    }
}

#[test]
fn every_code_has_one_grpc_code_and_one_http_status() {
    use ServiceErrorCode::*;
    let table = [
        (BadRequest, tonic::Code::InvalidArgument, 400),
        (Unauthenticated, tonic::Code::Unauthenticated, 401),
        (PermissionDenied, tonic::Code::PermissionDenied, 403),
        (NotFound, tonic::Code::NotFound, 404),
        (Conflict, tonic::Code::FailedPrecondition, 409),
        (NotAcceptable, tonic::Code::InvalidArgument, 406),
        (PayloadTooLarge, tonic::Code::OutOfRange, 413),
        (UnsupportedMediaType, tonic::Code::InvalidArgument, 415),
        (ResourceExhausted, tonic::Code::ResourceExhausted, 429),
        (Unavailable, tonic::Code::Unavailable, 503),
        (Internal, tonic::Code::Internal, 500),
    ];
    for (code, grpc, http) in table {
        assert_eq!(code.grpc_code(), grpc, "{code:?}");
        assert_eq!(code.http_status().as_u16(), http, "{code:?}");
        assert_eq!(code.is_client_fault(), http < 429, "{code:?}");
    }
}

#[test]
fn invalid_arguments_keep_their_field_violations() {
    let err = TestError::Invalid(vec![FieldViolation {
        field: "events[0].timestamp".into(),
        description: "is required".into(),
    }]);
    let status = to_status(&err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), err.to_string());
    let bad = status.get_details_bad_request().expect("BadRequest details");
    assert_eq!(bad.field_violations[0].field, "events[0].timestamp");
}

#[test]
fn client_faults_are_told_as_they_display() {
    let status = to_status(&TestError::Missing);
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "no such thing");
    assert!(status.get_details_retry_info().is_none());
}

#[test]
fn server_faults_never_leak_their_details() {
    let status = to_status(&TestError::Storage);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(!status.message().contains("secret.db"), "{}", status.message());
    assert!(!status.message().contains("sqlite"), "{}", status.message());
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
}

#[test]
fn a_public_message_and_its_wait_reach_the_client() {
    let answer = ErrorAnswer::from_error(&TestError::Full);
    assert_eq!(answer.message, "queue `a` is full; resend later");
    assert_eq!(answer.http_status().as_u16(), 429);
    let status = answer.into_status();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.get_details_retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_secs(3))
    );
}

#[test]
fn answers_written_directly_carry_their_wait() {
    let answer =
        ErrorAnswer::new(ServiceErrorCode::Unavailable, "export is slow").with_retry_after(Duration::from_secs(2));
    assert_eq!(answer.http_status().as_u16(), 503);
    let status = answer.into_status();
    assert_eq!(status.message(), "export is slow");
    assert!(status.get_details_retry_info().is_some());
}
