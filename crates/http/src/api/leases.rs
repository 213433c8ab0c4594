//! `/v1/leases`: list, renew, release by id and by key.

use super::body::{Json, JsonBody};
use super::body::{PathParam, QueryMap};
use super::ops::ReleaseBody;
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use axum::extract::State;
use callgate_config::Role;
use callgate_core::LeaseId;
use callgate_events::views::LeaseView;
use callgate_governor::{LeaseQuery, LeaseRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A page of live leases.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LeasePage {
    /// The leases, in the order they were granted.
    leases: Vec<LeaseView>,
    /// Give it as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `{ "released": bool }`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Released {
    /// True the first time; false when it was not live (released, expired, unknown).
    released: bool,
}

/// `{ "lease": … }`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Renewed {
    /// The lease with its new expiry.
    lease: LeaseView,
}

fn lease_id(id: &str) -> Result<LeaseId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("unknown_lease", format!("`{id}` is not a lease id")))
}

fn query_param(q: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    if let Some(other) = q.keys().find(|k| *k != name) {
        return Err(ApiError::bad_request(format!("unknown query parameter `{other}`")));
    }
    Ok(q.get(name).cloned())
}

/// Leases per page unless `limit` says otherwise; at most [`MAX_PAGE`].
const DEFAULT_PAGE: usize = 100;
/// A page of 1000 leases with 4 KiB of `meta` each stays near 4 MB.
const MAX_PAGE: usize = 1000;
/// Cursors are opaque to clients; this prefix lets a later format tell its own apart.
const CURSOR_PREFIX: &str = "c1.";

fn cursor_of(id: LeaseId) -> String {
    format!("{CURSOR_PREFIX}{:x}", id.0)
}

fn after_cursor(cursor: Option<&str>) -> Result<LeaseId, ApiError> {
    let Some(c) = cursor else { return Ok(LeaseId(0)) };
    c.strip_prefix(CURSOR_PREFIX)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .map(LeaseId)
        .ok_or_else(|| ApiError::new(ErrorKind::BadRequest, "invalid_cursor", "`cursor` is not one this server gave"))
}

/// `GET /v1/leases[?pool=P][&flow=F][&class=C][&key=PREFIX][&limit=N][&cursor=C]`: a page
/// of the live leases, in the order they were granted.
#[utoipa::path(
    get, path = "/v1/leases", operation_id = "list_leases", tag = "leases",
    params(
        ("pool" = Option<String>, Query, description = "Only leases holding this pool"),
        ("flow" = Option<String>, Query, description = "Only leases of this flow"),
        ("class" = Option<String>, Query, description = "Only leases of this class"),
        ("key" = Option<String>, Query, description = "Only leases whose key starts with this"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Leases per page (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of leases", body = LeasePage),
        (status = 400, description = "Unknown parameter, bad limit or cursor", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 404, description = "Unknown pool, flow or class", body = ErrorBody),
        (status = 503, description = "The journal failed while this was read", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<LeasePage>, ApiError> {
    const ALLOWED: [&str; 6] = ["pool", "flow", "class", "key", "limit", "cursor"];
    if let Some(other) = q.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown query parameter `{other}`")));
    }
    for name in ["pool", "flow", "class"] {
        app.limits.opt_name(name, q.get(name).map(String::as_str))?;
    }
    if let Some(k) = q.get("key") {
        app.limits.key(k)?;
    }
    let limit = match q.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("`limit` must be between 1 and {MAX_PAGE}")))?,
    };
    let query = LeaseQuery {
        pool: q.get("pool").cloned(),
        flow: q.get("flow").cloned(),
        class: q.get("class").cloned(),
        key_prefix: q.get("key").cloned(),
        after: after_cursor(q.get("cursor").map(String::as_str))?,
        limit,
    };
    let page = app.governor.durable_view(|g| g.leases_page(&query)).await??;
    Ok(Json(LeasePage { leases: page.leases, next_cursor: page.next.map(cursor_of) }))
}

