//! The campaign API (v1): create, read, import leads, start, pause, resume, stop.
//!
//! - `POST /v1/campaigns` (admin): the fields of `[[campaigns]]` as JSON → `201` with the
//!   campaign (`200` when one with exactly these settings exists; `409 campaign_exists`
//!   when one with other settings does).
//! - `GET /v1/campaigns`, `GET /v1/campaigns/{name}`: progress.
//! - `POST /v1/campaigns/{name}/leads` (admin): `text/csv` with a header row, or JSON
//!   `{ "leads": [...] }`; query `row_offset` (added to row numbers), `suppressed`
//!   (`skip` or `include` leads on a suppression list) and `country` (for
//!   numbers without a country code). Answers added, skipped and rejected, with rows.
//! - `POST /v1/campaigns/{name}/start|pause|resume|stop` (admin).
//! - `GET /v1/campaigns/{name}/audit` (operator): the audit trail of its dials, as CSV.

use crate::api::{App, Caller};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use callgate_runtime::campaign::{Action, CampaignBrief, CampaignView, ImportOptions, ImportReport};
use std::collections::HashMap;
use std::sync::Arc;

/// The largest lead upload accepted in one request. 64 MiB holds about a million CSV rows;
/// the CLI sends large files in chunks far below it.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The campaign routes, to merge into the API router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/campaigns", post(create).get(list))
        .route("/v1/campaigns/{name}", get(one))
        .route("/v1/campaigns/{name}/leads", post(leads).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/v1/campaigns/{name}/audit", get(audit))
        .route("/v1/campaigns/{name}/{action}", post(act))
        .with_state(app)
}

fn path_error(r: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", r.body_text()))
}

fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorKind::PayloadTooLarge, "body_too_large", "the request body is larger than allowed")
    } else {
        ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
    }
}

/// Creates a campaign (admin): the fields of `[[campaigns]]` as JSON, durations as strings
/// (`"10m"`) or `<name>_ms` integers.
#[utoipa::path(
    post, path = "/v1/campaigns", operation_id = "create_campaign", tag = "campaigns",
    request_body(content = Object, description = "The fields of `[[campaigns]]` (docs/api.md)"),
    responses(
        (status = 201, description = "Created", body = CampaignView),
        (status = 200, description = "One with exactly these settings exists", body = CampaignView),
        (status = 400, description = "Malformed or invalid campaign", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 409, description = "One with other settings exists (`campaign_exists`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The store cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let body = body.map_err(body_error)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, "invalid_json", format!("invalid JSON body: {e}")))?;
    let cfg = callgate_runtime::campaign::config_from_json(value)
        .map_err(|m| ApiError::new(ErrorKind::BadRequest, "invalid_json", m))?;
    let (created, v): (bool, CampaignView) = app.campaigns.create(cfg).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(v)).into_response())
}

/// Every campaign, briefly.
#[utoipa::path(
    get, path = "/v1/campaigns", operation_id = "list_campaigns", tag = "campaigns",
    responses(
        (status = 200, description = "Every campaign", body = Vec<CampaignBrief>),
        (status = 401, description = "No valid key", body = ErrorBody),
    ),
)]
pub(crate) async fn list(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Vec<CampaignBrief>>, ApiError> {
    Ok(Json(app.campaigns.list()))
}

/// A campaign's settings and progress.
#[utoipa::path(
    get, path = "/v1/campaigns/{name}", operation_id = "get_campaign", tag = "campaigns",
    params(("name" = String, Path, description = "The campaign's name")),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 400, description = "Unreadable path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 404, description = "No such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    ),
)]
pub(crate) async fn one(
    State(app): State<Arc<App>>,
    _caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    Ok(Json(app.campaigns.view(&name)?))
}

