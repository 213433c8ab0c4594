//! `/v1/tickets/{id}`: status and cancel.

use super::body::PathParam;
use super::{App, Caller};
use crate::error::ApiError;
use crate::governor::TicketState;
use axum::extract::State;
use axum::Json;
use callgate_core::TicketId;
use serde_json::{json, Value};
use std::sync::Arc;

fn ticket_id(id: &str) -> Result<TicketId, ApiError> {
    id.parse().map_err(|_| unknown(id))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found("unknown_ticket", format!("no ticket `{id}` (unknown, or ended long ago)"))
}

pub(crate) async fn status(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    let tid = ticket_id(&id)?;
    // Only what is on disk: a grant still in flight shows as waiting.
    let state = app.governor.durable_view(|g| g.ticket(tid)).await?.ok_or_else(|| unknown(&id))?;
    Ok(Json(match state {
        TicketState::Waiting(t) => json!({
            "id": t.id, "key": t.key, "state": "waiting",
            "position": t.position, "eta_ms": t.eta_ms, "deadline_ms": t.deadline_ms,
        }),
        TicketState::Granted(Some(lease), _) => json!({ "id": id, "state": "granted", "lease": lease }),
        TicketState::Granted(None, lease) => {
            json!({ "id": id, "state": "granted", "lease": { "id": lease.to_string(), "live": false } })
        }
        TicketState::TimedOut(overflow) => json!({ "id": id, "state": "timed_out", "overflow": overflow }),
        TicketState::NeverFits(overflow) => json!({ "id": id, "state": "never_fits", "overflow": overflow }),
        TicketState::Cancelled => json!({ "id": id, "state": "cancelled" }),
    }))
}

pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    caller.require(callgate_config::Role::Client)?;
    let tid = ticket_id(&id)?;
    app.governor.check_ticket_owner(tid, caller.owner_check())?;
    match app.governor.cancel(tid).await? {
        Some(cancelled) => Ok(Json(json!({ "cancelled": cancelled }))),
        None => Err(unknown(&id)),
    }
}
