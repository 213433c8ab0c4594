//! Putting back what the journal holds: at start, and after a failed commit, when the
//! ledger in memory is rebuilt from the last durable state (see `Embedded::recover`).

use crate::{Restored, StoredEnded, StoredLease, StoredTicket};
use callgate_core::{FlowId, Lease, LeaseId, Ledger, PoolUnits, TicketId, TicketOutcome};
use std::sync::Arc;

/// What a restore could not put back: rows naming a pool or class that the
/// configuration no longer has.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    /// Lease ids.
    pub(crate) leases: Vec<u64>,
    /// Ticket ids.
    pub(crate) tickets: Vec<u64>,
}

fn resolve_pools(ledger: &Ledger, pools: &[(String, u32)]) -> Option<Vec<PoolUnits>> {
    pools.iter().map(|(name, units)| Some(PoolUnits { pool: ledger.pool_id(name)?, units: *units })).collect()
}

fn restore_lease(ledger: &mut Ledger, l: &StoredLease) -> bool {
    let (Some(class), Some(pools)) = (ledger.class_id(&l.class), resolve_pools(ledger, &l.pools)) else {
        return false;
    };
    let lease = Lease {
        id: LeaseId(l.id),
        key: l.key.as_deref().map(Arc::from),
        class,
        flow: l.flow.as_deref().and_then(|f| ledger.flow_id(f)),
        pools: pools.into(),
        granted_at: l.granted_at,
        expires_at: l.expires_at,
        ttl_ms: l.ttl_ms,
        meta: l.meta.as_deref().map(Arc::from),
        owner: l.owner.as_deref().map(Arc::from),
    };
    ledger.restore_lease(lease).is_ok()
}

fn restore_ticket(ledger: &mut Ledger, t: &StoredTicket) -> bool {
    let (Some(class), Some(pools)) = (ledger.class_id(&t.class), resolve_pools(ledger, &t.pools)) else {
        return false;
    };
    let ticket = callgate_core::Ticket {
        id: TicketId(t.id),
        key: t.key.as_deref().map(Arc::from),
        class,
        flow: t.flow.as_deref().and_then(|f| ledger.flow_id(f)),
        pools: pools.into(),
        seq: t.seq,
        enqueued_at: t.enqueued_at,
        deadline: t.deadline,
        ttl_ms: t.ttl_ms,
        meta: t.meta.as_deref().map(Arc::from),
        owner: t.owner.as_deref().map(Arc::from),
    };
    ledger.restore_ticket(ticket).is_ok()
}

fn restore_ended(ledger: &mut Ledger, e: &StoredEnded) {
    let outcome = match (e.outcome.as_str(), e.lease) {
        ("granted", Some(lease)) => TicketOutcome::Granted(LeaseId(lease)),
        ("cancelled", _) => TicketOutcome::Cancelled,
        ("timed_out", _) => TicketOutcome::TimedOut,
        ("never_fits", _) => TicketOutcome::NeverFits,
        _ => {
            tracing::warn!(ticket = e.id, outcome = %e.outcome, "Not restoring a ticket outcome callgate does not know");
            return;
        }
    };
    let flow: Option<FlowId> = e.flow.as_deref().and_then(|f| ledger.flow_id(f));
    ledger.restore_ended(TicketId(e.id), outcome, e.at, flow);
}

/// Puts back what the journal held: leases, waiting tickets, how recent tickets ended,
/// the id counters, runtime limit changes and the pools' mean hold times. Rows naming a
/// pool or class that the configuration no longer has are dropped (with a warning):
/// they cannot be admitted against anything. Emits no events.
pub(crate) fn restore(ledger: &mut Ledger, r: &Restored, now: u64) -> Dropped {
    let mut dropped = Dropped::default();
    // Runtime limits first, on an empty ledger: a limit lowered below a stored ticket then
    // ends it at `settle`, through the journal, instead of here, where its event would be
    // dropped.
    for (pool, limit, config_limit) in &r.limits {
        match ledger.pool_id(pool) {
            Some(id) if ledger.pool(id).limit == *config_limit => ledger.set_limit(id, *limit, now),
            _ => tracing::info!(pool = %pool, "Not restoring a runtime limit change: the configuration changed since"),
        }
    }
    for l in &r.leases {
        if !restore_lease(ledger, l) {
            tracing::warn!(lease = l.id, class = %l.class, pools = ?l.pools, "Dropping a stored lease: its class or pool is no longer configured");
            dropped.leases.push(l.id);
        }
    }
    for t in &r.tickets {
        if !restore_ticket(ledger, t) {
            tracing::warn!(ticket = t.id, class = %t.class, pools = ?t.pools, "Dropping a stored ticket: its class or pool is no longer configured");
            dropped.tickets.push(t.id);
        }
    }
    for e in &r.ended {
        restore_ended(ledger, e);
    }
    ledger.restore_counters(r.next_id, r.next_seq);
    for (pool, ms) in &r.holds {
        if let Some(id) = ledger.pool_id(pool) {
            ledger.restore_mean_hold(id, *ms);
        }
    }
    // These limit events restate what the journal already holds.
    ledger.drain_events().for_each(drop);
    dropped
}