/// Adds leads (admin): CSV with a header row, or JSON `{ "leads": [...] }`.
#[utoipa::path(
    post, path = "/v1/campaigns/{name}/leads", operation_id = "import_leads", tag = "campaigns",
    params(
        ("name" = String, Path, description = "The campaign's name"),
        ("row_offset" = Option<u64>, Query, description = "Added to row numbers (for uploads in chunks)"),
        ("country" = Option<String>, Query, description = "Region for numbers without a country code (`US`)"),
        ("suppressed" = Option<String>, Query, description = "`skip` (default): leads on a suppression list are reported and left out; `include`: imported, to end `suppressed`"),
    ),
    request_body(description = "The leads (up to 64 MiB)", content(
        (String = "text/csv"),
        (Object = "application/json"),
    )),
    responses(
        (status = 200, description = "Added, skipped and rejected, with rows", body = ImportReport),
        (status = 400, description = "Unreadable upload, bad parameter or media type", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 413, description = "Upload too large", body = ErrorBody),
        (status = 503, description = "The store cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn leads(
    State(app): State<Arc<App>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    caller.require_admin()?;
    let Path(name) = name.map_err(path_error)?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(format!("bad query string: {}", r.body_text())))?;
    let mut opts = ImportOptions::default();
    for (k, v) in &query {
        match k.as_str() {
            "row_offset" => {
                opts.row_offset = v.parse().map_err(|_| ApiError::bad_request("row_offset must be a whole number"))?
            }
            "country" => opts.country = Some(v.clone()),
            "suppressed" => {
                opts.include_suppressed = match v.as_str() {
                    "include" => true,
                    "skip" => false,
                    _ => return Err(ApiError::bad_request("suppressed must be `skip` (the default) or `include`")),
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{k}` (row_offset, country, suppressed)"
                )))
            }
        }
    }
    let body = body.map_err(body_error)?;
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    opts.csv = if kind.starts_with("text/csv") || kind.starts_with("application/csv") {
        true
    } else if kind.starts_with("application/json") {
        false
    } else if kind.is_empty() || kind.starts_with("text/plain") {
        // No type said: JSON if it looks like JSON.
        body.iter().find(|b| !b.is_ascii_whitespace()).is_none_or(|&b| b != b'{')
    } else {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "unsupported_media_type",
            format!("send text/csv or application/json, not `{kind}`"),
        ));
    };
    Ok(Json(app.campaigns.import(&name, body, opts).await?))
}

/// Starts, pauses, resumes or stops a campaign (pause and resume: operator; start and
/// stop: admin). `stop` is final.
#[utoipa::path(
    post, path = "/v1/campaigns/{name}/{action}", operation_id = "campaign_action", tag = "campaigns",
    params(
        ("name" = String, Path, description = "The campaign's name"),
        ("action" = String, Path, description = "`start`, `pause`, `resume` or `stop`"),
    ),
    responses(
        (status = 200, description = "The campaign in its new state", body = CampaignView),
        (status = 400, description = "Unreadable path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "The key's role is too low for this action", body = ErrorBody),
        (status = 404, description = "No such campaign or action", body = ErrorBody),
        (status = 409, description = "Stopped for good (`campaign_stopped`)", body = ErrorBody),
        (status = 503, description = "The store cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn act(
    State(app): State<Arc<App>>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let Path((name, action)) = path.map_err(path_error)?;
    let action = match action.as_str() {
        "start" => Action::Start,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "stop" => Action::Stop,
        _ => return Err(ApiError::not_found("not_found", "no such endpoint (start, pause, resume, stop)")),
    };
    // Pausing and resuming is an operator's everyday lever; starting and stopping (which
    // ends a campaign for good) stays with admins.
    match action {
        Action::Pause | Action::Resume => caller.require(callgate_config::Role::Operator)?,
        _ => caller.require_admin()?,
    }
    Ok(Json(app.campaigns.act(&name, action).await?))
}

/// The most audit rows one request answers.
const MAX_AUDIT_ROWS: usize = 100_000;

/// The audit trail of a campaign's dials, as CSV (a header row, then one row per decision,
/// oldest first): when, the attempt and lead, the number, its region and the callee's
/// local time, the rules and lists (with their versions) checked, and what was decided
/// (`dialed`, `suppressed by LIST`, `rescheduled to MS`).
#[utoipa::path(
    get, path = "/v1/campaigns/{name}/audit", operation_id = "campaign_audit", tag = "compliance",
    params(
        ("name" = String, Path, description = "The campaign's name"),
        ("since" = Option<u64>, Query, description = "Only decisions at or after this instant (Unix ms)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100000, description = "Rows (default 10000)"),
    ),
    responses(
        (status = 200, description = "The audit trail", content_type = "text/csv", body = String),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an operator or admin key", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 503, description = "The trail cannot be read", body = ErrorBody),
    ),
)]
pub(crate) async fn audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    // It lists the numbers called: for operators and admins, as leads are for admins.
    caller.require(callgate_config::Role::Operator)?;
    let Path(name) = name.map_err(path_error)?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(format!("bad query string: {}", r.body_text())))?;
    let (mut since, mut limit) = (0u64, 10_000usize);
    for (k, v) in &query {
        match k.as_str() {
            "since" => {
                since = v.parse().map_err(|_| ApiError::bad_request("since must be a whole number (Unix ms)"))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_AUDIT_ROWS).contains(l))
                    .ok_or_else(|| ApiError::bad_request(format!("limit must be between 1 and {MAX_AUDIT_ROWS}")))?
            }
            _ => return Err(ApiError::bad_request(format!("unknown query parameter `{k}` (since, limit)"))),
        }
    }
    if !app.campaigns.names().contains(&name) {
        return Err(ApiError::not_found("unknown_campaign", format!("no campaign named `{name}`")));
    }
    let rows = app.campaigns.suppressions().audit_rows(&name, since, limit).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let columns =
        ["at_ms", "attempt", "lead", "number", "region", "timezone", "local_time", "rules", "lists", "decision"];
    let write = |out: &mut csv::Writer<Vec<u8>>, rec: &[String]| {
        out.write_record(rec).map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))
    };
    write(&mut out, &columns.map(str::to_string))?;
    for r in rows {
        let rec = [
            r.at.to_string(),
            r.attempt.to_string(),
            r.lead_id.to_string(),
            r.number,
            r.region,
            r.timezone,
            r.local_time,
            r.rules,
            r.lists,
            r.decision,
        ];
        write(&mut out, &rec)?;
    }
    let body = out.into_inner().map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}
