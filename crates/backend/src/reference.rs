//! What each [`Command`] means, on the pure ledger: the semantics every backend keeps. The
//! embedded backend runs exactly this on its in-memory ledger; the conformance suite runs
//! it beside any other backend and compares.

use crate::{CallEnd, Command, Error, LeaseRef, Outcome, Repaired};
use callgate_core::{Decision, LeaseId, Ledger, PoolId};

fn pool_id(ledger: &Ledger, pool: PoolId) -> Result<PoolId, Error> {
    if pool.index() < ledger.pool_count() {
        Ok(pool)
    } else {
        Err(Error::request(callgate_core::RequestError::BadPools(format!("no pool {}", pool.index()))))
    }
}

fn lease_id(ledger: &Ledger, lease: &LeaseRef) -> Option<LeaseId> {
    match lease {
        LeaseRef::Id(id) => Some(*id),
        LeaseRef::Key(k) => ledger.lease_by_key(k).map(|l| l.id),
    }
}

fn end_call(ledger: &mut Ledger, key: &str, now: u64) -> CallEnd {
    if let Some(lease) = ledger.release_key(key, now) {
        return CallEnd::Released(lease);
    }
    match ledger.ticket_by_key(key).map(|t| t.id) {
        Some(id) if ledger.cancel(id, now) => CallEnd::Cancelled(id),
        _ => CallEnd::Nothing,
    }
}

/// Runs one command on `ledger` at `now`: what each command means. The events it
/// produced are left in the ledger (`Ledger::drain_events`).
pub fn apply(ledger: &mut Ledger, cmd: Command, now: u64) -> Result<Outcome, Error> {
    Ok(match cmd {
        Command::Acquire(req) => {
            let decision = ledger.acquire(req, now).map_err(Error::request)?;
            let (lease, ticket) = match &decision {
                Decision::Granted { lease, .. } => (ledger.lease(*lease).cloned(), None),
                Decision::Queued { ticket, .. } => (None, ledger.ticket(*ticket).cloned()),
                Decision::Rejected { .. } => (None, None),
            };
            Outcome::Decided { decision, lease, ticket }
        }
        Command::Release { lease, owner } => {
            let Some(l) = lease_id(ledger, &lease).and_then(|id| ledger.lease(id)) else {
                return Ok(Outcome::Released(None));
            };
            if owner.as_deref().is_some_and(|who| l.owner.as_deref() != Some(who)) {
                return Ok(Outcome::NotOwner(l.id));
            }
            let l = l.clone();
            Outcome::Released(ledger.release(l.id, now).then_some(l))
        }
        Command::Renew { lease, ttl_ms, owner } => {
            let Some(l) = lease_id(ledger, &lease).and_then(|id| ledger.lease(id)) else {
                return Ok(Outcome::Renewed(None));
            };
            if owner.as_deref().is_some_and(|who| l.owner.as_deref() != Some(who)) {
                return Ok(Outcome::NotOwner(l.id));
            }
            let id = l.id;
            Outcome::Renewed(ledger.renew(id, ttl_ms, now).cloned())
        }
        Command::Cancel(id) => Outcome::Cancelled(if ledger.cancel(id, now) {
            Some(true)
        } else {
            ledger.ticket_status(id).map(|_| false)
        }),
        Command::EndCall(key) => Outcome::CallEnded(end_call(ledger, &key, now)),
        Command::Repair { ended, renew } => {
            let mut out = Repaired::default();
            for key in ended {
                match end_call(ledger, &key, now) {
                    CallEnd::Released(lease) => out.released.push((key, lease)),
                    CallEnd::Cancelled(ticket) => out.cancelled.push((key, ticket)),
                    CallEnd::Nothing => {}
                }
            }
            for key in renew {
                if let Some(id) = ledger.lease_by_key(&key).map(|l| l.id) {
                    out.renewed += usize::from(ledger.renew(id, None, now).is_some());
                }
            }
            Outcome::Repaired(out)
        }
        Command::SetLimit { pool, limit } => {
            let id = pool_id(ledger, pool)?;
            ledger.set_limit(id, limit, now);
            Outcome::Pool(ledger.pool(id))
        }
        Command::SetCap { pool, cap } => {
            let id = pool_id(ledger, pool)?;
            ledger.set_cap(id, cap, now);
            Outcome::Pool(ledger.pool(id))
        }
        Command::Tick => {
            ledger.tick(now);
            Outcome::Done
        }
        Command::Reconfigure { .. } => {
            // Rebuilding takes the backend's durable form of the state (the embedded one:
            // the rows a restart reads); it runs in the backend, never here.
            return Err(Error::invalid("a reconfiguration is carried out by the backend itself"));
        }
        Command::Settle => {
            ledger.settle(now);
            Outcome::Done
        }
        Command::Fenced { .. } => {
            return Err(Error::invalid("this backend has no duty lease: fenced commands are for cluster mode"));
        }
    })
}
