//! The ledger's state as a durable store journals it: leases, waiting tickets and how
//! tickets ended, by name rather than by index (names survive a reload that reorders
//! pools or flows; indexes do not). The embedded journal and the PostgreSQL journal keep
//! these rows, and what restores a ledger (at a start, or into an empty Redis) reads them.

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
