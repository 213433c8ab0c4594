//! `/v1/leases`: list, renew, release by id and by key.

use super::body::JsonBody;
use super::body::{PathParam, QueryMap};
use super::{App, Caller};
use crate::error::ApiError;
use crate::governor::LeaseRef;
use axum::extract::State;
use axum::Json;
use callgate_core::LeaseId;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn lease_id(id: &str) -> Result<LeaseId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("unknown_lease", format!("`{id}` is not a lease id")))
}

fn query_param(q: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    if let Some(other) = q.keys().find(|k| *k != name) {
        return Err(ApiError::bad_request(format!("unknown query parameter `{other}`")));
    }
    Ok(q.get(name).cloned())
}

pub(crate) async fn list(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    let pool = query_param(&q, "pool")?;
    Ok(Json(json!(app.governor.durable_view(|g| g.leases(pool.as_deref())).await??)))
}

pub(crate) async fn release(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody<super::ops::ReleaseBody>,
) -> Result<Json<Value>, ApiError> {
    let report = body.0.map(|b| b.into_report()).transpose()?;
    let released = match (id.parse::<LeaseId>(), report) {
        (Ok(id), None) => app.governor.release(id).await?,
        (Ok(id), Some(r)) => app.governor.release_reporting(LeaseRef::Id(id), r).await?,
        // An id that could never have been ours is simply not live.
        (Err(()), _) => false,
    };
    Ok(Json(json!({ "released": released })))
}

pub(crate) async fn release_by_key(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
    body: JsonBody<super::ops::ReleaseBody>,
) -> Result<Json<Value>, ApiError> {
    let key = query_param(&q, "key")?.ok_or_else(|| ApiError::bad_request("give `?key=…` to release by key"))?;
    let released = match body.0.map(|b| b.into_report()).transpose()? {
        None => app.governor.release_key(&key).await?,
        Some(r) => app.governor.release_reporting(LeaseRef::Key(&key), r).await?,
    };
    Ok(Json(json!({ "released": released })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewBody {
    ttl_ms: Option<u64>,
}

pub(crate) async fn renew(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody<RenewBody>,
) -> Result<Json<Value>, ApiError> {
    let id = lease_id(&id)?;
    let ttl = body.0.and_then(|b| b.ttl_ms);
    if ttl.is_some_and(|t| t == 0 || t > 30 * 24 * 3600 * 1000) {
        return Err(ApiError::bad_request("`ttl_ms` must be between 1 and 30 days"));
    }
    match app.governor.renew(id, ttl).await? {
        Some(lease) => Ok(Json(json!({ "lease": lease }))),
        None => {
            Err(ApiError::not_found("unknown_lease", format!("lease {id} is not live (released, expired or unknown)")))
        }
    }
}
