//! The suppression (do-not-call) lists: `GET /v1/dnc` (every list), `POST /v1/dnc/{list}`
//! (a CSV of numbers, what `callgate dnc import` sends in chunks), and one number at a time:
//! `POST|DELETE /v1/dnc/{list}/{number}`, `GET /v1/dnc/{list}?number=…`.
//!
//! Numbers are validated and normalised as lead imports are (E.164; `country` reads a
//! national number). Writing is for admin keys; reading for any key. A lookup asks the
//! store (shared by every node with `[storage] database`), so any node answers for a
//! number any node added.

use super::body::{PathParam, QueryMap};
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use callgate_dialer::dnc;
use callgate_dialer::import::Rejected;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The largest list upload in one request: about a million numbers; the CLI sends large
/// files in chunks far below it.
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

/// At most this many refused rows are listed; the count stays exact.
const LIST_MAX: usize = 1000;

/// The suppression-list routes, to merge into the API router.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/dnc", get(lists))
        .route("/v1/dnc/{list}", post(import).get(lookup).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/v1/dnc/{list}/{number}", post(add).delete(remove))
}

/// One list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListView {
    /// Its name.
    list: String,
    /// Numbers on it.
    numbers: u64,
    /// Bumped by every change (the audit trail records it with each dial).
    version: u64,
}

/// One number's standing on a list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EntryView {
    /// The list.
    list: String,
    /// E.164.
    number: String,
    /// Whether the list has it.
    listed: bool,
    /// True when this request put it there (`POST`), or took it off (`DELETE`).
    changed: bool,
    /// Where the entry came from (`api`, `import:FILE`, `call:ID`), when listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// Unix ms, when listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    added_at_ms: Option<u64>,
}

/// What an upload did.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DncImportReport {
    /// Numbers new to the list.
    added: u64,
    /// Numbers the list had already (or that came twice).
    duplicates: u64,
    /// Rows refused.
    rejected: u64,
    /// The refused rows, with row numbers and reasons (the first 1000).
    rejected_rows: Vec<Rejected>,
    /// The list's size after the upload.
    numbers: u64,
}

fn list_name(list: &str) -> Result<(), ApiError> {
    dnc::valid_name(list).map_err(ApiError::bad_request)
}

fn number_of(text: &str, country: Option<&str>) -> Result<u64, ApiError> {
    let n = callgate_dialer::phone::normalize(text, country)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, "invalid_number", e))?;
    dnc::key(&n.e164).ok_or_else(|| ApiError::new(ErrorKind::BadRequest, "invalid_number", "not an E.164 number"))
}

fn only(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(other) => {
            Err(ApiError::bad_request(format!("unknown query parameter `{other}` ({})", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

async fn view(app: &App, list: &str, number: u64, changed: bool) -> Result<EntryView, ApiError> {
    let entry = app.campaigns.suppressions().entry(list, number).await?;
    Ok(EntryView {
        list: list.to_string(),
        number: dnc::e164(number),
        listed: entry.is_some(),
        changed,
        source: entry.as_ref().map(|e| e.source.clone()),
        added_at_ms: entry.map(|e| e.added_at),
    })
}

/// Every suppression list, by name.
#[utoipa::path(
    get, path = "/v1/dnc", operation_id = "list_dnc", tag = "compliance",
    responses(
        (status = 200, description = "Every list with its size and version", body = Vec<ListView>),
        (status = 401, description = "No valid key", body = ErrorBody),
    ),
)]
pub(crate) async fn lists(State(app): State<Arc<App>>, _caller: Caller) -> Json<Vec<ListView>> {
    // What every node changed so far (with a shared store); the copy as it is when the
    // store cannot be read.
    if let Err(e) = app.campaigns.suppressions().catch_up().await {
        tracing::warn!(error = %e.message, "Cannot catch up with the suppression lists");
    }
    let lists = app.campaigns.suppressions().summary();
    Json(lists.into_iter().map(|(list, n, version)| ListView { list, numbers: n as u64, version }).collect())
}

/// Whether a number is on a list, with the entry's source and time.
#[utoipa::path(
    get, path = "/v1/dnc/{list}", operation_id = "lookup_dnc", tag = "compliance",
    params(
        ("list" = String, Path, description = "The list (`internal`, …)"),
        ("number" = String, Query, description = "The number, E.164 (`+15551234567`)"),
        ("country" = Option<String>, Query, description = "Region for a number without a country code (`US`)"),
    ),
    responses(
        (status = 200, description = "The number's standing", body = EntryView),
        (status = 400, description = "Bad list name, number or parameter", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The list cannot be read", body = ErrorBody),
    ),
)]
pub(crate) async fn lookup(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(list): PathParam,
    QueryMap(q): QueryMap,
) -> Result<Json<EntryView>, ApiError> {
    list_name(&list)?;
    only(&q, &["number", "country"])?;
    let text = q.get("number").ok_or_else(|| ApiError::bad_request("`number` is required"))?;
    let number = number_of(text, q.get("country").map(String::as_str))?;
    Ok(Json(view(&app, &list, number, false).await?))
}

/// Adds one number to a list (created when new), with `api` as its source.
#[utoipa::path(
    post, path = "/v1/dnc/{list}/{number}", operation_id = "add_dnc", tag = "compliance",
    params(
        ("list" = String, Path, description = "The list (`internal`, …)"),
        ("number" = String, Path, description = "The number, E.164 (`+15551234567`)"),
    ),
    responses(
        (status = 201, description = "Added", body = EntryView),
        (status = 200, description = "On the list already (its first entry is kept)", body = EntryView),
        (status = 400, description = "Bad list name or number, or too many lists", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 503, description = "The list cannot be written durably (the number is suppressed in memory)", body = ErrorBody),
    ),
)]
pub(crate) async fn add(
    State(app): State<Arc<App>>,
    caller: Caller,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let Path((list, text)) = path.map_err(|r| ApiError::bad_request(format!("bad path: {}", r.body_text())))?;
    list_name(&list)?;
    let number = number_of(&text, None)?;
    let added = app.campaigns.opt_out(&list, number, "api").await? > 0;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view(&app, &list, number, added).await?)).into_response())
}

