//! A configuration reload, as the governor applies it: the ledger is rebuilt from the new
//! configuration and from what the old ledger holds, by the same `restore` a restart
//! runs on the journal. What a reload gives is therefore what a restart with the new file
//! would give: the same limits (a runtime limit survives unless the configured limit
//! changed), the same reserves and priorities, the same leases and waiting tickets (a
//! removed flow's lease or ticket lives on without its flow), and then the same
//! `settle`: tickets that can never fit end (`never_fits`), and what now fits is granted.
//! Every event of that goes through the journal like any other operation, so nothing
//! is shown before it is durable and a waiter of a granted ticket is told.

use super::{read, restore, write, Governor, State};
use crate::error::{ApiError, ErrorKind};
use crate::ops::Ops;
use callgate_core::{Ledger, LedgerSpec, PoolId, TicketOutcome};
use callgate_store::{Names, Restored, StoredEnded, StoredLease, StoredTicket};
use std::sync::{Arc, RwLock};

/// Where the operating layer (adaptive caps, breakers, alerts) sits: the governor reads
/// it, the journal's consumer feeds it committed events, a reload replaces it.
#[derive(Clone)]
pub struct OpsSlot(Arc<RwLock<Arc<Ops>>>);

impl std::fmt::Debug for OpsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsSlot").finish_non_exhaustive()
    }
}

impl OpsSlot {
    /// A slot holding `ops`.
    pub fn new(ops: Arc<Ops>) -> Self {
        OpsSlot(Arc::new(RwLock::new(ops)))
    }

    /// The operating layer in place now.
    pub fn get(&self) -> Arc<Ops> {
        read(&self.0).clone()
    }

    pub(super) fn set(&self, ops: Arc<Ops>) {
        *write(&self.0) = ops;
    }
}

/// Why a reload was not applied (nothing changed).
#[derive(Debug)]
pub struct ReloadError(pub String);

/// What the governor is handed by a reload.
pub(crate) struct NewLedger {
    /// Built from the new configuration.
    pub(crate) spec: LedgerSpec,
    /// Its names (pools and classes as before, in the same order).
    pub(crate) names: Names,
    /// The first overflow action of each flow.
    pub(crate) overflow: Vec<Option<serde_json::Value>>,
    /// A new operating layer, when what it is built from changed.
    pub(crate) ops: Option<Arc<Ops>>,
}

/// What the journal would hold if the server stopped now: the live leases and waiting
/// tickets, how recent tickets ended, the counters, runtime limits and mean holds, by
/// name.
fn snapshot(ledger: &Ledger, names: &Names) -> Restored {
    let pools = |p: &[callgate_core::PoolUnits]| -> Vec<(String, u32)> {
        p.iter().map(|pu| (names.pools[pu.pool.index()].to_string(), pu.units)).collect()
    };
    let flow = |f: Option<callgate_core::FlowId>| f.and_then(|f| names.flows.get(f.index())).map(|n| n.to_string());
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
            let (outcome, lease) = match outcome {
                TicketOutcome::Granted(l) => ("granted", Some(l.0)),
                TicketOutcome::Cancelled => ("cancelled", None),
                TicketOutcome::TimedOut => ("timed_out", None),
                TicketOutcome::NeverFits => ("never_fits", None),
            };
            StoredEnded { id: id.0, outcome: outcome.into(), lease, flow: flow(f), at }
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

impl Governor {
    /// Replaces the ledger by one built from `new` and what the current one holds (see
    /// the module docs), atomically under the ledger's lock; journaled like any
    /// operation. On an error nothing changed.
    pub(crate) async fn reload(&self, new: NewLedger) -> Result<(), ApiError> {
        self.check_healthy()?;
        let (out, seq) = self.apply(|st, now| self.rebuild_for(st, new, now))?;
        out?;
        self.journal.durable(seq).await?;
        Ok(())
    }

    fn rebuild_for(&self, st: &mut State, new: NewLedger, now: u64) -> Result<(), ApiError> {
        let old = self.names();
        if old.pools != new.names.pools || old.classes != new.names.classes {
            return Err(refused("the pools and classes must stay the same, in the same order"));
        }
        let mut ledger =
            Ledger::new(&new.spec).map_err(|e| refused(&format!("the new configuration's ledger: {e}")))?;
        let dropped = restore(&mut ledger, &snapshot(&st.ledger, &old), now);
        if !dropped.leases.is_empty() || !dropped.tickets.is_empty() {
            // Cannot happen with the same pools and classes; never drop a lease for it.
            return Err(refused("a live lease or ticket would not fit the new configuration"));
        }
        // The cap sources: cooldowns stand (they say what the platform refused); an
        // adaptive source follows the operating layer in force, which starts a new one
        // at its `initial` cap, as at a start.
        let ops = new.ops.clone().unwrap_or_else(|| self.ops());
        let mut caps = st.caps.clone();
        for (p, sources) in caps.iter_mut().enumerate() {
            if new.ops.is_some() {
                sources.reset_adaptive(ops.initial_cap(p, ledger.pool(PoolId(p as u32)).limit));
            }
            if let Some(cap) = sources.refresh() {
                ledger.set_cap(PoolId(p as u32), Some(cap), now);
            }
        }
        // Tell the event consumers about every pool whose figures moved: a limit or cap
        // change is a `limit_changed` event (and the journal's runtime-limit row follows
        // the new configured limit).
        let before = st.ledger.pools();
        for (p, was) in before.iter().enumerate() {
            let id = PoolId(p as u32);
            let is = ledger.pool(id);
            if (is.limit, is.cap) != (was.limit, was.cap) || old.config_limits.get(p) != new.names.config_limits.get(p)
            {
                ledger.set_limit(id, is.limit, now);
            }
        }
        // Ends what can never fit now and grants what fits, like a start after restore.
        ledger.settle(now);
        // From here on the new ledger's ids: the journal and its consumers switch in
        // event order, before the events above are handed over.
        self.journal.rename(new.names.clone());
        if let Some(ops) = new.ops {
            self.ops.set(ops);
        }
        st.ledger = ledger;
        st.caps = caps;
        *write(&self.names) = Arc::new(new.names);
        *write(&self.overflow) = Arc::new(new.overflow);
        *write(&self.spec) = Some(new.spec);
        Ok(())
    }
}

fn refused(why: &str) -> ApiError {
    ApiError::new(ErrorKind::Conflict, "reload_refused", why)
}
