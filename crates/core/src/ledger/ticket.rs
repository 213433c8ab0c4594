//! Tickets: requests waiting for capacity.

use crate::event::TicketOutcome;
use crate::ids::{ClassId, FlowId, LeaseId, Millis, PoolUnits, TicketId};
use std::sync::Arc;

/// A waiting request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Never reused.
    pub id: TicketId,
    /// The idempotency key.
    pub key: Option<Arc<str>>,
    /// Its class.
    pub class: ClassId,
    /// Its flow, if any.
    pub flow: Option<FlowId>,
    /// What it waits for.
    pub pools: Arc<[PoolUnits]>,
    /// Arrival order; with the class priority it fixes the place in line.
    pub seq: u64,
    /// When it started waiting.
    pub enqueued_at: Millis,
    /// When it times out.
    pub deadline: Millis,
    /// The TTL of the lease it becomes (ms).
    pub ttl_ms: u64,
    /// Opaque metadata, carried into the lease.
    pub meta: Option<Arc<str>>,
    /// The name of the API key it was acquired with (`None`: by the server itself, e.g.
    /// a provider webhook or the dialer, or with no keys configured). Only that key (or
    /// an admin) may cancel it; the lease it becomes keeps the owner.
    pub owner: Option<Arc<str>>,
}

/// What a ticket is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TicketStatus {
    /// Still waiting.
    Waiting {
        /// 1 for the first in line.
        position: u32,
        /// Estimated wait from now (ms).
        eta_ms: u64,
        /// When it times out.
        deadline: Millis,
    },
    /// Ended: granted (with the lease id), cancelled or timed out.
    Ended {
        /// How.
        outcome: TicketOutcome,
        /// When.
        at: Millis,
        /// The flow it came through (its overflow applies to a time-out).
        flow: Option<FlowId>,
    },
}

/// An ended ticket's outcome, kept for a while so that pollers learn it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ended {
    pub(crate) outcome: TicketOutcome,
    pub(crate) at: Millis,
    pub(crate) flow: Option<FlowId>,
}

impl Ended {
    pub(crate) fn granted(lease: LeaseId, at: Millis, flow: Option<FlowId>) -> Self {
        Ended { outcome: TicketOutcome::Granted(lease), at, flow }
    }
}
