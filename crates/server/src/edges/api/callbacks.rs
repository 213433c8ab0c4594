//! `GET /v1/callbacks` (callbacks booked by overflow steps) and `GET /v1/calls` (what the
//! provider edges recorded about each call).

use super::body::QueryMap;
use super::{App, Caller};
use crate::error::ApiError;
use axum::extract::State;
use axum::Json;
use callgate_store::{CallRecord, Callback, CallbackQuery};
use serde_json::{json, Value};
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

fn callback_json(c: Callback) -> Value {
    json!({
        "id": c.id,
        "provider": c.provider,
        "call_id": c.call_id,
        "number": c.number,
        "flow": c.flow,
        "booked_at_ms": c.booked_at,
        "due_at_ms": c.due_at,
        "state": c.state,
        "outcome": c.outcome,
        "updated_at_ms": c.updated_at,
    })
}

fn call_json(c: CallRecord) -> Value {
    json!({
        "provider": c.provider,
        "call_id": c.call_id,
        "flow": c.flow,
        "from": c.from_number,
        "to": c.to_number,
        "outcome": c.outcome,
        "started_at_ms": c.started_at,
        "ended_at_ms": c.ended_at,
        "duration_ms": c.duration_ms,
        "ended_reason": c.ended_reason,
        "cost_usd": c.cost,
        "recording_url": c.recording_url,
        "updated_at_ms": c.at,
    })
}

/// `GET /v1/callbacks[?state=booked][&flow=F][&limit=N]`: soonest due first.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    only(&q, &["state", "flow", "limit"])?;
    app.limits.opt_name("state", q.get("state").map(String::as_str))?;
    app.limits.opt_name("flow", q.get("flow").map(String::as_str))?;
    let query = CallbackQuery { state: q.get("state").cloned(), flow: q.get("flow").cloned(), limit: limit(&q)? };
    let rows = tokio::task::spawn_blocking(move || app.governor.callbacks(&query))
        .await
        .map_err(|e| ApiError::new(crate::error::ErrorKind::Internal, "internal", e.to_string()))??;
    Ok(Json(Value::Array(rows.into_iter().map(callback_json).collect())))
}

/// `GET /v1/calls[?limit=N]`: the most recently updated call records first.
pub(crate) async fn calls(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    only(&q, &["limit"])?;
    let limit = limit(&q)?;
    let rows = tokio::task::spawn_blocking(move || app.governor.calls(limit))
        .await
        .map_err(|e| ApiError::new(crate::error::ErrorKind::Internal, "internal", e.to_string()))??;
    Ok(Json(Value::Array(rows.into_iter().map(call_json).collect())))
}
