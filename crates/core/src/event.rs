//! Events: every change of the ledger, in the order it happened.
//!
//! The journal, the metrics and the live page consume these; none of them reaches into
//! the ledger. Events own their data (shared slices are reference counted), so a consumer
//! on another thread needs nothing else.

use crate::ids::{ClassId, LeaseId, Millis, PoolId, PoolUnits, TicketId};
use crate::ledger::{Lease, Ticket};
use std::sync::Arc;

/// Why a request was not admitted and not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// It does not fit (after reserves and the requests ahead of it) and may not wait.
    Capacity,
    /// It may wait, but its flow's waiting room is full.
    QueueFull,
    /// It asks a pool for more units than the pool can ever give its class (the pool's
    /// limit minus the reserves of the classes above it): waiting would not help, and by
    /// the claimed-pools rule it would block everyone behind it.
    NeverFits,
}

impl RejectReason {
    /// The wire name (`capacity`, `queue_full`, `never_fits`).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Capacity => "capacity",
            RejectReason::QueueFull => "queue_full",
            RejectReason::NeverFits => "never_fits",
        }
    }
}

/// How a ticket ended. Every ticket ends exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketOutcome {
    /// It became this lease.
    Granted(LeaseId),
    /// The caller gave up (hung up) before it was granted.
    Cancelled,
    /// Its deadline passed; the flow's overflow applies.
    TimedOut,
    /// A pool's limit was lowered below what it asks for (after the reserves of the
    /// classes above it), so it could never be granted; the flow's overflow applies, as
    /// for a time-out.
    NeverFits,
}

impl TicketOutcome {
    /// The wire name (`granted`, `cancelled`, `timed_out`, `never_fits`).
    pub fn as_str(self) -> &'static str {
        match self {
            TicketOutcome::Granted(_) => "granted",
            TicketOutcome::Cancelled => "cancelled",
            TicketOutcome::TimedOut => "timed_out",
            TicketOutcome::NeverFits => "never_fits",
        }
    }

    /// The outcome as stores keep it: its wire name, and the lease a grant made.
    pub fn parts(self) -> (&'static str, Option<LeaseId>) {
        match self {
            TicketOutcome::Granted(l) => ("granted", Some(l)),
            other => (other.as_str(), None),
        }
    }

    /// An outcome read back from [`TicketOutcome::parts`]; `None` for a name this version
    /// does not know (or a grant without its lease).
    pub fn from_parts(name: &str, lease: Option<u64>) -> Option<TicketOutcome> {
        Some(match (name, lease) {
            ("granted", Some(lease)) => TicketOutcome::Granted(LeaseId(lease)),
            ("cancelled", _) => TicketOutcome::Cancelled,
            ("timed_out", _) => TicketOutcome::TimedOut,
            ("never_fits", _) => TicketOutcome::NeverFits,
            _ => return None,
        })
    }
}

/// One change of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A lease was granted, at once or from a waiting ticket.
    Granted {
        /// The new lease, as granted.
        lease: Lease,
        /// The ticket it came from, with the time it waited.
        from_ticket: Option<(TicketId, Millis)>,
    },
    /// A request was put in the waiting room.
    Queued {
        /// The ticket, as created.
        ticket: Ticket,
        /// 1 for the first in line.
        position: u32,
    },
    /// A request was refused.
    Rejected {
        /// Its class.
        class: ClassId,
        /// What it asked for.
        pools: Arc<[PoolUnits]>,
        /// Its flow, if it named one.
        flow: Option<crate::FlowId>,
        /// Its idempotency key, if it had one (for the decision log; not journaled).
        key: Option<Arc<str>>,
        /// Why.
        reason: RejectReason,
        /// When.
        at: Millis,
    },
    /// A lease's expiry moved.
    Renewed {
        /// The lease.
        lease: LeaseId,
        /// Its new expiry.
        expires_at: Millis,
        /// Its TTL from now on (a renewal without one extends by this).
        ttl_ms: u64,
        /// When.
        at: Millis,
    },
    /// A lease was released by its holder.
    Released {
        /// The lease as it was.
        lease: Lease,
        /// When.
        at: Millis,
    },
    /// A lease expired (nobody renewed or released it).
    Expired {
        /// The lease as it was.
        lease: Lease,
        /// When (its expiry).
        at: Millis,
    },
    /// A ticket ended without a grant (cancelled, timed out, or never fits). Grants appear as
    /// [`Event::Granted`] with `from_ticket`.
    TicketEnded {
        /// The ticket as it was.
        ticket: Ticket,
        /// Cancelled, timed out or never fits.
        outcome: TicketOutcome,
        /// When.
        at: Millis,
    },
    /// A pool's limit or effective cap changed.
    LimitChanged {
        /// The pool.
        pool: PoolId,
        /// Its configured limit.
        limit: u32,
        /// Its effective cap.
        cap: u32,
        /// When.
        at: Millis,
    },
}

impl Event {
    /// The time of the change.
    pub fn at(&self) -> Millis {
        match self {
            Event::Granted { lease, .. } => lease.granted_at,
            Event::Queued { ticket, .. } => ticket.enqueued_at,
            Event::Rejected { at, .. }
            | Event::Renewed { at, .. }
            | Event::Released { at, .. }
            | Event::Expired { at, .. }
            | Event::TicketEnded { at, .. }
            | Event::LimitChanged { at, .. } => *at,
        }
    }
}
