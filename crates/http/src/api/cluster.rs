//! `/v1/cluster/nodes`: the nodes with `local_fallback` pools that the shared ledger knows
//! (cluster mode), and forgetting one that is gone (admin).

use super::body::PathParam;
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use callgate_runtime::cluster::fallback::{presence::KnownNode, Fallback};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A node as the shared ledger knows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NodeView {
    /// Its name (host, listen address and process id).
    node: String,
    /// Whether it is the node that answers.
    this_node: bool,
    /// Whether its presence lapsed: the ledger holds its declared shares back (it may be
    /// admitting on them on its own, cut off from Redis).
    silent: bool,
    /// When it turns silent without another presence, or turned (Unix ms, Redis's clock).
    silent_at_ms: u64,
    /// When the ledger stops holding its shares back, once silent (Unix ms, Redis's clock).
    holds_back_until_ms: u64,
    /// The units of each pool it declared at its last presence: what is held back while
    /// it is silent.
    declared: BTreeMap<String, u32>,
}

/// What `GET /v1/cluster/nodes` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Nodes {
    /// Present nodes and silent ones whose shares are held back, by when they turn or
    /// turned silent (at most 1000).
    nodes: Vec<NodeView>,
}

/// What `DELETE /v1/cluster/nodes/{node}` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Forgotten {
    /// The node forgotten.
    forgotten: String,
}

impl From<KnownNode> for NodeView {
    fn from(n: KnownNode) -> NodeView {
        NodeView {
            node: n.node,
            this_node: n.this_node,
            silent: n.silent,
            silent_at_ms: n.silent_at_ms,
            holds_back_until_ms: n.holds_until_ms,
            declared: n.declared.into_iter().collect(),
        }
    }
}

/// Runs `f` on this node's fallback backend, on a blocking thread (it calls Redis): 404
/// when no pool of this node is on `local_fallback` (no presence is kept then).
async fn on_fallback<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Fallback) -> Result<T, callgate_backend::Error> + Send + 'static,
) -> Result<T, ApiError> {
    if app.fallback().is_none() {
        return Err(ApiError::not_found(
            "no_local_fallback",
            "this node has no pool on `local_fallback` (cluster mode): it keeps no nodes' presence",
        ));
    }
    let backend = app.governor.backend().clone();
    tokio::task::spawn_blocking(move || match backend.as_any().downcast_ref::<Fallback>() {
        Some(fallback) => f(fallback).map_err(ApiError::from),
        None => Err(ApiError::from(callgate_backend::Error::internal("the backend changed"))),
    })
    .await
    .map_err(|e| ApiError::from(callgate_backend::Error::internal(format!("the call to Redis failed: {e}"))))?
}

/// The nodes with `local_fallback` pools that the shared ledger knows: present ones, and
/// silent ones whose declared shares it holds back.
#[utoipa::path(
    get, path = "/v1/cluster/nodes", operation_id = "list_cluster_nodes", tag = "pools",
    responses(
        (status = 200, description = "The nodes", body = Nodes),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 404, description = "No pool of this node is on `local_fallback` (`no_local_fallback`)", body = ErrorBody),
        (status = 503, description = "Redis cannot be reached", body = ErrorBody),
    ),
)]
pub(crate) async fn list(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Nodes>, ApiError> {
    let nodes = on_fallback(&app, |f| f.nodes()).await?;
    Ok(Json(Nodes { nodes: nodes.into_iter().map(NodeView::from).collect() }))
}

/// Forgets a node that is gone (admin): the shared ledger stops holding its shares back at
/// once, and the waiting lines move. Only for a node known to be gone with its calls
/// ended: one cut off from Redis may still be admitting on its share, which the others
/// would then admit on too. A node still running says its presence again within a second.
#[utoipa::path(
    delete, path = "/v1/cluster/nodes/{node}", operation_id = "forget_cluster_node", tag = "pools",
    params(("node" = String, Path, description = "The node's name, as `GET /v1/cluster/nodes` shows it")),
    responses(
        (status = 200, description = "Forgotten", body = Forgotten),
        (status = 400, description = "Unreadable path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such node (`unknown_node`), or no pool of this node is on `local_fallback` (`no_local_fallback`)", body = ErrorBody),
        (status = 503, description = "Redis cannot be reached", body = ErrorBody),
    ),
)]
pub(crate) async fn forget(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(node): PathParam,
) -> Result<Json<Forgotten>, ApiError> {
    caller.require_admin()?;
    let name = node.clone();
    if on_fallback(&app, move |f| f.forget(&name)).await? {
        Ok(Json(Forgotten { forgotten: node }))
    } else {
        Err(ApiError::not_found("unknown_node", format!("the shared ledger knows no node `{node}`")))
    }
}
