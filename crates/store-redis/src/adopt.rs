//! What a node's local fallback needs of the ledger (`on_redis_unavailable =
//! "local_fallback"`, `crates/runtime/src/cluster/fallback.rs`): a block of ids the ledger
//! never hands out, for the leases the node grants on its own while Redis is unreachable,
//! taking those leases into the ledger once Redis answers again, each exactly once, and
//! the nodes' presence, by which the ledger holds back the shares of nodes that went silent.

use crate::{wire, RedisLedger};
use callgate_backend::Error;
use callgate_core::{Event, Lease};
use serde_json::{json, Value};

/// A lease granted on a node's own while Redis was unreachable, as the ledger is to take
/// it: times on Redis's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Adopted {
    /// The lease (its id from a block of [`RedisLedger::reserve_ids`]).
    pub lease: Lease,
    /// When it ended on the node (released or expired there), if it did.
    pub ended: Option<u64>,
    /// Whether that end was its expiry (else a release).
    pub expired: bool,
}

/// What [`RedisLedger::adopt`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adoption {
    /// Leases the ledger had not held before (an earlier try, or a restore from the
    /// journal, may have brought the others).
    pub adopted: u64,
    /// Ids a different lease holds in the ledger (left alone; logged by the caller).
    pub clashes: u64,
    /// The events of the call, as the domain's stream carries them.
    pub events: Vec<Event>,
}

fn adopted_json(list: &[Adopted]) -> String {
    let rows: Vec<Value> = list
        .iter()
        .map(|a| {
            let mut row = crate::reassert::lease_row(&a.lease);
            row.push(a.ended.map_or(Value::Bool(false), |at| json!(at)));
            row.push(json!(a.expired));
            Value::Array(row)
        })
        .collect();
    Value::Array(rows).to_string()
}

/// What [`RedisLedger::presence`] answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Declared {
    /// The share of each pool the node declared (held back if it goes silent).
    pub shares: Vec<u32>,
    /// Units of each pool held back for silent nodes now.
    pub held: Vec<u64>,
}

/// A node with `local_fallback` pools, as the shared ledger knows it ([`RedisLedger::nodes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePresence {
    /// Its name (host, listen address and process id).
    pub node: String,
    /// When it turns silent without another presence, or turned (Redis ms).
    pub silent_at: u64,
    /// When the ledger stops holding its declared shares back, once silent (Redis ms).
    pub holds_until: u64,
    /// The share of each pool it declared at its last presence, in configuration order.
    pub shares: Vec<u32>,
}

/// A share as the script answers it.
fn share(v: &redis::Value) -> Result<u32, Error> {
    wire::int(v).map(|u| u32::try_from(u).unwrap_or(u32::MAX))
}

/// The script's list of nodes (`node_list` in ledger.lua).
fn node_presences(v: &redis::Value) -> Result<Vec<NodePresence>, Error> {
    wire::list(v, "nodes")?
        .iter()
        .map(|n| match wire::list(n, "node")? {
            [node, silent_at, holds_until, shares] => Ok(NodePresence {
                node: wire::text(node)?,
                silent_at: wire::int(silent_at)?,
                holds_until: wire::int(holds_until)?,
                shares: wire::list(shares, "shares")?.iter().map(share).collect::<Result<_, _>>()?,
            }),
            other => Err(Error::internal(format!("a node answered as {other:?}"))),
        })
        .collect()
}

/// Ids above this are never handed out (Lua keeps numbers as doubles: exact below 2^53).
const MAX_ID: u64 = 1 << 52;

impl RedisLedger {
    /// Takes `n` ids out of the ledger's counter (the ledger never hands them out):
    /// `(first, last)`, inclusive. Fails (`unavailable`) while Redis is unreachable or
    /// holds no ledger for the domain.
    pub fn reserve_ids(&self, n: u64) -> Result<(u64, u64), Error> {
        if n == 0 || n > 1 << 32 {
            return Err(Error::invalid("reserve between 1 and 2^32 ids"));
        }
        let parts = self.call("reserve_ids", &[n.to_string()])?;
        let last = match parts.first().map(|v| wire::list(v, "reserved ids")).transpose()? {
            Some([_, last]) => wire::int(last)?,
            _ => return Err(Error::internal(format!("reserve_ids answered {parts:?}"))),
        };
        if last >= MAX_ID {
            return Err(Error::internal("the ledger's ids are exhausted"));
        }
        Ok((last + 1 - n, last))
    }

    /// The last id the ledger has handed out or reserved (its counter): a block from
    /// [`RedisLedger::reserve_ids`] is still this node's only while the counter is at or
    /// above its end (a restore into an emptied Redis may set it back).
    pub fn last_id(&self) -> Result<u64, Error> {
        let parts = self.call("r_counters", &[])?;
        match parts.first().map(|v| wire::list(v, "counters")).transpose()? {
            Some([id, _]) => Ok(wire::int(id)?.saturating_sub(1)),
            _ => Err(Error::internal(format!("r_counters answered {parts:?}"))),
        }
    }

