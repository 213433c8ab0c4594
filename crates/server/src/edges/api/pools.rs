//! `/v1/pools`: read, and change a limit at runtime (admin).

use super::body::{required, JsonBody, PathParam};
use super::{App, Caller};
use crate::error::ApiError;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) async fn list(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(app.governor.durable_view(|g| g.pools()).await?)))
}

pub(crate) async fn one(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(name): PathParam,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(app.governor.durable_view(|g| g.pool(&name)).await??)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitBody {
    limit: i64,
}

pub(crate) async fn set_limit(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(name): PathParam,
    body: JsonBody<LimitBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let limit = required(body)?.limit;
    let limit = u32::try_from(limit)
        .ok()
        .filter(|l| *l <= 1_000_000)
        .ok_or_else(|| ApiError::bad_request(format!("`limit` must be between 0 and 1000000, not {limit}")))?;
    Ok(Json(json!(app.governor.set_limit(&name, limit).await?)))
}
