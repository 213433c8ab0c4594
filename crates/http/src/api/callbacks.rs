//! `GET /v1/callbacks` (callbacks booked by overflow steps) and `GET /v1/calls` (what the
//! provider edges recorded about each call).

use super::body::QueryMap;
use super::summary::TelemetryView;
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use callgate_store::{CallRecord, Callback, CallbackQuery};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows per answer unless `limit` says otherwise; at most [`MAX_LIMIT`].
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("`limit` must be between 1 and {MAX_LIMIT}"))),
    }
}

fn only(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(other) => Err(ApiError::bad_request(format!("unknown query parameter `{other}`"))),
        None => Ok(()),
    }
}

/// A callback an overflow step booked.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CallbackView {
    /// Row id, never reused.
    id: u64,
    /// The provider the call came through.
    provider: String,
    /// The provider's call id.
    call_id: String,
    /// The number to call back.
    number: String,
    /// The flow the caller called.
    flow: String,
    /// Unix ms.
    booked_at_ms: u64,
    /// Unix ms: due from then on.
    due_at_ms: u64,
    /// `booked`, `dialing` or `done`.
    state: String,
    /// Once `done`: the outcome of the last attempt.
    outcome: Option<String>,
    /// Unix ms of the last change of state (`null` while booked).
    updated_at_ms: Option<u64>,
}

impl From<Callback> for CallbackView {
    fn from(c: Callback) -> Self {
        CallbackView {
            id: c.id,
            provider: c.provider,
            call_id: c.call_id,
            number: c.number,
            flow: c.flow,
            booked_at_ms: c.booked_at,
            due_at_ms: c.due_at,
            state: c.state,
            outcome: c.outcome,
            updated_at_ms: c.updated_at,
        }
    }
}

/// What the provider edges recorded about a call.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CallView {
    /// The provider.
    provider: String,
    /// The provider's call id.
    call_id: String,
    /// The flow that served it.
    flow: Option<String>,
    /// The caller's number.
    from: Option<String>,
    /// The number called.
    to: Option<String>,
    /// What callgate decided: `granted`, `queued`, `overflow:<action>`, `adopted`,
    /// `spilled:<flow>` (admitted in another flow and transferred there), `granted:spill`
    /// (a transferred call answered under the line admitted for it).
    outcome: Option<String>,
    /// The lease the call holds when it is not keyed by its own id: a transferred call
    /// holds the spill's lease (`spill:<provider>:<original call id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_key: Option<String>,
    /// Unix ms.
    started_at_ms: Option<u64>,
    /// Unix ms.
    ended_at_ms: Option<u64>,
    /// Milliseconds.
    duration_ms: Option<u64>,
    /// The platform's reason, or `callgate-reconciled`.
    ended_reason: Option<String>,
    /// USD.
    cost_usd: Option<f64>,
    /// A voicemail recording.
    recording_url: Option<String>,
    /// The assistant that took it (Vapi's `call.assistantId`).
    assistant: Option<String>,
    /// What the platform measured (Vapi's end-of-call report), when it said.
    telemetry: Option<TelemetryView>,
    /// Unix ms of the last update.
    updated_at_ms: u64,
}

impl From<CallRecord> for CallView {
    fn from(c: CallRecord) -> Self {
        CallView {
            provider: c.provider,
            call_id: c.call_id,
            flow: c.flow,
            from: c.from_number,
            to: c.to_number,
            outcome: c.outcome,
            lease_key: c.lease_key,
            started_at_ms: c.started_at,
            ended_at_ms: c.ended_at,
            duration_ms: c.duration_ms,
            ended_reason: c.ended_reason,
            cost_usd: c.cost,
            recording_url: c.recording_url,
            assistant: c.assistant,
            telemetry: c.telemetry.map(|t| TelemetryView::from(*t)),
            updated_at_ms: c.at,
        }
    }
}

/// `GET /v1/callbacks[?state=booked][&flow=F][&limit=N]`: soonest due first.
#[utoipa::path(
    get, path = "/v1/callbacks", operation_id = "list_callbacks", tag = "calls",
    params(
        ("state" = Option<String>, Query, description = "Only callbacks in this state (`booked`, `dialing`, `done`)"),
        ("flow" = Option<String>, Query, description = "Only callbacks of this flow"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows (default 100)"),
    ),
    responses(
        (status = 200, description = "Callbacks, soonest due first", body = Vec<CallbackView>),
        (status = 400, description = "Unknown parameter or bad value", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<Vec<CallbackView>>, ApiError> {
    only(&q, &["state", "flow", "limit"])?;
    app.limits.opt_name("state", q.get("state").map(String::as_str))?;
    app.limits.opt_name("flow", q.get("flow").map(String::as_str))?;
    let query = CallbackQuery { state: q.get("state").cloned(), flow: q.get("flow").cloned(), limit: limit(&q)? };
    let rows = tokio::task::spawn_blocking(move || app.governor.callbacks(&query))
        .await
        .map_err(|e| ApiError::new(crate::error::ErrorKind::Internal, "internal", e.to_string()))??;
    Ok(Json(rows.into_iter().map(CallbackView::from).collect()))
}

/// `GET /v1/calls[?limit=N]`: the most recently updated call records first.
#[utoipa::path(
    get, path = "/v1/calls", operation_id = "list_calls", tag = "calls",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows (default 100)")),
    responses(
        (status = 200, description = "Calls, most recently updated first", body = Vec<CallView>),
        (status = 400, description = "Unknown parameter or bad limit", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    ),
)]
pub(crate) async fn calls(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<Vec<CallView>>, ApiError> {
    only(&q, &["limit"])?;
    let limit = limit(&q)?;
    let rows = tokio::task::spawn_blocking(move || app.governor.calls(limit))
        .await
        .map_err(|e| ApiError::new(crate::error::ErrorKind::Internal, "internal", e.to_string()))??;
    Ok(Json(rows.into_iter().map(CallView::from).collect()))
}
