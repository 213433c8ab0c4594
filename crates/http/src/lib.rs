//! callgate's HTTP edge: router, API, webhooks, live page, `/metrics`, auth, reload, accept loop.
//!
//! Where the outside world meets the governor: an edge turns an HTTP request (the API v1,
//! a Vapi or Twilio webhook) into a request of the governor (crate `callgate-governor`) or
//! of the runtime around it (crate `callgate-runtime`: campaigns, inbound admission,
//! reconciliation), and the answer into HTTP; [`error::ApiError`] is the one place a
//! typed error becomes a status.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod app;
pub mod auth;
pub mod bounds;
pub mod callers;
pub mod connections;
pub mod error;
pub mod live;
pub mod reload;
pub mod router;
pub mod twilio;
pub mod vapi;

use axum::http::StatusCode;
use error::{ApiError, ErrorKind};

/// A webhook's outcome for metrics, from the status it was answered with.
pub(crate) fn webhook_outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        400..=499 => "bad_request",
        _ => "error",
    }
}

/// A body that could not be read: too large (413) or cut off (400).
pub(crate) fn body_error(e: axum::Error) -> ApiError {
    let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
        .any(|e| e.to_string().contains("length limit"));
    if too_large {
        ApiError::new(ErrorKind::PayloadTooLarge, "body_too_large", "the request body is larger than allowed")
    } else {
        ApiError::bad_request(format!("cannot read the request body: {e}"))
    }
}