    /// Takes `leases` into the ledger, in one atomic call, each at most once however often
    /// it is called (the ids taken are remembered for a week): a lease it holds already is
    /// kept, a new one is granted (with its key unless another live lease has it), and one
    /// that ended on the node is ended. Pools may go over their cap: nothing acknowledged
    /// is revoked, and a pool over its cap admits nothing until it is under it again.
    pub fn adopt(&self, leases: &[Adopted]) -> Result<Adoption, Error> {
        let parts = self.call("adopt", &[adopted_json(leases)])?;
        let [outcome, events, _now] = parts.as_slice() else {
            return Err(Error::internal(format!("adopt answered {parts:?}")));
        };
        let (adopted, clashes) = match wire::list(outcome, "adopted leases")? {
            [_, adopted, clashes] => (wire::int(adopted)?, wire::int(clashes)?),
            _ => return Err(Error::internal(format!("adopt answered {outcome:?}"))),
        };
        let events = wire::list(events, "events")?.iter().map(wire::event).collect::<Result<Vec<_>, _>>()?;
        Ok(Adoption { adopted, clashes, events })
    }

    /// Node `node`'s presence (it reaches Redis now), one of `nodes` sharing the domain.
    /// It declares, for each pool, the least of `most` (what it would take if it went local
    /// now, 0 for a pool that fails closed) and its share of what the ledger has free now,
    /// `(cap - used - held back) / nodes` rounded down. From Redis's now + `lapse_ms`
    /// without another presence the node is *silent*: its declared shares count as used
    /// for admission (no grant, no ticket's, uses them) until Redis's now + `lapse_ms` +
    /// `keep_ms`. A silent node that says it again frees what was held back for it (the
    /// waiting lines are walked). Answers what it declared, and what is held back for
    /// silent nodes now.
    pub fn presence(
        &self,
        node: &str,
        lapse_ms: u64,
        keep_ms: u64,
        most: &[u32],
        nodes: u32,
    ) -> Result<Declared, Error> {
        if node.is_empty() || node.len() > 128 || most.is_empty() {
            return Err(Error::invalid(format!(
                "bad presence of node {node:?}: 1 to 128 characters, one share a pool"
            )));
        }
        let most: Vec<String> = most.iter().map(u32::to_string).collect();
        self.presence_call(node, lapse_ms, keep_ms, most.join(","), nodes.max(1))
    }

    /// The nodes with `local_fallback` pools that the shared ledger knows (those present,
    /// and the silent ones whose shares it holds back), with Redis's now.
    pub fn nodes(&self) -> Result<(Vec<NodePresence>, u64), Error> {
        let parts = self.call("r_nodes", &[])?;
        let [outcome, _events, now] = parts.as_slice() else {
            return Err(Error::internal(format!("r_nodes answered {parts:?}")));
        };
        Ok((node_presences(outcome)?, wire::int(now)?))
    }

    /// The nodes' presence as the last answered [`RedisLedger::presence`] of this node
    /// read it (none before the first).
    pub fn presences(&self) -> Vec<NodePresence> {
        self.presences.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Node `node` leaves cleanly (its presence is removed: nothing is held back for it).
    pub fn leave(&self, node: &str) -> Result<(), Error> {
        self.call("presence", &[node.to_owned(), "0".into(), "0".into(), String::new(), "1".into()]).map(|_| ())
    }

    fn presence_call(&self, node: &str, lapse: u64, keep: u64, most: String, nodes: u32) -> Result<Declared, Error> {
        let max = crate::spec::MAX_MS;
        let args = [node.to_owned(), lapse.min(max).to_string(), keep.min(max).to_string(), most, nodes.to_string()];
        let parts = self.call("presence", &args)?;
        let Some(outcome) = parts.first() else {
            return Err(Error::internal(format!("presence answered {parts:?}")));
        };
        let [_, shares, held, nodes] = wire::list(outcome, "presence")? else {
            return Err(Error::internal(format!("presence answered {outcome:?}")));
        };
        let declared = Declared {
            shares: wire::list(shares, "declared shares")?.iter().map(share).collect::<Result<_, _>>()?,
            held: wire::list(held, "held back units")?.iter().map(wire::int).collect::<Result<_, _>>()?,
        };
        *self.presences.lock().unwrap_or_else(|p| p.into_inner()) = node_presences(nodes)?;
        Ok(declared)
    }

    /// Whether Redis answers but holds no ledger for the domain (it restarted empty): a
    /// failure that is not Redis being unreachable.
    pub fn lost_state(&self) -> bool {
        let f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.why.as_deref().is_some_and(|why| why.contains(MISSING))
    }
}

/// The start of the script's message when the domain has no state (`fail('missing', …)`
/// in `ledger.lua`).
const MISSING: &str = "the ledger has no state in Redis";
