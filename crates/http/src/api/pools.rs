//! `/v1/pools`: read, and change a limit at runtime (admin).

use super::body::{required, JsonBody, PathParam};
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use callgate_events::views::PoolInfo;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A pool, and where its reserve follows the forecast, the value in force and its source.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PoolAnswer {
    #[serde(flatten)]
    pool: PoolInfo,
    /// With `reserve = { class = "forecast" }`: the units held back now, and whether the
    /// forecast or the floor decided them.
    #[serde(skip_serializing_if = "Option::is_none")]
    forecast_reserve: Option<callgate_runtime::forecast::ForecastReserveView>,
    /// Cluster mode with `on_redis_unavailable = "local_fallback"`: units of the pool the
    /// shared ledger holds back for nodes that stopped saying they reach Redis (each may
    /// admit on its own share meanwhile). Absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    held_for_silent: Option<u64>,
}

impl PoolAnswer {
    fn new(app: &App, pool: PoolInfo) -> PoolAnswer {
        let config = app.reload.current();
        let forecast_reserve = app.forecasts.view(&config, &pool.name, app.governor.now_ms());
        let held_for_silent = app.fallback().and_then(|f| f.held_of(&pool.name)).filter(|u| *u > 0);
        PoolAnswer { pool, forecast_reserve, held_for_silent }
    }
}

/// Every pool.
#[utoipa::path(
    get, path = "/v1/pools", operation_id = "list_pools", tag = "pools",
    responses(
        (status = 200, description = "Every pool, in configuration order", body = Vec<PoolAnswer>),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The journal failed while this was read", body = ErrorBody),
    ),
)]
pub(crate) async fn list(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Vec<PoolAnswer>>, ApiError> {
    let pools = app.governor.durable_view(|g| g.pools()).await?;
    Ok(Json(pools.into_iter().map(|p| PoolAnswer::new(&app, p)).collect()))
}

/// One pool.
#[utoipa::path(
    get, path = "/v1/pools/{name}", operation_id = "get_pool", tag = "pools",
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool", body = PoolAnswer),
        (status = 400, description = "Unreadable path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 404, description = "No such pool (`unknown_pool`)", body = ErrorBody),
        (status = 503, description = "The journal failed while this was read", body = ErrorBody),
    ),
)]
pub(crate) async fn one(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(name): PathParam,
) -> Result<Json<PoolAnswer>, ApiError> {
    let pool = app.governor.durable_view(|g| g.pool(&name)).await??;
    Ok(Json(PoolAnswer::new(&app, pool)))
}

/// A pool's new limit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitBody {
    /// Units, 0 to 1000000. Leases above a lowered limit run out; nobody new is let in.
    #[schema(minimum = 0, maximum = 1_000_000)]
    limit: i64,
}

/// Changes a pool's limit at runtime (admin), durably.
#[utoipa::path(
    put, path = "/v1/pools/{name}", operation_id = "set_pool_limit", tag = "pools",
    params(("name" = String, Path, description = "The pool's name")),
    request_body = LimitBody,
    responses(
        (status = 200, description = "The pool with its new limit", body = PoolInfo),
        (status = 400, description = "Malformed body or limit out of range", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such pool (`unknown_pool`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn set_limit(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(name): PathParam,
    body: JsonBody<LimitBody>,
) -> Result<Json<PoolInfo>, ApiError> {
    caller.require_admin()?;
    let limit = required(body)?.limit;
    let limit = u32::try_from(limit)
        .ok()
        .filter(|l| *l <= 1_000_000)
        .ok_or_else(|| ApiError::bad_request(format!("`limit` must be between 0 and 1000000, not {limit}")))?;
    Ok(Json(app.governor.set_limit(&name, limit).await?))
}
