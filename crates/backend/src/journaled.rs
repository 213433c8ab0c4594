//! The ledger's state as a durable store journals it: leases, waiting tickets and how
//! tickets ended, by name rather than by index (names survive a reload that reorders
//! pools or flows; indexes do not). The embedded journal and the PostgreSQL journal keep
//! these rows, and what restores a ledger (at a start, or into an empty Redis) reads them
//! back through [`StoredLease::to_lease`] and [`StoredTicket::to_ticket`].

use crate::Names;
use callgate_core::{ClassId, FlowId, Lease, LeaseId, PoolId, PoolUnits, Ticket, TicketId};
use std::sync::Arc;

/// A lease as journaled (names instead of ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLease {
    /// Lease id.
    pub id: u64,
    /// Idempotency key.
    pub key: Option<String>,
    /// Class name.
    pub class: String,
    /// Flow name.
    pub flow: Option<String>,
    /// `(pool name, units)`.
    pub pools: Vec<(String, u32)>,
    /// Unix ms.
    pub granted_at: u64,
    /// Unix ms.
    pub expires_at: u64,
    /// Renewal TTL (ms).
    pub ttl_ms: u64,
    /// Metadata (JSON text).
    pub meta: Option<String>,
    /// The name of the API key that acquired it.
    pub owner: Option<String>,
}

/// A waiting ticket as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTicket {
    /// Ticket id.
    pub id: u64,
    /// Idempotency key.
    pub key: Option<String>,
    /// Class name.
    pub class: String,
    /// Flow name.
    pub flow: Option<String>,
    /// `(pool name, units)`.
    pub pools: Vec<(String, u32)>,
    /// Arrival order.
    pub seq: u64,
    /// Unix ms.
    pub enqueued_at: u64,
    /// Unix ms.
    pub deadline: u64,
    /// TTL of the lease it becomes (ms).
    pub ttl_ms: u64,
    /// Metadata (JSON text).
    pub meta: Option<String>,
    /// The name of the API key that acquired it.
    pub owner: Option<String>,
}

/// How a ticket ended, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnded {
    /// Ticket id.
    pub id: u64,
    /// `granted`, `cancelled`, `timed_out` or `never_fits`.
    pub outcome: String,
    /// The lease it became, when granted.
    pub lease: Option<u64>,
    /// Flow name.
    pub flow: Option<String>,
    /// Unix ms.
    pub at: u64,
}

/// How a ledger numbers pools, classes and flows now: what turns journaled names back
/// into ids (the embedded ledger itself at a start; a configuration's [`Names`] when an
/// empty Redis is given its state back).
pub trait Numbering {
    /// The pool named `name`.
    fn pool_id(&self, name: &str) -> Option<PoolId>;
    /// The class named `name`.
    fn class_id(&self, name: &str) -> Option<ClassId>;
    /// The flow named `name`.
    fn flow_id(&self, name: &str) -> Option<FlowId>;
}

impl Numbering for callgate_core::Ledger {
    fn pool_id(&self, name: &str) -> Option<PoolId> {
        callgate_core::Ledger::pool_id(self, name)
    }
    fn class_id(&self, name: &str) -> Option<ClassId> {
        callgate_core::Ledger::class_id(self, name)
    }
    fn flow_id(&self, name: &str) -> Option<FlowId> {
        callgate_core::Ledger::flow_id(self, name)
    }
}

impl Numbering for Names {
    fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools.iter().position(|n| &**n == name).map(|i| PoolId(i as u32))
    }
    fn class_id(&self, name: &str) -> Option<ClassId> {
        self.classes.iter().position(|n| &**n == name).map(|i| ClassId(i as u16))
    }
    fn flow_id(&self, name: &str) -> Option<FlowId> {
        self.flows.iter().position(|n| &**n == name).map(|i| FlowId(i as u32))
    }
}

fn pools_of(ids: &impl Numbering, pools: &[(String, u32)]) -> Option<Arc<[PoolUnits]>> {
    pools.iter().map(|(name, units)| Some(PoolUnits { pool: ids.pool_id(name)?, units: *units })).collect()
}

fn text(s: &Option<String>) -> Option<Arc<str>> {
    s.as_deref().map(Arc::from)
}

impl StoredLease {
    /// The lease as `ids` number things; `None` when its class or a pool is gone (a flow
    /// that is gone is dropped from it, as a reload does).
    pub fn to_lease(&self, ids: &impl Numbering) -> Option<Lease> {
        Some(Lease {
            id: LeaseId(self.id),
            key: text(&self.key),
            class: ids.class_id(&self.class)?,
            flow: self.flow.as_deref().and_then(|f| ids.flow_id(f)),
            pools: pools_of(ids, &self.pools)?,
            granted_at: self.granted_at,
            expires_at: self.expires_at,
            ttl_ms: self.ttl_ms,
            meta: text(&self.meta),
            owner: text(&self.owner),
        })
    }
}

impl StoredTicket {
    /// The waiting ticket as `ids` number things; `None` when its class or a pool is gone.
    pub fn to_ticket(&self, ids: &impl Numbering) -> Option<Ticket> {
        Some(Ticket {
            id: TicketId(self.id),
            key: text(&self.key),
            class: ids.class_id(&self.class)?,
            flow: self.flow.as_deref().and_then(|f| ids.flow_id(f)),
            pools: pools_of(ids, &self.pools)?,
            seq: self.seq,
            enqueued_at: self.enqueued_at,
            deadline: self.deadline,
            ttl_ms: self.ttl_ms,
            meta: text(&self.meta),
            owner: text(&self.owner),
        })
    }
}
