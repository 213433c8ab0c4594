//! `POST /v1/acquire`.

use super::body::{required, Json, JsonBody};
use super::{App, Caller};
use crate::bounds::Limits;
use crate::error::ApiError;
use crate::error::ErrorBody;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use callgate_core::RejectReason;
use callgate_governor::{AcquireRequest, Answer, Edge, Target};
use serde::{Deserialize, Serialize};
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

/// What `POST /v1/acquire` takes: either `flow`, or `pools` with `class`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[doc(hidden)]
pub struct AcquireBody {
    /// A configured flow (it brings its pools and class).
    flow: Option<String>,
    /// The pools to hold, each with its units (without a flow; needs `class`).
    pools: Option<Vec<PoolEntry>>,
    /// The class of the caller (with `pools`).
    class: Option<String>,
    /// Idempotency key: an acquire with the key of a live lease or ticket answers that one.
    key: Option<String>,
    /// How long the lease lives unless renewed, ms (1 ms to 30 days; default: the flow's).
    #[schema(minimum = 1, maximum = 2_592_000_000_u64)]
    ttl_ms: Option<u64>,
    /// How long the ticket may wait in line, ms (at most a day; default: the flow's).
    #[schema(maximum = 86_400_000)]
    max_wait_ms: Option<u64>,
    /// How long this request may block for a grant before answering `queued`, ms (at
    /// most 60000; default 0).
    wait_ms: Option<u64>,
    /// A JSON object kept with the lease and shown with it.
    #[schema(value_type = Option<Object>)]
    meta: Option<Box<RawValue>>,
}

/// One pool of an acquire.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PoolEntry {
    /// The pool's name.
    pool: String,
    /// Units to hold (1 to 1000000; default 1).
    #[schema(minimum = 1, maximum = 1_000_000)]
    units: Option<i64>,
}

impl AcquireBody {
    /// Checks every bound before anything else: nothing out of bounds reaches the
    /// governor, so nothing out of bounds is admitted, journaled or published.
    #[doc(hidden)]
    pub fn into_request(self, limits: &Limits) -> Result<AcquireRequest, ApiError> {
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

/// Asks for a slot: granted now (200), queued with a ticket (202), or rejected (429 with
/// `Retry-After`; 409 when it can never fit).
#[utoipa::path(
    post, path = "/v1/acquire", operation_id = "acquire", tag = "leases",
    request_body = AcquireBody,
    responses(
        (status = 200, description = "Granted: the lease", body = Granted),
        (status = 202, description = "Queued: the ticket to follow (`GET /v1/tickets/{id}`)", body = Queued),
        (status = 400, description = "Malformed or out-of-bounds request", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "The key's role is below `client`", body = ErrorBody),
        (status = 404, description = "Unknown flow, class or pool", body = ErrorBody),
        (status = 409, description = "Rejected for good (`never_fits`): no retry can help", body = Rejected),
        (status = 413, description = "Body or `meta` too large", body = ErrorBody),
        (status = 429, description = "Rejected for now (`capacity`, `queue_full`, `dependency_down`)", body = Rejected,
            headers(("Retry-After" = u64, description = "Seconds until a retry may succeed"))),
        (status = 503, description = "The journal cannot commit: retry later", body = ErrorBody),
    ),
)]
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

/// What an acquire decided.
#[derive(Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decision {
    /// 200, written by `granted_response` without serde (a test keeps the two equal):
    /// the variant names it in the OpenAPI document.
    #[cfg_attr(not(test), allow(dead_code))]
    Granted,
    /// 202.
    Queued,
    /// 409 or 429.
    Rejected,
}

/// 200: the lease.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Granted {
    /// `granted`.
    decision: Decision,
    /// The lease.
    lease: callgate_events::views::LeaseView,
}

/// 202: the ticket.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Queued {
    /// `queued`.
    decision: Decision,
    /// The ticket.
    ticket: callgate_events::views::TicketView,
}

/// 409 or 429: why not, and what the flow says to do instead.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Rejected {
    /// `rejected`.
    decision: Decision,
    /// `capacity`, `queue_full`, `dependency_down` (429) or `never_fits` (409).
    reason: &'static str,
    /// The flow's first overflow action (its fallback when a dependency is down).
    #[schema(value_type = Option<Object>)]
    overflow: Option<callgate_config::Overflow>,
    /// When a retry may succeed, ms (429 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    /// The dependency whose breaker is open (`dependency_down` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    dependency: Option<Arc<str>>,
}

/// 200 with `Granted`, written by [`LeaseView::write_json`](callgate_events::views::LeaseView::write_json)
/// (the request path's hottest answer; a test keeps it equal to serde's).
fn granted_response(lease: &callgate_events::views::LeaseView) -> Response {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"{\"decision\":\"granted\",\"lease\":");
    lease.write_json(&mut body);
    body.push(b'}');
    super::body::json_bytes(body)
}

#[doc(hidden)]
pub fn answer_response(answer: Answer) -> Response {
    match answer {
        // Serialized straight to the body, never through a `Value`: the lease's `meta` is
        // raw JSON text, written out as it was received.
        Answer::Granted(lease) => granted_response(&lease),
        Answer::Queued(ticket) => {
            (StatusCode::ACCEPTED, Json(Queued { decision: Decision::Queued, ticket })).into_response()
        }
        Answer::Rejected { reason: RejectReason::NeverFits, overflow, .. } => {
            // Waiting or retrying cannot help: 409, and no Retry-After to invite a retry.
            let body = Rejected {
                decision: Decision::Rejected,
                reason: RejectReason::NeverFits.as_str(),
                overflow,
                retry_after_ms: None,
                dependency: None,
            };
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
        Answer::Rejected { reason, overflow, retry_after_ms, dependency } => {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            // A dependency's breaker is open: the same 429 shape, so a client that acts
            // on `overflow` gives the caller the flow's fallback without knowing why.
            let body = Rejected {
                decision: Decision::Rejected,
                reason: if dependency.is_some() { "dependency_down" } else { reason.as_str() },
                overflow,
                retry_after_ms: Some(retry_after_ms),
                dependency,
            };
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_granted_answer_is_what_serde_writes() {
        let lease = callgate_events::views::LeaseView {
            id: callgate_core::LeaseId(42),
            key: Some(Arc::from("call-\"1\"")),
            class: Arc::from("inbound"),
            flow: Some(Arc::from("calls")),
            pools: vec![callgate_events::views::PoolUnitsView { pool: Arc::from("bench"), units: 2 }],
            granted_at_ms: 1,
            expires_at_ms: 2,
            meta: Some(RawValue::from_string(r#"{"a":1}"#.into()).unwrap()),
        };
        let fast = granted_response(&lease);
        assert_eq!(fast.status(), StatusCode::OK);
        assert_eq!(fast.headers()[header::CONTENT_TYPE], "application/json");
        let body =
            futures_util::FutureExt::now_or_never(axum::body::to_bytes(fast.into_body(), usize::MAX)).unwrap().unwrap();
        let serde = serde_json::to_vec(&Granted { decision: Decision::Granted, lease }).unwrap();
        assert_eq!(body.as_ref(), serde.as_slice());
    }
}