/// Releases a lease, optionally reporting the call's latency and outcome.
#[utoipa::path(
    delete, path = "/v1/leases/{id}", operation_id = "release_lease", tag = "leases",
    params(("id" = String, Path, description = "`L<n>`")),
    request_body(content = Option<ReleaseBody>, description = "Optional: the call's outcome"),
    responses(
        (status = 200, description = "Released (`false`: it was not live)", body = Released),
        (status = 400, description = "Malformed body or path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Another key's lease, or a role below `client`", body = ErrorBody),
        (status = 404, description = "Unknown dependency in the report", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn release(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody<ReleaseBody>,
) -> Result<Json<Released>, ApiError> {
    caller.require(Role::Client)?;
    let report = body.0.map(|b| b.into_report(&app.limits)).transpose()?;
    // An id that could never have been ours is simply not live.
    let Ok(id) = id.parse::<LeaseId>() else { return Ok(Json(Released { released: false })) };
    // The owner is checked by the command that releases.
    let released = match report {
        None => app.governor.release_owned(id, caller.owner_check()).await?,
        Some(r) => app.governor.release_reporting(LeaseRef::Id(id), r, caller.owner_check()).await?,
    };
    Ok(Json(Released { released }))
}

/// Releases the live lease with this idempotency key.
#[utoipa::path(
    delete, path = "/v1/leases", operation_id = "release_lease_by_key", tag = "leases",
    params(("key" = String, Query, description = "The lease's idempotency key")),
    request_body(content = Option<ReleaseBody>, description = "Optional: the call's outcome"),
    responses(
        (status = 200, description = "Released (`false`: no live lease has this key)", body = Released),
        (status = 400, description = "No key, unknown parameter or malformed body", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Another key's lease, or a role below `client`", body = ErrorBody),
        (status = 404, description = "Unknown dependency in the report", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn release_by_key(
    State(app): State<Arc<App>>,
    caller: Caller,
    QueryMap(q): QueryMap,
    body: JsonBody<ReleaseBody>,
) -> Result<Json<Released>, ApiError> {
    caller.require(Role::Client)?;
    let key = query_param(&q, "key")?.ok_or_else(|| ApiError::bad_request("give `?key=…` to release by key"))?;
    app.limits.key(&key)?;
    // The owner is checked under the lock that releases: a key, unlike an id, can be
    // taken again by another client between a check and the release.
    let who = caller.owner_check();
    let released = match body.0.map(|b| b.into_report(&app.limits)).transpose()? {
        None => app.governor.release_key(&key, who).await?,
        Some(r) => app.governor.release_reporting(LeaseRef::Key(&key), r, who).await?,
    };
    Ok(Json(Released { released }))
}

/// What a renewal may carry.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewBody {
    /// The new time to live from now, ms (1 ms to 30 days; default: the lease's own).
    #[schema(minimum = 1, maximum = 2_592_000_000_u64)]
    ttl_ms: Option<u64>,
}

/// Extends a live lease.
#[utoipa::path(
    post, path = "/v1/leases/{id}/renew", operation_id = "renew_lease", tag = "leases",
    params(("id" = String, Path, description = "`L<n>`")),
    request_body(content = Option<RenewBody>, description = "Optional: a new TTL"),
    responses(
        (status = 200, description = "Renewed", body = Renewed),
        (status = 400, description = "Malformed body, path or TTL", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Another key's lease, or a role below `client`", body = ErrorBody),
        (status = 404, description = "Not live (`unknown_lease`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn renew(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody<RenewBody>,
) -> Result<Json<Renewed>, ApiError> {
    caller.require(Role::Client)?;
    let id = lease_id(&id)?;
    let ttl = body.0.and_then(|b| b.ttl_ms);
    if ttl.is_some_and(|t| t == 0 || t > 30 * 24 * 3600 * 1000) {
        return Err(ApiError::bad_request("`ttl_ms` must be between 1 and 30 days"));
    }
    // The owner is checked by the command that renews.
    match app.governor.renew(id, ttl, caller.owner_check()).await? {
        Some(lease) => Ok(Json(Renewed { lease })),
        None => {
            Err(ApiError::not_found("unknown_lease", format!("lease {id} is not live (released, expired or unknown)")))
        }
    }
}
