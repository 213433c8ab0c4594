//! `GET /v1/forecast`: what `callgate forecast --json` prints, from the server's call
//! history: arrivals, their prediction interval, handling time and lines per 15-minute
//! interval, for a flow or the whole account.

use super::body::QueryMap;
use super::{App, Caller};
use crate::edges::error::{ApiError, ErrorBody, ErrorKind};
use axum::extract::State;
use axum::Json;
use callgate_forecast::capacity::ServiceTarget;
use callgate_forecast::report::{rfc3339, Query, Row};
use callgate_forecast::{DAY, MAX_DAYS};
use serde::Serialize;
use std::sync::Arc;

const PARAMS: [&str; 7] = ["flow", "days", "weeks", "level", "service_level", "within_s", "patience_s"];

/// A forecast.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ForecastAnswer {
    /// The flow forecast, or null for every call of the account.
    flow: Option<String>,
    /// The first interval's start, RFC 3339 UTC.
    from: String,
    /// The first interval's start, Unix ms.
    from_ms: u64,
    /// Days of history it learnt from.
    history_days: f64,
    /// The prediction interval's level.
    level: f64,
    /// One row per 15-minute interval.
    intervals: Vec<Row>,
}

/// `GET /v1/forecast[?flow=F&days=N&weeks=W&level=L&service_level=S&within_s=T&patience_s=P]`.
#[utoipa::path(
    get, path = "/v1/forecast", operation_id = "get_forecast", tag = "operations",
    params(
        ("flow" = Option<String>, Query, description = "The flow (default: every call of the account)"),
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
    let patience = number("patience_s", 60.0)?;
    let query = Query {
        flow: flow.clone(),
        days: whole("days", 7, MAX_DAYS)?,
        weeks: whole("weeks", 8, callgate_forecast::series::MAX_WEEKS)?,
        level: number("level", callgate_forecast::model::DEFAULT_LEVEL)?,
        target: ServiceTarget {
            service_level: number("service_level", 0.8)?,
            within_s: number("within_s", 20.0)?,
            patience_s: (patience > 0.0).then_some(patience),
        },
        now_ms: app.governor.now_ms(),
    };
    query.check().map_err(|e| ApiError::bad_request(e.message))?;
    let _turn = app.forecasts.turn().await;
    let forecasts = app.forecasts.clone();
    let level = query.level;
    let answer = tokio::task::spawn_blocking(move || forecasts.report(&query, &[query.flow.as_deref()]))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))?;
    let (series, report) = answer.map_err(|e| match e.kind {
        callgate_forecast::ErrorKind::Input => ApiError::bad_request(e.message),
        callgate_forecast::ErrorKind::NotEnoughHistory => {
            ApiError::new(ErrorKind::Conflict, "not_enough_history", e.message)
        }
        _ => ApiError::new(ErrorKind::Internal, "forecast_failed", e.message),
    })?;
    let from_ms = series.start_of(series.len());
    Ok(Json(ForecastAnswer {
        flow,
        from: rfc3339(from_ms),
        from_ms,
        history_days: (series.len() as f64 / DAY as f64 * 10.0).round() / 10.0,
        level,
        intervals: report.intervals,
    }))
}
