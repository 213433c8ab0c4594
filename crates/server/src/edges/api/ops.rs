//! The operating endpoints: `POST /v1/samples`, `GET /v1/breakers`, `GET /v1/alerts`,
//! `GET /v1/stats`, `GET /v1/tickets` (the waiting line), and the optional body of a
//! lease release.

use super::body::{required, JsonBody};
use super::{App, Caller, Limits};
use crate::error::{ApiError, ErrorKind};
use crate::governor::Report;
use axum::extract::State;
use axum::Json;
use callgate_config::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A latency above a day is a unit mistake (seconds for ms, microseconds for ms).
const MAX_LATENCY_MS: f64 = 86_400_000.0;
/// Samples in one `POST /v1/samples` (an array): enough to flush a client's buffer, few
/// enough to keep one request short.
const MAX_BATCH: usize = 1_000;

/// One sample.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SampleBody {
    pool: Option<String>,
    flow: Option<String>,
    dependency: Option<String>,
    latency_ms: Option<f64>,
    ok: Option<bool>,
    dropped: Option<bool>,
}

fn latency(l: Option<f64>) -> Result<Option<f64>, ApiError> {
    match l {
        Some(ms) if !(ms.is_finite() && (0.0..=MAX_LATENCY_MS).contains(&ms)) => {
            Err(ApiError::bad_request(format!("`latency_ms` must be between 0 and {MAX_LATENCY_MS}, not {ms}")))
        }
        l => Ok(l),
    }
}

impl SampleBody {
    fn into_report(self, limits: &Limits) -> Result<Report, ApiError> {
        limits.opt_name("pool", self.pool.as_deref())?;
        limits.opt_name("flow", self.flow.as_deref())?;
        limits.opt_name("dependency", self.dependency.as_deref())?;
        if self.pool.is_none() && self.flow.is_none() && self.dependency.is_none() {
            return Err(ApiError::bad_request("a sample names a `pool`, a `flow` and/or a `dependency`"));
        }
        Ok(Report {
            pool: self.pool,
            flow: self.flow,
            dependency: self.dependency,
            latency_ms: latency(self.latency_ms)?,
            ok: self.ok,
            dropped: self.dropped.unwrap_or(false),
        })
    }
}

/// What `DELETE /v1/leases/{id}` (and `?key=`) may carry: the call's latency and outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    latency_ms: Option<f64>,
    dependency: Option<String>,
    ok: Option<bool>,
    dropped: Option<bool>,
}

impl ReleaseBody {
    pub(crate) fn into_report(self, limits: &Limits) -> Result<Report, ApiError> {
        limits.opt_name("dependency", self.dependency.as_deref())?;
        Ok(Report {
            pool: None,
            flow: None,
            dependency: self.dependency,
            latency_ms: latency(self.latency_ms)?,
            ok: self.ok,
            dropped: self.dropped.unwrap_or(false),
        })
    }
}

/// `POST /v1/samples`: one sample object or an array of them. Samples move adaptive caps
/// and breakers, so they need an operator (or admin) key.
pub(crate) async fn samples(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let body = required(body)?;
    let items = match body {
        Value::Array(items) if items.len() > MAX_BATCH => {
            return Err(ApiError::bad_request(format!("at most {MAX_BATCH} samples per request")))
        }
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut reports = Vec::with_capacity(items.len());
    for item in items {
        let sample: SampleBody = serde_json::from_value(item)
            .map_err(|e| ApiError::new(ErrorKind::BadRequest, "invalid_json", format!("invalid sample: {e}")))?;
        reports.push(sample.into_report(&app.limits)?);
    }
    let mut caps = serde_json::Map::new();
    let accepted = reports.len();
    for r in reports {
        for (pool, cap) in app.governor.report(r).await? {
            caps.insert(pool.to_string(), json!(cap));
        }
    }
    Ok(Json(json!({ "accepted": accepted, "caps": caps })))
}

/// `GET /v1/breakers`.
pub(crate) async fn breakers(State(app): State<Arc<App>>, _caller: Caller) -> Json<Value> {
    Json(json!(app.governor.ops().breakers(app.governor.now_ms())))
}

/// `GET /v1/alerts`.
pub(crate) async fn alerts(State(app): State<Arc<App>>, _caller: Caller) -> Json<Value> {
    Json(json!(app.governor.ops().alerts()))
}

/// `GET /v1/stats`, with the live leases and waiting tickets of all pools.
pub(crate) async fn stats(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut v = json!(app.governor.ops().stats(app.governor.now_ms()));
    let (leases, waiting) = app.governor.durable_view(|g| g.counts()).await?;
    v["leases"] = json!(leases);
    v["waiting"] = json!(waiting);
    Ok(Json(v))
}

/// `GET /v1/tickets`: the waiting callers, first in line first.
pub(crate) async fn waiting(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(app.governor.durable_view(|g| g.waiting()).await?)))
}
