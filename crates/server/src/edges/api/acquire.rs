//! `POST /v1/acquire`.

use super::body::{required, JsonBody};
use super::{App, Caller};
use crate::error::ApiError;
use crate::governor::{AcquireRequest, Answer, Target};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;

/// The longest a single HTTP request may block for a grant. Longer waits are fine, in
/// several requests: proxies and load balancers commonly cut idle requests at 60-120 s.
pub(crate) const MAX_WAIT_MS: u64 = 60_000;
/// Keys are provider call ids and the like; anything longer is a mistake.
const MAX_KEY_LEN: usize = 256;
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
    pub(crate) fn into_request(self) -> Result<AcquireRequest, ApiError> {
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
        if let Some(k) = &self.key {
            if k.is_empty() || k.len() > MAX_KEY_LEN {
                return Err(ApiError::bad_request(format!("`key` must be 1 to {MAX_KEY_LEN} bytes")));
            }
        }
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
        })
    }
}

pub(crate) async fn acquire(
    State(app): State<Arc<App>>,
    _caller: Caller,
    body: JsonBody<AcquireBody>,
) -> Result<Response, ApiError> {
    let req = required(body)?.into_request()?;
    let answer = app.governor.acquire(req).await?;
    Ok(answer_response(answer))
}

pub(crate) fn answer_response(answer: Answer) -> Response {
    match answer {
        Answer::Granted(lease) => {
            (StatusCode::OK, axum::Json(json!({ "decision": "granted", "lease": lease }))).into_response()
        }
        Answer::Queued(ticket) => {
            (StatusCode::ACCEPTED, axum::Json(json!({ "decision": "queued", "ticket": ticket }))).into_response()
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
