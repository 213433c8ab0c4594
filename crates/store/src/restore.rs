//! Putting back what the journal holds: at start, and after a failed commit, when the
//! ledger in memory is rebuilt from the last durable state (see `Embedded::recover`).

use crate::{Names, Restored, StoredEnded, StoredLease, StoredTicket};
use callgate_core::{FlowId, Ledger, PoolUnits, TicketId, TicketOutcome};

/// What a restore could not put back: rows naming a pool or class that the
/// configuration no longer has.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    /// Lease ids.
    pub(crate) leases: Vec<u64>,
    /// Ticket ids.
    pub(crate) tickets: Vec<u64>,
}

fn restore_lease(ledger: &mut Ledger, l: &StoredLease) -> bool {
    l.to_lease(&*ledger).is_some_and(|lease| ledger.restore_lease(lease).is_ok())
}

fn restore_ticket(ledger: &mut Ledger, t: &StoredTicket) -> bool {
    t.to_ticket(&*ledger).is_some_and(|ticket| ledger.restore_ticket(ticket).is_ok())
}

fn restore_ended(ledger: &mut Ledger, e: &StoredEnded) {
    let Some(outcome) = TicketOutcome::from_parts(&e.outcome, e.lease) else {
        tracing::warn!(ticket = e.id, outcome = %e.outcome, "Not restoring a ticket outcome callgate does not know");
        return;
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

/// What the journal would hold if the server stopped now: the live leases and waiting
/// tickets, how recent tickets ended, the counters, runtime limits and mean holds, by
/// name.
pub(crate) fn snapshot(ledger: &Ledger, names: &Names) -> Restored {
    let pools = |p: &[PoolUnits]| -> Vec<(String, u32)> {
        p.iter().map(|pu| (names.pools[pu.pool.index()].to_string(), pu.units)).collect()
    };
    let flow = |f: Option<FlowId>| f.and_then(|f| names.flows.get(f.index())).map(|n| n.to_string());
    let leases = ledger
        .leases()
        .map(|l| StoredLease {
            id: l.id.0,
            key: l.key.as_deref().map(str::to_owned),
            class: names.classes[l.class.index()].to_string(),
            flow: flow(l.flow),
            pools: pools(&l.pools),
            granted_at: l.granted_at,
            expires_at: l.expires_at,
            ttl_ms: l.ttl_ms,
            meta: l.meta.as_deref().map(str::to_owned),
            owner: l.owner.as_deref().map(str::to_owned),
        })
        .collect();
    let mut tickets: Vec<StoredTicket> = ledger
        .tickets()
        .map(|t| StoredTicket {
            id: t.id.0,
            key: t.key.as_deref().map(str::to_owned),
            class: names.classes[t.class.index()].to_string(),
            flow: flow(t.flow),
            pools: pools(&t.pools),
            seq: t.seq,
            enqueued_at: t.enqueued_at,
            deadline: t.deadline,
            ttl_ms: t.ttl_ms,
            meta: t.meta.as_deref().map(str::to_owned),
            owner: t.owner.as_deref().map(str::to_owned),
        })
        .collect();
    tickets.sort_by_key(|t| t.seq);
    let ended = ledger
        .ended_tickets()
        .map(|(id, outcome, at, f)| {
            let (outcome, lease) = outcome.parts();
            StoredEnded { id: id.0, outcome: outcome.into(), lease: lease.map(|l| l.0), flow: flow(f), at }
        })
        .collect();
    let views = ledger.pools();
    let limits = views
        .iter()
        .filter_map(|p| {
            let config_limit = names.config_limits.get(p.id.index()).copied()?;
            (p.limit != config_limit).then(|| (p.name.to_string(), p.limit, config_limit))
        })
        .collect();
    let holds = views.iter().map(|p| (p.name.to_string(), p.mean_hold_ms)).collect();
    Restored {
        leases,
        tickets,
        next_id: ledger.next_id(),
        next_seq: ledger.next_seq(),
        limits,
        ended,
        holds,
        id_reserved: 0,
    }
}
