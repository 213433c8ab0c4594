//! The operating endpoints: `POST /v1/samples`, `GET /v1/breakers`, `GET /v1/alerts`,
//! `GET /v1/stats`, `GET /v1/tickets` (the waiting line), and the optional body of a
//! lease release.

use super::body::{required, JsonBody};
use super::{App, Caller, Limits};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use axum::extract::State;
use axum::Json;
use callgate_config::Role;
use callgate_governor::{Report, WaitingView};
use callgate_ops::alerts::AlertView;
use callgate_ops::{BreakerView, StatsView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A latency above a day is a unit mistake (seconds for ms, microseconds for ms).
const MAX_LATENCY_MS: f64 = 86_400_000.0;
/// Samples in one `POST /v1/samples` (an array): enough to flush a client's buffer, few
/// enough to keep one request short.
const MAX_BATCH: usize = 1_000;

/// One sample: what a call through a pool, flow and/or dependency saw.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SampleBody {
    /// The pool (moves its adaptive cap).
    pool: Option<String>,
    /// The flow (its pools' adaptive caps and its figures).
    flow: Option<String>,
    /// The dependency (moves its breaker).
    dependency: Option<String>,
    /// The call's latency, ms (0 to 86400000).
    #[schema(minimum = 0, maximum = 86_400_000)]
    latency_ms: Option<f64>,
    /// Whether it succeeded.
    ok: Option<bool>,
    /// Whether the call was dropped.
    dropped: Option<bool>,
}

/// The body of `POST /v1/samples`: one sample or an array of up to 1000. Only the
/// document reads this type: the handler reads the items one by one, so that an error
/// names the sample it is about.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum SamplesBody {
    /// One sample.
    One(SampleBody),
    /// Several.
    Many(Vec<SampleBody>),
}

/// What `POST /v1/samples` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SamplesAnswer {
    /// Samples taken.
    accepted: usize,
    /// The adaptive caps the samples changed, by pool.
    caps: BTreeMap<String, u32>,
}

/// What `GET /v1/stats` answers: the figures, and the live leases and waiting tickets of
/// all pools.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatsAnswer {
    #[serde(flatten)]
    stats: StatsView,
    /// Live leases.
    leases: usize,
    /// Waiting tickets.
    waiting: usize,
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
            ..Report::default()
        })
    }
}

/// What `DELETE /v1/leases/{id}` (and `?key=`) may carry: the call's latency and outcome.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    /// The call's latency, ms (0 to 86400000).
    #[schema(minimum = 0, maximum = 86_400_000)]
    latency_ms: Option<f64>,
    /// The dependency the call used (moves its breaker).
    dependency: Option<String>,
    /// Whether it succeeded.
    ok: Option<bool>,
    /// Whether the call was dropped.
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
            ..Report::default()
        })
    }
}

/// `POST /v1/samples`: one sample object or an array of them. Samples move adaptive caps
/// and breakers, so they need an operator (or admin) key.
#[utoipa::path(
    post, path = "/v1/samples", operation_id = "post_samples", tag = "operations",
    request_body = SamplesBody,
    responses(
        (status = 200, description = "Taken", body = SamplesAnswer),
        (status = 400, description = "Malformed sample, or more than 1000", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "The key's role is below `operator`", body = ErrorBody),
        (status = 404, description = "Unknown pool, flow or dependency", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn samples(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: JsonBody<Value>,
) -> Result<Json<SamplesAnswer>, ApiError> {
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
    let mut caps = BTreeMap::new();
    let accepted = reports.len();
    for r in reports {
        for (pool, cap) in app.governor.report(r).await? {
            caps.insert(pool.to_string(), cap);
        }
    }
    Ok(Json(SamplesAnswer { accepted, caps }))
}

/// `GET /v1/schedules`: every `[[schedules]]` entry, and which are in force.
#[utoipa::path(
    get, path = "/v1/schedules", operation_id = "list_schedules", tag = "operations",
    responses(
        (status = 200, description = "Every schedule of the configuration, in file order", body = Vec<callgate_runtime::schedule::ScheduleView>),
        (status = 401, description = "No valid key", body = ErrorBody),
    ),
)]
pub(crate) async fn schedules(
    State(app): State<Arc<App>>,
    _caller: Caller,
) -> Json<Vec<callgate_runtime::schedule::ScheduleView>> {
    Json(app.schedules.views(&app.reload.current()))
}

/// `GET /v1/breakers`.
#[utoipa::path(
    get, path = "/v1/breakers", operation_id = "list_breakers", tag = "operations",
    responses(
        (status = 200, description = "Every breaker", body = Vec<BreakerView>),
        (status = 401, description = "No valid key", body = ErrorBody),
    ),
)]
pub(crate) async fn breakers(State(app): State<Arc<App>>, _caller: Caller) -> Json<Vec<BreakerView>> {
    Json(app.governor.ops().breakers(app.governor.now_ms()))
}

/// `GET /v1/alerts`.
#[utoipa::path(
    get, path = "/v1/alerts", operation_id = "list_alerts", tag = "operations",
    responses(
        (status = 200, description = "Every alert", body = Vec<AlertView>),
        (status = 401, description = "No valid key", body = ErrorBody),
    ),
)]
pub(crate) async fn alerts(State(app): State<Arc<App>>, _caller: Caller) -> Json<Vec<AlertView>> {
    Json(app.governor.ops().alerts())
}

/// `GET /v1/stats`, with the live leases and waiting tickets of all pools.
#[utoipa::path(
    get, path = "/v1/stats", operation_id = "stats", tag = "operations",
    responses(
        (status = 200, description = "The figures", body = StatsAnswer),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The journal failed while this was read", body = ErrorBody),
    ),
)]
pub(crate) async fn stats(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<StatsAnswer>, ApiError> {
    let stats = app.governor.ops().stats(app.governor.now_ms());
    let (leases, waiting) = app.governor.durable_view(|g| g.counts()).await?;
    Ok(Json(StatsAnswer { stats, leases, waiting }))
}

/// `GET /v1/tickets`: the waiting callers, first in line first.
#[utoipa::path(
    get, path = "/v1/tickets", operation_id = "list_waiting", tag = "tickets",
    responses(
        (status = 200, description = "The waiting callers (at most 500), first in line first", body = Vec<WaitingView>),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The journal failed while this was read", body = ErrorBody),
    ),
)]
pub(crate) async fn waiting(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Vec<WaitingView>>, ApiError> {
    Ok(Json(app.governor.durable_view(|g| g.waiting()).await?))
}
