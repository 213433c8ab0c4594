//! `GET /v1/forecast`: what `callgate forecast --json` prints, from the server's call
//! history: arrivals, their prediction interval, handling time and lines per 15-minute
//! interval, for a flow, a pool's inbound flows or the whole account; with `pool`, the
//! shortfall against the pool's lines and its priced ways out.

use super::body::QueryMap;
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use axum::extract::State;
use axum::Json;
use callgate_forecast::capacity::ServiceTarget;
use callgate_forecast::report::{ForecastAnswer, Query};
use callgate_forecast::MAX_DAYS;
use std::sync::Arc;

const PARAMS: [&str; 8] = ["flow", "pool", "days", "weeks", "level", "service_level", "within_s", "patience_s"];

/// `GET /v1/forecast[?flow=F&pool=P&days=N&weeks=W&level=L&service_level=S&within_s=T&patience_s=P]`.
#[utoipa::path(
    get, path = "/v1/forecast", operation_id = "get_forecast", tag = "operations",
    params(
        ("flow" = Option<String>, Query, description = "The flow (default: every call of the account, or with `pool` the pool's inbound flows)"),
        ("pool" = Option<String>, Query, description = "Set the forecast against this pool: its limit, the campaigns dialing through it and the `[pricing]` of the configuration (`shortfall`); its forecast reserve's target is the default target"),
        ("days" = Option<u32>, Query, minimum = 1, maximum = 14, description = "Days ahead (default 7)"),
        ("weeks" = Option<u32>, Query, minimum = 1, maximum = 26, description = "Weeks of history to learn from (default 8)"),
        ("level" = Option<f64>, Query, description = "Prediction interval level, in (0, 1) (default 0.8)"),
        ("service_level" = Option<f64>, Query, description = "Share answered within `within_s`, for `lines` (default 0.8)"),
        ("within_s" = Option<f64>, Query, description = "Answer time in seconds (default 20)"),
        ("patience_s" = Option<f64>, Query, description = "Callers' mean patience in seconds, 0 for none (default 60)"),
    ),
    responses(
        (status = 200, description = "The forecast, one row per interval", body = ForecastAnswer),
        (status = 400, description = "Unknown parameter or a value out of range", body = ErrorBody),
        (status = 404, description = "No such pool (`unknown_pool`)", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 409, description = "Too little history to forecast from (`not_enough_history`)", body = ErrorBody),
        (status = 500, description = "The model or the history database failed", body = ErrorBody),
    ),
)]
pub(crate) async fn forecast(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<ForecastAnswer>, ApiError> {
    if let Some(other) = q.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{other}` (parameters: {})",
            PARAMS.join(", ")
        )));
    }
    let number = |name: &str, default: f64| -> Result<f64, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| ApiError::bad_request(format!("`{name}` must be a number, not {v:?}"))),
        }
    };
    let whole = |name: &str, default: u32, max: u32| -> Result<u32, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ApiError::bad_request(format!("`{name}` must be 1 to {max}, not {v:?}"))),
        }
    };
    let flow = q.get("flow").cloned();
    if flow.as_ref().is_some_and(|f| f.is_empty() || f.len() > callgate_forecast::history::MAX_FIELD) {
        return Err(ApiError::bad_request("`flow` must be 1 to 200 bytes"));
    }
    let config = app.reload.current();
    let pool =
        match q.get("pool") {
            None => None,
            Some(name) => Some(config.pool(name).cloned().ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, "unknown_pool", format!("no pool is named {name:?}"))
            })?),
        };
    // A pool's forecast reserve sets the default target.
    let own = pool.as_ref().and_then(|p| p.forecast.as_ref());
    let patience = number("patience_s", own.map_or(60.0, |f| f.patience.as_secs_f64()))?;
    let query = Query {
        flow: flow.clone(),
        days: whole("days", 7, MAX_DAYS)?,
        weeks: whole("weeks", own.map_or(8, |f| f.weeks), callgate_forecast::series::MAX_WEEKS)?,
        level: number("level", callgate_forecast::model::DEFAULT_LEVEL)?,
        target: ServiceTarget {
            service_level: number("service_level", own.map_or(0.8, |f| f.service_level.0))?,
            within_s: number("within_s", own.map_or(20.0, |f| f.within.as_secs_f64()))?,
            patience_s: (patience > 0.0).then_some(patience),
        },
        now_ms: app.governor.now_ms(),
    };
    query.check().map_err(|e| ApiError::bad_request(e.message))?;
    let flows: Vec<String> = match (&flow, &pool) {
        (Some(f), _) => vec![f.clone()],
        (None, Some(p)) => callgate_runtime::forecast::inbound_flows(&config, p),
        (None, None) => Vec::new(),
    };
    if pool.is_some() && flows.is_empty() {
        return Err(ApiError::bad_request("no inbound flow uses this pool: name one with `flow`"));
    }
    let _turn = app.forecasts.turn().await;
    let forecasts = app.forecasts.clone();
    let pool_name = pool.as_ref().map(|p| p.name.clone());
    let answer = tokio::task::spawn_blocking(move || {
        let flows: Vec<Option<&str>> =
            if flows.is_empty() { vec![None] } else { flows.iter().map(|f| Some(f.as_str())).collect() };
        let (series, report) = forecasts.report(&query, &flows)?;
        let shortfall = match &pool {
            Some(p) => {
                let setting = forecasts.setting(&config, p, &query, &report)?;
                Some(report.shortfall(&query, &setting)?)
            }
            None => None,
        };
        Ok::<_, callgate_forecast::ForecastError>(ForecastAnswer {
            shortfall,
            ..ForecastAnswer::new(&query, &series, report)
        })
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))?;
    let answer = answer.map_err(|e| match e.kind {
        callgate_forecast::ErrorKind::Input => ApiError::bad_request(e.message),
        callgate_forecast::ErrorKind::NotEnoughHistory => {
            ApiError::new(ErrorKind::Conflict, "not_enough_history", e.message)
        }
        _ => ApiError::new(ErrorKind::Internal, "forecast_failed", e.message),
    })?;
    Ok(Json(ForecastAnswer { pool: pool_name, ..answer }))
}

/// `GET /v1/forecast/today?pool=P`.
#[utoipa::path(
    get, path = "/v1/forecast/today", operation_id = "get_forecast_today", tag = "operations",
    params(
        ("pool" = String, Query, description = "A pool whose reserve follows the forecast"),
    ),
    responses(
        (status = 200, description = "Today's forecast (made at the start of the day, UTC) against the arrivals so far, and the reserve of the intervals ahead", body = callgate_runtime::forecast::TodayView),
        (status = 400, description = "No or an unknown parameter, or a pool whose reserve does not follow the forecast", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 404, description = "No such pool (`unknown_pool`)", body = ErrorBody),
        (status = 500, description = "The history database failed", body = ErrorBody),
    ),
)]
pub(crate) async fn today(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<callgate_runtime::forecast::TodayView>, ApiError> {
    if let Some(other) = q.keys().find(|k| k.as_str() != "pool") {
        return Err(ApiError::bad_request(format!("unknown query parameter `{other}` (parameters: pool)")));
    }
    let name = q.get("pool").cloned().ok_or_else(|| ApiError::bad_request("`pool` is required"))?;
    let config = app.reload.current();
    let pool = config
        .pool(&name)
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "unknown_pool", format!("no pool is named {name:?}")))?;
    if pool.forecast_class().is_none() {
        return Err(ApiError::bad_request(format!(
            "pool {name:?} has no reserve that follows the forecast (reserve = {{ inbound = \"forecast\" }})"
        )));
    }
    let forecasts = app.forecasts.clone();
    let now = app.governor.now_ms();
    let view = tokio::task::spawn_blocking(move || forecasts.today(&config, &name, now))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(ErrorKind::Internal, "forecast_failed", e.message))?;
    view.map(Json).ok_or_else(|| ApiError::bad_request("the pool's reserve does not follow the forecast"))
}
