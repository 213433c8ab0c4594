//! The HTTP edges' error: what an answer that is not a success carries. The governor and
//! everything below it answer with [`callgate_backend::Error`] (kind, retryable, code,
//! message, source); it becomes an [`ApiError`] only here, at the edge, through `From`,
//! and the HTTP status and the JSON body are chosen in exactly one place
//! ([`ApiError::into_response`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Whose fault an error is and what the caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (400).
    BadRequest,
    /// No valid credentials (401).
    Unauthorized,
    /// Valid credentials, too little privilege (403).
    Forbidden,
    /// The thing named does not exist (404).
    NotFound,
    /// The method is not served on this path (405).
    MethodNotAllowed,
    /// The body is larger than the configured limit (413).
    PayloadTooLarge,
    /// The request is valid but the state of what it names does not allow it (409), e.g.
    /// a campaign that exists with other settings, or one that is stopped for good.
    Conflict,
    /// The server cannot promise what it would answer (journal down): retry later (503).
    Unavailable,
    /// A bug (500).
    Internal,
}

/// An error answered as `{ "error": { "code", "message" } }`.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// Classification.
    pub kind: ErrorKind,
    /// A stable machine-readable code (`bad_request`, `unknown_flow`, …).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `code` and `message`.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { kind, code, message: message.into() }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, "bad_request", message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    /// 503: the journal cannot commit.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, "unavailable", message)
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error answer: `{ "error": { "code", "message" } }`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code (`bad_request`, `unknown_flow`, `forbidden`, …).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Admission pauses while the journal (or the shared ledger) cannot commit;
            // probes run every second, so a second is the soonest a retry can succeed.
            return (status, [(axum::http::header::RETRY_AFTER, "1")], axum::Json(body)).into_response();
        }
        (status, axum::Json(body)).into_response()
    }
}

/// The one place where the governor's errors get their HTTP status (from their kind); the
/// code and the message are the error's own.
impl From<callgate_backend::Error> for ApiError {
    fn from(e: callgate_backend::Error) -> Self {
        use callgate_backend::ErrorKind as Kind;
        let kind = match e.kind {
            Kind::Invalid => ErrorKind::BadRequest,
            Kind::NotFound => ErrorKind::NotFound,
            Kind::Forbidden => ErrorKind::Forbidden,
            Kind::Conflict => ErrorKind::Conflict,
            Kind::Unavailable => ErrorKind::Unavailable,
            Kind::Internal => ErrorKind::Internal,
        };
        ApiError::new(kind, e.code, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiError, ErrorKind};
    use axum::http::StatusCode;
    use callgate_backend::{Error, ErrorKind as Kind};
    use callgate_core::RequestError;

    #[test]
    fn each_kind_of_governor_error_has_one_status_and_keeps_its_code_and_message() {
        let cases = [
            (Kind::Invalid, StatusCode::BAD_REQUEST),
            (Kind::NotFound, StatusCode::NOT_FOUND),
            (Kind::Forbidden, StatusCode::FORBIDDEN),
            (Kind::Conflict, StatusCode::CONFLICT),
            (Kind::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (Kind::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (kind, status) in cases {
            let api = ApiError::from(Error::new(kind, "some_code", "why"));
            assert_eq!((api.status(), api.code, api.message.as_str()), (status, "some_code", "why"), "{kind:?}");
        }
    }

    #[test]
    fn the_ledger_refusing_a_request_keeps_the_codes_clients_match_on() {
        let api = |e| ApiError::from(Error::request(e));
        assert_eq!(api(RequestError::UnknownFlow).code, "unknown_flow");
        assert_eq!(api(RequestError::UnknownClass).code, "unknown_class");
        let bad = api(RequestError::BadPools("no pool 3".into()));
        assert_eq!(
            (bad.kind, bad.code, bad.message.as_str()),
            (ErrorKind::BadRequest, "bad_request", "bad pools: no pool 3")
        );
        assert_eq!(api(RequestError::Duplicate).kind, ErrorKind::BadRequest);
    }

    #[test]
    fn only_an_unavailable_backend_is_worth_a_retry_and_the_cause_is_kept() {
        let io = std::io::Error::other("disk full");
        let e = Error::unavailable("the journal cannot commit").with_source(io);
        assert!(e.retryable);
        let cause = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(cause.as_deref(), Some("disk full"));
        assert!(!Error::invalid("no").retryable && !Error::internal("bug").retryable);
        assert!(!Error::not_found("unknown_pool", "no pool").retryable);
    }
}
