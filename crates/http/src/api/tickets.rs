//! `/v1/tickets/{id}`: status and cancel.

use super::body::PathParam;
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use callgate_core::{LeaseId, TicketId};
use callgate_events::views::{as_text, LeaseView};
use callgate_governor::TicketState;
use serde::Serialize;
use std::sync::Arc;

/// A ticket's state, tagged by `state`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum TicketStatus {
    /// In line.
    Waiting {
        /// `T<n>`.
        #[serde(serialize_with = "as_text")]
        #[schema(value_type = String)]
        id: TicketId,
        /// Idempotency key.
        #[schema(value_type = Option<String>)]
        key: Option<Arc<str>>,
        /// 1 for the first in line.
        position: u32,
        /// Estimated wait, ms.
        eta_ms: u64,
        /// Unix ms at which it times out.
        deadline_ms: u64,
    },
    /// Granted: the lease while it is live, else only its id and `live: false`.
    Granted {
        /// `T<n>`.
        #[serde(serialize_with = "as_text")]
        #[schema(value_type = String)]
        id: TicketId,
        /// The lease.
        lease: GrantedLease,
    },
    /// Its deadline passed: the flow's overflow applies.
    TimedOut {
        /// `T<n>`.
        #[serde(serialize_with = "as_text")]
        #[schema(value_type = String)]
        id: TicketId,
        /// The flow's overflow action.
        #[schema(value_type = Option<Object>)]
        overflow: Option<callgate_config::Overflow>,
    },
    /// It can never fit (a limit was lowered): the flow's overflow applies.
    NeverFits {
        /// `T<n>`.
        #[serde(serialize_with = "as_text")]
        #[schema(value_type = String)]
        id: TicketId,
        /// The flow's overflow action.
        #[schema(value_type = Option<Object>)]
        overflow: Option<callgate_config::Overflow>,
    },
    /// Cancelled.
    Cancelled {
        /// `T<n>`.
        #[serde(serialize_with = "as_text")]
        #[schema(value_type = String)]
        id: TicketId,
    },
}

/// The lease a granted ticket became.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum GrantedLease {
    /// Still live.
    Live(LeaseView),
    /// Released or expired since.
    Ended(EndedLease),
}

/// A lease that is no longer live.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EndedLease {
    /// `L<n>`.
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    id: LeaseId,
    /// Always `false`.
    live: bool,
}

/// `{ "cancelled": bool }`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Cancelled {
    /// False when it had already ended.
    cancelled: bool,
}

fn ticket_id(id: &str) -> Result<TicketId, ApiError> {
    id.parse().map_err(|_| unknown(id))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found("unknown_ticket", format!("no ticket `{id}` (unknown, or ended long ago)"))
}

/// A ticket's state (only what is on disk: a grant still in flight shows as waiting).
#[utoipa::path(
    get, path = "/v1/tickets/{id}", operation_id = "get_ticket", tag = "tickets",
    params(("id" = String, Path, description = "`T<n>`")),
    responses(
        (status = 200, description = "The ticket", body = TicketStatus),
        (status = 400, description = "Unreadable path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 404, description = "No such ticket (`unknown_ticket`)", body = ErrorBody),
        (status = 503, description = "The journal failed while this was read", body = ErrorBody),
    ),
)]
pub(crate) async fn status(
    State(app): State<Arc<App>>,
    _caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<TicketStatus>, ApiError> {
    let tid = ticket_id(&id)?;
    // Only what is on disk: a grant still in flight shows as waiting.
    let state = app.governor.durable_view(|g| g.ticket(tid)).await?.ok_or_else(|| unknown(&id))?;
    Ok(Json(match state {
        TicketState::Waiting(t) => TicketStatus::Waiting {
            id: t.id,
            key: t.key,
            position: t.position,
            eta_ms: t.eta_ms,
            deadline_ms: t.deadline_ms,
        },
        TicketState::Granted(Some(lease), _) => TicketStatus::Granted { id: tid, lease: GrantedLease::Live(lease) },
        TicketState::Granted(None, lease) => {
            TicketStatus::Granted { id: tid, lease: GrantedLease::Ended(EndedLease { id: lease, live: false }) }
        }
        TicketState::TimedOut(overflow) => TicketStatus::TimedOut { id: tid, overflow },
        TicketState::NeverFits(overflow) => TicketStatus::NeverFits { id: tid, overflow },
        TicketState::Cancelled => TicketStatus::Cancelled { id: tid },
    }))
}

/// Gives up a place in line (the caller hung up).
#[utoipa::path(
    delete, path = "/v1/tickets/{id}", operation_id = "cancel_ticket", tag = "tickets",
    params(("id" = String, Path, description = "`T<n>`")),
    responses(
        (status = 200, description = "Cancelled (`false`: it had already ended)", body = Cancelled),
        (status = 400, description = "Unreadable path", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Another key's ticket, or a role below `client`", body = ErrorBody),
        (status = 404, description = "No such ticket (`unknown_ticket`)", body = ErrorBody),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Cancelled>, ApiError> {
    caller.require(callgate_config::Role::Client)?;
    let tid = ticket_id(&id)?;
    app.governor.check_ticket_owner(tid, caller.owner_check())?;
    match app.governor.cancel(tid).await? {
        Some(cancelled) => Ok(Json(Cancelled { cancelled })),
        None => Err(unknown(&id)),
    }
}
