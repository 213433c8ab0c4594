//! `POST /v1/acquire`.

use super::body::{required, JsonBody};
use super::bounds::Limits;
use super::{App, Caller};
use crate::error::ApiError;
use crate::governor::{AcquireRequest, Answer, Edge, Target};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use callgate_core::RejectReason;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;

/// The longest a single HTTP request may block for a grant. Longer waits are fine, in
/// several requests: proxies and load balancers commonly cut idle requests at 60-120 s.
pub(crate) const MAX_WAIT_MS: u64 = 60_000;
/// 30 days: longer TTLs are certainly a unit mistake (seconds for ms, say).
const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// A day in the waiting room is the most any flow could mean.
const MAX_QUEUE_WAIT_MS: u64 = 24 * 3600 * 1000;
/// No pool in a voice stack is a million units wide; this catches overflow games.
const MAX_UNITS: i64 = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireBody {
    flow: Option<String>,
    pools: Option<Vec<PoolEntry>>,
    class: Option<String>,
    key: Option<String>,
    ttl_ms: Option<u64>,
    max_wait_ms: Option<u64>,
    wait_ms: Option<u64>,
    meta: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolEntry {
    pool: String,
    units: Option<i64>,
}

impl AcquireBody {
    /// Checks every bound before anything else: nothing out of bounds reaches the
    /// governor, so nothing out of bounds is admitted, journaled or published.
    pub(crate) fn into_request(self, limits: &Limits) -> Result<AcquireRequest, ApiError> {
        limits.opt_name("flow", self.flow.as_deref())?;
        limits.opt_name("class", self.class.as_deref())?;
        if let Some(pools) = &self.pools {
            if pools.len() > limits.pools_per_request {
                return Err(ApiError::new(
                    crate::error::ErrorKind::BadRequest,
                    "too_many_pools",
                    format!("`pools` may name at most {} pools, not {}", limits.pools_per_request, pools.len()),
                ));
            }
            for p in pools {
                limits.name("pool", &p.pool)?;
            }
        }
        if let Some(k) = &self.key {
            limits.key(k)?;
        }
        if let Some(meta) = &self.meta {
            limits.meta(meta.get())?;
        }
        let target = match (self.flow, self.pools, self.class) {
            (Some(flow), None, None) => Target::Flow(flow),
            (Some(_), _, _) => {
                return Err(ApiError::bad_request(
                    "give either `flow`, or `pools` with `class`: a flow brings its own pools and class",
                ))
            }
            (None, Some(pools), Some(class)) => {
                if pools.is_empty() {
                    return Err(ApiError::bad_request("`pools` must name at least one pool"));
                }
                let mut out = Vec::with_capacity(pools.len());
                for p in pools {
                    let units = p.units.unwrap_or(1);
                    if !(1..=MAX_UNITS).contains(&units) {
                        return Err(ApiError::bad_request(format!(
                            "`units` for pool `{}` must be between 1 and {MAX_UNITS}, not {units}",
                            p.pool
                        )));
                    }
                    if out.iter().any(|(n, _)| *n == p.pool) {
                        return Err(ApiError::bad_request(format!("pool `{}` is named twice", p.pool)));
                    }
                    out.push((p.pool, units as u32));
                }
                Target::Pools { pools: out, class }
            }
            (None, Some(_), None) => return Err(ApiError::bad_request("`pools` needs a `class`")),
            (None, None, _) => return Err(ApiError::bad_request("give either `flow`, or `pools` with `class`")),
        };
        if let Some(t) = self.ttl_ms {
            if t == 0 || t > MAX_TTL_MS {
                return Err(ApiError::bad_request(format!("`ttl_ms` must be between 1 and {MAX_TTL_MS}")));
            }
        }
        if self.max_wait_ms.is_some_and(|w| w > MAX_QUEUE_WAIT_MS) {
            return Err(ApiError::bad_request(format!("`max_wait_ms` must be at most {MAX_QUEUE_WAIT_MS}")));
        }
        let meta = match self.meta {
            None => None,
            Some(raw) if raw.get().trim_start().starts_with('{') => Some(raw.get().to_string()),
            Some(_) => return Err(ApiError::bad_request("`meta` must be a JSON object")),
        };
        Ok(AcquireRequest {
            target,
            key: self.key,
            ttl_ms: self.ttl_ms,
            max_wait_ms: self.max_wait_ms,
            wait_ms: self.wait_ms.unwrap_or(0).min(MAX_WAIT_MS),
            meta,
            edge: Edge::Api,
        })
    }
}

pub(crate) async fn acquire(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: JsonBody<AcquireBody>,
) -> Result<Response, ApiError> {
    caller.require(callgate_config::Role::Client)?;
    let req = required(body)?.into_request(&app.limits)?;
    let answer = app.governor.acquire_as(req, caller.name.clone()).await?;
    Ok(answer_response(answer))
}

#[derive(serde::Serialize)]
struct Granted {
    decision: &'static str,
    lease: crate::views::LeaseView,
}

#[derive(serde::Serialize)]
struct Queued {
    decision: &'static str,
    ticket: crate::views::TicketView,
}

pub(crate) fn answer_response(answer: Answer) -> Response {
    match answer {
        // Serialized straight to the body, never through a `Value`: the lease's `meta` is
        // raw JSON text, written out as it was received.
        Answer::Granted(lease) => (StatusCode::OK, axum::Json(Granted { decision: "granted", lease })).into_response(),
        Answer::Queued(ticket) => {
            (StatusCode::ACCEPTED, axum::Json(Queued { decision: "queued", ticket })).into_response()
        }
        Answer::Rejected { reason: RejectReason::NeverFits, overflow, .. } => {
            // Waiting or retrying cannot help: 409, and no Retry-After to invite a retry.
            let body = json!({ "decision": "rejected", "reason": "never_fits", "overflow": overflow });
            (StatusCode::CONFLICT, axum::Json(body)).into_response()
        }
        Answer::Rejected { reason, overflow, retry_after_ms, dependency } => {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            let mut body = json!({
                "decision": "rejected",
                "reason": reason.as_str(),
                "overflow": overflow,
                "retry_after_ms": retry_after_ms,
            });
            // A dependency's breaker is open: the same 429 shape, so a client that acts
            // on `overflow` gives the caller the flow's fallback without knowing why.
            if let Some(d) = dependency {
                body["reason"] = json!("dependency_down");
                body["dependency"] = json!(d);
            }
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], axum::Json(body)).into_response()
        }
    }
}
