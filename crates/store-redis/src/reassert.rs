//! Giving an emptied Redis its ledger back: after Redis restarted without its data (it
//! keeps nothing on disk in cluster mode), the node loads the acknowledged live state from
//! the durable journal ([`Reassert`]) with one atomic call that writes only into an empty
//! domain, so that several nodes trying at once restore it exactly once.

use crate::{spec, unavailable, RedisLedger};
use callgate_backend::{Error, Outcome};
use callgate_core::{FlowId, Lease, LedgerSpec, PoolId, Ticket, TicketId, TicketOutcome};
use serde_json::{json, Value};

/// What a domain is restored to: its live leases and waiting tickets (ids as the ledger
/// numbers pools, classes and flows), how recent tickets ended, the id counters and the
/// runtime limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reassert {
    /// Live leases.
    pub leases: Vec<Lease>,
    /// Waiting tickets.
    pub tickets: Vec<Ticket>,
    /// The next id to hand out (above every id ever handed out).
    pub next_id: u64,
    /// The next arrival number.
    pub next_seq: u64,
    /// Runtime limits that differ from the configured ones.
    pub limits: Vec<(PoolId, u32)>,
    /// Tickets that ended, oldest end first: a client polling one after the restore reads
    /// its outcome, as before, for the rest of the retention time.
    pub ended: Vec<EndedTicket>,
}

/// How a ticket ended (what `GET /v1/tickets/{id}` answers for the retention time).
#[derive(Clone, Debug, PartialEq)]
pub struct EndedTicket {
    /// The ticket.
    pub id: TicketId,
    /// Granted (with its lease), cancelled, timed out or never fits.
    pub outcome: TicketOutcome,
    /// When (ms, Redis's clock).
    pub at: u64,
    /// The flow it was for.
    pub flow: Option<FlowId>,
}

/// An ended ticket as the script reads it back: id, outcome tag, lease (`false` unless
/// granted), when, flow (`false` for none).
fn ended_row(e: &EndedTicket) -> Value {
    let (tag, lease) = match e.outcome {
        TicketOutcome::Granted(l) => ("g", json!(l.0)),
        TicketOutcome::Cancelled => ("c", Value::Bool(false)),
        TicketOutcome::TimedOut => ("t", Value::Bool(false)),
        TicketOutcome::NeverFits => ("n", Value::Bool(false)),
    };
    json!([e.id.0, tag, lease, e.at, e.flow.map_or(Value::Bool(false), |f| json!(f.0))])
}

pub(crate) fn opt(s: &Option<std::sync::Arc<str>>) -> Value {
    s.as_deref().map_or(Value::Bool(false), |s| Value::String(s.to_owned()))
}

/// A lease as the script reads it back: id, key, class, flow, pools, granted, expires, TTL,
/// meta, owner (`false` for what is not there).
pub(crate) fn lease_row(l: &Lease) -> Vec<Value> {
    vec![
        json!(l.id.0),
        opt(&l.key),
        json!(l.class.0),
        l.flow.map_or(Value::Bool(false), |f| json!(f.0)),
        json!(spec::flat_pools(&l.pools)),
        json!(l.granted_at),
        json!(l.expires_at),
        json!(l.ttl_ms),
        opt(&l.meta),
        opt(&l.owner),
    ]
}

fn state_json(state: &Reassert, nodes: &[crate::adopt::NodePresence]) -> String {
    let leases: Vec<Value> = state.leases.iter().map(|l| Value::Array(lease_row(l))).collect();
    let tickets: Vec<Value> = state
        .tickets
        .iter()
        .map(|t| {
            json!([
                t.id.0,
                opt(&t.key),
                t.class.0,
                t.flow.map_or(Value::Bool(false), |f| json!(f.0)),
                spec::flat_pools(&t.pools),
                t.seq,
                t.enqueued_at,
                t.deadline,
                t.ttl_ms,
                opt(&t.meta),
                opt(&t.owner)
            ])
        })
        .collect();
    let limits: Vec<Value> = state.limits.iter().map(|(p, l)| json!([p.0, l])).collect();
    let ended: Vec<Value> = state.ended.iter().map(ended_row).collect();
    let nodes: Vec<Value> = nodes.iter().map(|n| json!([n.node, n.silent_at, n.holds_until, n.shares])).collect();
    json!({ "leases": leases, "tickets": tickets, "next_id": state.next_id, "next_seq": state.next_seq, "limits": limits,
        "ended": ended, "nodes": nodes })
    .to_string()
}

impl RedisLedger {
    /// Whether Redis holds no ledger for the domain (it restarted empty, or was flushed).
    pub fn domain_missing(&self) -> Result<bool, Error> {
        let exists: i64 =
            self.with_conn(redis::cmd("EXISTS").arg(format!("{}:s", self.key_prefix()))).map_err(unavailable)?;
        Ok(exists == 0)
    }

    /// Loads `state` for `spec` into the domain, with the nodes' presence as this node's
    /// last [`RedisLedger::presence`] read it (those whose hold-back has not ended and
    /// that have not said a newer one), atomically, only when Redis holds no
    /// ledger for it, or one that has never handed out an id or an arrival number (opened
    /// on an emptied Redis, nothing decided yet): `true` when this call restored it,
    /// `false` when a ledger with history was there (another node restored it first, or
    /// Redis kept its state; nothing changed). No events are published; run
    /// [`callgate_backend::Command::Settle`] afterwards to expire what fell due and grant
    /// what fits.
    pub fn reassert(&self, spec: &LedgerSpec, state: &Reassert) -> Result<bool, Error> {
        let parts = self.call("reassert", &[spec::spec_json(spec)?, state_json(state, &self.presences())])?;
        match parts.first().map(crate::wire::outcome).transpose()? {
            Some(Outcome::Cancelled(Some(done))) => Ok(done),
            other => Err(Error::internal(format!("reassert answered {other:?}"))),
        }
    }
}
