//! Redis restarted empty (cluster mode with `[storage] database`): the node notices within
//! a second (Redis holds no ledger for the domain; every command already fails as
//! `unavailable`, so admission answers 503 with `Retry-After`), waits until every journal
//! commit that was under way when Redis lost its state has settled, reads what PostgreSQL
//! holds for the domain ([`Journal::restore`]: live leases, waiting tickets, id counters,
//! runtime limits) and gives it back to Redis in one atomic call that writes only into an
//! empty domain ([`RedisLedger::reassert`]), then settles (expires what fell due, grants
//! what fits). Every node with a database does this; the first one's call restores the
//! domain and the others' change nothing, so no node has to be the one and a dead node
//! cannot hold the restore up.
//!
//! No grant is lost: a grant was acknowledged only after PostgreSQL committed it, and the
//! journal is read after every commit Redis's lost state could still be waiting for. None
//! is doubled: the ids and keys come back with their leases, and the counters above every
//! id any node journaled. A release whose commit was lost (its caller heard 503) brings
//! the lease back until it is released again or expires: counted too long, never too
//! short. Ended tickets' outcomes (kept for `GET /v1/tickets/{id}` for the retention
//! time) come back too, from the journal: a client polling a ticket that was granted or
//! timed out just before Redis lost its state reads the same outcome after the restore.
//!
//! [`Journal::restore`]: callgate_store_postgres::Journal::restore
//! [`RedisLedger::reassert`]: callgate_store_redis::RedisLedger::reassert

use super::durable::Inner;
use callgate_backend::journaled::Numbering as _;
use callgate_backend::{Command, Error, LedgerBackend, Names};
use callgate_core::{TicketId, TicketOutcome};
use callgate_store_postgres::Restored;
use callgate_store_redis::reassert::{EndedTicket, Reassert};
use std::sync::Arc;
use std::time::Duration;

/// How often the node looks whether Redis still holds the domain's ledger.
const EVERY: Duration = Duration::from_secs(1);

/// Watches for an emptied Redis and restores the domain (see the module docs), and probes
/// PostgreSQL while the journal fails, on the server's runtime, for as long as the node runs.
/// Ends once the backend is gone (the server stopped).
pub(super) fn spawn(inner: std::sync::Weak<Inner>, grace: Duration) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            inner.probe().await;
            let redis = inner.redis.clone();
            // Unreachable is not empty: only a Redis that answers without the ledger is.
            let Ok(Ok(true)) = tokio::task::spawn_blocking(move || redis.domain_missing()).await else {
                continue;
            };
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "Redis holds no ledger for the domain (restarted empty?): admission answers 503 until the \
                 acknowledged state is re-asserted from PostgreSQL"
            );
            tokio::time::sleep(grace).await;
            match restore_once(&inner).await {
                Ok(Some((leases, tickets))) => {
                    tracing::info!(leases, tickets, "Re-asserted the ledger from PostgreSQL; admission resumes")
                }
                Ok(None) => tracing::info!("Another node re-asserted the ledger from PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "Cannot re-assert the ledger from PostgreSQL yet; trying again"),
            }
        }
    });
}

/// At a node's start: when Redis holds a ledger for the domain that has decided nothing
/// yet (new, or opened by this node on an emptied Redis), it gets what PostgreSQL holds.
/// No grace: a ledger that decided nothing has no commits under way.
pub(super) async fn at_start(inner: &Arc<Inner>) -> Result<(), Error> {
    if let Some((leases, tickets)) = restore_once(inner).await? {
        tracing::info!(leases, tickets, "Re-asserted the ledger from PostgreSQL at start");
    }
    Ok(())
}

/// One restore: `Some((leases, tickets))` restored, `None` when Redis held a ledger again
/// (another node restored it).
async fn restore_once(inner: &Arc<Inner>) -> Result<Option<(usize, usize)>, Error> {
    let redis = inner.redis.clone();
    let now = tokio::task::spawn_blocking(move || redis.now_ms())
        .await
        .map_err(|e| Error::internal(format!("reading Redis's time: {e}")))?;
    let restored = inner.journal.restore(now).await?;
    let (spec, names) = inner.config.read().unwrap_or_else(|p| p.into_inner()).clone();
    let state = to_ledger(&restored, &names);
    let counts = (state.leases.len(), state.tickets.len());
    let worker = inner.clone();
    tokio::task::spawn_blocking(move || {
        if !worker.redis.reassert(&spec, &state)? {
            return Ok(None);
        }
        // What fell due while Redis was empty expires; what fits is granted (journaled).
        worker.run(Command::Settle)?;
        Ok(Some(counts))
    })
    .await
    .map_err(|e| Error::internal(format!("re-asserting the ledger: {e}")))?
}

/// The journal's rows (by name) as the ledger numbers things now. A lease or ticket of a
/// pool or class the configuration no longer has cannot be (a reload keeps them) and is
/// logged and left out; one of a removed flow lives on without it, as after a reload.
fn to_ledger(r: &Restored, names: &Names) -> Reassert {
    let mut out = Reassert { next_id: r.next_id, next_seq: r.next_seq, ..Reassert::default() };
    for l in &r.leases {
        let Some(lease) = l.to_lease(names) else {
            tracing::error!(lease = l.id, "A journaled lease names a pool or class the configuration lacks; left out");
            continue;
        };
        out.leases.push(lease);
    }
    for t in &r.tickets {
        let Some(ticket) = t.to_ticket(names) else {
            tracing::error!(
                ticket = t.id,
                "A journaled ticket names a pool or class the configuration lacks; left out"
            );
            continue;
        };
        out.tickets.push(ticket);
    }
    // How recent tickets ended (oldest first, as the journal reads them): a client polling
    // one reads its outcome as before.
    for e in &r.ended {
        let Some(outcome) = TicketOutcome::from_parts(&e.outcome, e.lease) else {
            tracing::warn!(ticket = e.id, outcome = %e.outcome, "Not restoring a ticket outcome callgate does not know");
            continue;
        };
        let flow = e.flow.as_deref().and_then(|f| names.flow_id(f));
        out.ended.push(EndedTicket { id: TicketId(e.id), outcome, at: e.at, flow });
    }
    // A runtime limit holds while the configured limit it was made against still is.
    for (pool, limit, configured) in &r.limits {
        if let Some(id) = names.pool_id(pool) {
            if names.config_limits.get(id.index()) == Some(configured) {
                out.limits.push((id, *limit));
            }
        }
    }
    out
}