/// Takes one number off a list.
#[utoipa::path(
    delete, path = "/v1/dnc/{list}/{number}", operation_id = "remove_dnc", tag = "compliance",
    params(
        ("list" = String, Path, description = "The list"),
        ("number" = String, Path, description = "The number, E.164"),
    ),
    responses(
        (status = 200, description = "Taken off (`changed`), or it was not on the list", body = EntryView),
        (status = 400, description = "Bad list name or number", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 503, description = "The list cannot be written durably", body = ErrorBody),
    ),
)]
pub(crate) async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<EntryView>, ApiError> {
    caller.require_admin()?;
    let Path((list, text)) = path.map_err(|r| ApiError::bad_request(format!("bad path: {}", r.body_text())))?;
    list_name(&list)?;
    let number = number_of(&text, None)?;
    let removed = app.campaigns.suppressions().remove(&list, number).await?;
    Ok(Json(view(&app, &list, number, removed).await?))
}

/// Adds the numbers of a CSV upload (a header row naming a phone column, or a bare column
/// of numbers) to a list, in one durable transaction.
#[utoipa::path(
    post, path = "/v1/dnc/{list}", operation_id = "import_dnc", tag = "compliance",
    params(
        ("list" = String, Path, description = "The list"),
        ("row_offset" = Option<u64>, Query, description = "Added to row numbers (for uploads in chunks)"),
        ("country" = Option<String>, Query, description = "Region for numbers without a country code (`US`)"),
        ("source" = Option<String>, Query, description = "Recorded with each entry (default `import`; at most 200 bytes)"),
    ),
    request_body(description = "The numbers (up to 32 MiB)", content((String = "text/csv"))),
    responses(
        (status = 200, description = "Added, duplicates and refused rows", body = DncImportReport),
        (status = 400, description = "Unreadable upload, bad list name or parameter", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The list cannot be written durably", body = ErrorBody),
    ),
)]
pub(crate) async fn import(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(list): PathParam,
    QueryMap(q): QueryMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<DncImportReport>, ApiError> {
    caller.require_admin()?;
    list_name(&list)?;
    only(&q, &["row_offset", "country", "source"])?;
    let row_offset = match q.get("row_offset") {
        Some(v) => v.parse().map_err(|_| ApiError::bad_request("row_offset must be a whole number"))?,
        None => 0,
    };
    let country = q.get("country").cloned();
    let source = q.get("source").cloned().unwrap_or_else(|| "import".into());
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorKind::PayloadTooLarge, "body_too_large", "the request body is larger than allowed")
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        }
    })?;
    // A million rows take a while to validate: off the async workers.
    let parsed = tokio::task::spawn_blocking(move || {
        callgate_dialer::import::parse_numbers_csv(&body, country.as_deref(), row_offset)
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))?
    .map_err(ApiError::bad_request)?;
    let total = parsed.numbers.len() as u64;
    let added = app.campaigns.opt_out_many(&list, parsed.numbers, &source).await? as u64;
    let numbers = app.campaigns.suppressions().summary().into_iter().find(|(n, _, _)| *n == list).map_or(0, |l| l.1);
    let rejected = parsed.rejected.len() as u64;
    let mut rejected_rows = parsed.rejected;
    rejected_rows.truncate(LIST_MAX);
    Ok(Json(DncImportReport { added, duplicates: total - added, rejected, rejected_rows, numbers: numbers as u64 }))
}
